"""Dumps printed as KAME setkey -D / -DP print them (libipsec pfkey_dump.c), or as JSON.

Differences from KAME, on purpose: no trailing blanks; a zero time prints as the epoch
(netkeyd's virtual clock starts at 0, so 0 is a real instant); the SAD "current:" and
"diff:" fields need netkeyd's clock and appear only when `now` is given.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.pfkey import names, wire
from orchestrator.pfkey.codec import (
    Address,
    IpsecRequest,
    Key,
    Lifetime,
    Msg,
    NatTPort,
    NatTType,
    Policy,
    Sa,
    Sa2,
)
from orchestrator.pfkey.wire import ExtType, Level

NO_SPD = "No SPD entries."
NO_SAD = "No SAD entries."


def format_time(t: int) -> str:
    """'Jan  1 00:00:05 1970': ctime() without the weekday, in UTC."""
    return time.asctime(time.gmtime(t))[4:]


def _prefport(addr: Address) -> str:
    # KAME str_prefport: the prefix only when shorter than the address, the port always.
    plen = "" if addr.prefixlen == addr.ip.max_prefixlen else f"/{addr.prefixlen}"
    port = "any" if addr.port == wire.IPSEC_PORT_ANY else str(addr.port)
    return f"{addr.ip}{plen}[{port}]"


def format_request(req: IpsecRequest) -> str:
    """'esp/tunnel/192.0.2.1-192.0.2.2/require', or '.../unique:5' (ipsec_dump_policy)."""
    ends = f"{req.tunnel_src}-{req.tunnel_dst}" if req.tunnel_src is not None else ""
    level = names.name_of(names.LEVELS, req.level)
    if req.level == Level.UNIQUE and req.reqid:
        level += f"{'#' if req.reqid > wire.IPSEC_MANUAL_REQID_MAX else ':'}{req.reqid}"
    proto = names.name_of(names.REQ_PROTOS, req.proto)
    return f"{proto}/{names.name_of(names.MODES, req.mode)}/{ends}/{level}"


def _ext(msg: Msg, ext_type: int, cls: type) -> Any:
    ext = msg.exts.get(ext_type)
    return ext if isinstance(ext, cls) else None


def format_policy_entry(msg: Msg) -> str:
    """One SPDDUMP/SPDGET reply, KAME pfkey_spdump style, ending in a newline."""
    src, dst = msg.src, msg.dst
    pol = msg.policy
    if src is None or dst is None:
        return f"no ADDRESS_{'SRC' if src is None else 'DST'} extension.\n"
    if pol is None:
        return "no X_POLICY extension.\n"
    upper = "any" if src.proto == wire.IPSEC_ULPROTO_ANY else names.name_of(names.UPPER, src.proto)
    lines = [f"{_prefport(src)} {_prefport(dst)} {upper}"]
    lines.append(
        f"\t{names.name_of(names.DIRS, pol.dir)} {names.name_of(names.POLICY_TYPES, pol.type)}"
    )
    lines += [f"\t{format_request(r)}" for r in pol.requests]
    cur = _ext(msg, ExtType.LIFETIME_CURRENT, Lifetime)
    if cur is not None:
        created, used = format_time(cur.addtime), format_time(cur.usetime)
        lines.append(f"\tcreated: {created}  lastused: {used}")
    hard = _ext(msg, ExtType.LIFETIME_HARD, Lifetime)
    if hard is not None:
        lines.append(f"\tlifetime: {hard.addtime}(s) validtime: {hard.usetime}(s)")
    lines.append(f"\tspid={pol.id} seq={msg.seq} pid={msg.pid}")
    lines.append(f"\trefcnt={msg.reserved}")
    return "\n".join(lines) + "\n"


def _hexdump(data: bytes) -> str:
    # libipsec ipsec_hexdump: groups of 4 bytes, 32 bytes a line.
    out = []
    for i in range(0, len(data), 4):
        if i and i % 32 == 0:
            out.append("\n\t  ")
        out.append(f" {data[i : i + 4].hex()}")
    return "".join(out)


def _sa_proto(msg: Msg) -> str:
    if msg.exts.get(ExtType.X_NAT_T_TYPE) is not None:
        return "esp-udp"
    return names.name_of(names.SATYPES, msg.satype)


def _sa_lifetimes(msg: Msg, now: int | None) -> list[str]:
    cur = _ext(msg, ExtType.LIFETIME_CURRENT, Lifetime)
    if cur is None:
        return []
    hard = _ext(msg, ExtType.LIFETIME_HARD, Lifetime) or Lifetime()
    soft = _ext(msg, ExtType.LIFETIME_SOFT, Lifetime) or Lifetime()
    if now is None:
        first, diff = f"\tcreated: {format_time(cur.addtime)}", "\t"
    else:
        first = f"\tcreated: {format_time(cur.addtime)}\tcurrent: {format_time(now)}"
        diff = f"\tdiff: {now - cur.addtime if cur.addtime else 0}(s)\t"
    return [
        first,
        f"{diff}hard: {hard.addtime}(s)\tsoft: {soft.addtime}(s)",
        f"\tlast: {format_time(cur.usetime)}\thard: {hard.usetime}(s)\tsoft: {soft.usetime}(s)",
        f"\tcurrent: {cur.bytes}(bytes)\thard: {hard.bytes}(bytes)\tsoft: {soft.bytes}(bytes)",
        f"\tallocated: {cur.allocations}\thard: {hard.allocations}\tsoft: {soft.allocations}",
    ]


def format_sa_entry(msg: Msg, now: int | None = None) -> str:
    """One DUMP/GET reply, KAME pfkey_sadump style, ending in a newline.

    Args:
        now: netkeyd's clock, for the "current:" and "diff:" fields.
    """
    src, dst, sa = msg.src, msg.dst, msg.sa
    sa2 = _ext(msg, ExtType.X_SA2, Sa2)
    for ext, name in ((src, "ADDRESS_SRC"), (dst, "ADDRESS_DST"), (sa, "SA"), (sa2, "SA2")):
        if ext is None:
            return f"no {name} extension.\n"
    assert src is not None and dst is not None and sa is not None and sa2 is not None
    ends = [f"{a.ip}[{a.port}]" if a.port else str(a.ip) for a in (src, dst)]
    lines = [
        " ".join(ends),
        f"\t{_sa_proto(msg)} mode={names.name_of(names.MODES, sa2.mode)} "
        f"spi={sa.spi}(0x{sa.spi:08x}) reqid={sa2.reqid}(0x{sa2.reqid:08x})",
    ]
    enc = _ext(msg, ExtType.KEY_ENCRYPT, Key)
    if msg.satype == wire.SaType.IPCOMP:
        lines.append(f"\tC: {names.name_of(names.COMP_ALGS, sa.encrypt)}")
    elif enc is not None:
        lines.append(f"\tE: {names.name_of(names.ENC_ALGS, sa.encrypt)} {_hexdump(enc.data)}")
    auth = _ext(msg, ExtType.KEY_AUTH, Key)
    if auth is not None:
        lines.append(f"\tA: {names.name_of(names.AUTH_ALGS, sa.auth)} {_hexdump(auth.data)}")
    natt = _ext(msg, ExtType.X_NAT_T_TYPE, NatTType)
    if natt is not None:
        sport = _ext(msg, ExtType.X_NAT_T_SPORT, NatTPort)
        dport = _ext(msg, ExtType.X_NAT_T_DPORT, NatTPort)
        lines.append(
            f"\tnat-t: type={natt.type} sport={sport.port if sport else 0}"
            f" dport={dport.port if dport else 0}"
        )
    lines.append(
        f"\tseq=0x{sa2.sequence:08x} replay={sa.replay} flags=0x{sa.flags:08x} "
        f"state={names.name_of(names.STATES, sa.state)}"
    )
    lines += _sa_lifetimes(msg, now)
    lines.append(f"\tsadb_seq={msg.seq} pid={msg.pid} refcnt={msg.reserved}")
    return "\n".join(lines) + "\n"


def format_spd_dump(entries: list[Msg]) -> str:
    """setkey -DP: every entry, or 'No SPD entries.'."""
    if not entries:
        return NO_SPD + "\n"
    return "".join(format_policy_entry(m) for m in entries)


def format_sad_dump(entries: list[Msg], now: int | None = None) -> str:
    """setkey -D: every entry, or 'No SAD entries.'."""
    if not entries:
        return NO_SAD + "\n"
    return "".join(format_sa_entry(m, now) for m in entries)


# ---------------------------------------------------------------- JSON


def _addr_json(addr: Address | None) -> str | None:
    return None if addr is None else f"{addr.ip}/{addr.prefixlen}"


def _life_json(life: Lifetime | None) -> dict[str, int] | None:
    if life is None:
        return None
    return {
        "allocations": life.allocations,
        "bytes": life.bytes,
        "addtime": life.addtime,
        "usetime": life.usetime,
    }


def request_json(req: IpsecRequest) -> dict[str, Any]:
    return {
        "proto": names.name_of(names.REQ_PROTOS, req.proto),
        "mode": names.name_of(names.MODES, req.mode),
        "src": None if req.tunnel_src is None else str(req.tunnel_src),
        "dst": None if req.tunnel_dst is None else str(req.tunnel_dst),
        "level": names.name_of(names.LEVELS, req.level),
        "reqid": req.reqid,
    }


def policy_json(msg: Msg) -> dict[str, Any]:
    """One SPD entry as a flat dict; times in seconds of netkeyd's clock."""
    src, dst = msg.src, msg.dst
    pol = msg.policy or Policy(wire.PolicyType.DISCARD, wire.Dir.ANY)
    cur = _ext(msg, ExtType.LIFETIME_CURRENT, Lifetime) or Lifetime()
    hard = _ext(msg, ExtType.LIFETIME_HARD, Lifetime) or Lifetime()
    return {
        "id": pol.id,
        "dir": names.name_of(names.DIRS, pol.dir),
        "policy": names.name_of(names.POLICY_TYPES, pol.type),
        "src": _addr_json(src),
        "sport": src.port if src else 0,
        "dst": _addr_json(dst),
        "dport": dst.port if dst else 0,
        "proto": src.proto if src else wire.IPSEC_ULPROTO_ANY,
        "requests": [request_json(r) for r in pol.requests],
        "created": cur.addtime,
        "lastused": cur.usetime,
        "lifetime": hard.addtime,
        "validtime": hard.usetime,
        "seq": msg.seq,
        "pid": msg.pid,
        "refcnt": msg.reserved,
    }


def sa_json(msg: Msg) -> dict[str, Any]:
    """One SAD entry as a dict; keys in hex, lifetimes as sub-dicts."""
    src, dst = msg.src, msg.dst
    sa = msg.sa or Sa(0)
    sa2 = _ext(msg, ExtType.X_SA2, Sa2) or Sa2()
    enc = _ext(msg, ExtType.KEY_ENCRYPT, Key)
    auth = _ext(msg, ExtType.KEY_AUTH, Key)
    natt = _ext(msg, ExtType.X_NAT_T_TYPE, NatTType)
    sport = _ext(msg, ExtType.X_NAT_T_SPORT, NatTPort)
    dport = _ext(msg, ExtType.X_NAT_T_DPORT, NatTPort)
    enc_names = names.COMP_ALGS if msg.satype == wire.SaType.IPCOMP else names.ENC_ALGS
    return {
        "src": None if src is None else str(src.ip),
        "dst": None if dst is None else str(dst.ip),
        "satype": names.name_of(names.SATYPES, msg.satype),
        "spi": sa.spi,
        "mode": names.name_of(names.MODES, sa2.mode),
        "reqid": sa2.reqid,
        "encrypt": names.name_of(enc_names, sa.encrypt),
        "enc_key": None if enc is None else enc.data.hex(),
        "auth": names.name_of(names.AUTH_ALGS, sa.auth),
        "auth_key": None if auth is None else auth.data.hex(),
        "replay": sa.replay,
        "flags": sa.flags,
        "state": names.name_of(names.STATES, sa.state),
        "sequence": sa2.sequence,
        "current": _life_json(_ext(msg, ExtType.LIFETIME_CURRENT, Lifetime)),
        "hard": _life_json(_ext(msg, ExtType.LIFETIME_HARD, Lifetime)),
        "soft": _life_json(_ext(msg, ExtType.LIFETIME_SOFT, Lifetime)),
        "natt": None
        if natt is None
        else {
            "type": int(natt.type),
            "sport": sport.port if sport else 0,
            "dport": dport.port if dport else 0,
        },
        "seq": msg.seq,
        "pid": msg.pid,
        "refcnt": msg.reserved,
    }
