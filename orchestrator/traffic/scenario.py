"""Scenarios: SAs, policies and the flows that keep every policy referenced.

Two sources:
- `generate()`: N SAs and N inbound tunnel (or transport) policies for one gateway, with
  their PF_KEY messages and one flow per policy;
- `from_messages()`: the ADD and inbound SPDADD messages of a setkey file, one flow per
  inbound IPsec policy.

The policies are direction IN on the gateway: the gateway receives the ESP the traffic
host sends. With `outbound` (a real kernel, which holds an outbound policy in the bundles
of the flows it sends itself) each also has its mirror, direction OUT, with an SA of its
own, and one guest flow that the guest sends through it (`GuestFlow`).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.errors import ConfigError
from orchestrator.pfkey import messages, wire
from orchestrator.pfkey.codec import Address, IpsecRequest, Msg
from orchestrator.pfkey.wire import Dir, ExtType, Level, Mode, MsgType, PolicyType
from orchestrator.traffic.sa import (
    ALGORITHMS,
    Algorithm,
    FlowSpec,
    SaSpec,
    TrafficSpec,
    algorithm,
)

PROTECTED = "10.200.0.0/16"
SPI_BASE = 0x10000
REQID_MAX = 0x3FFF  # KAME's IPSEC_MANUAL_REQID_MAX
REPLAY = 64  # sadb_sa_replay: netkeyd checks a 64-packet window when non-zero
NATT_PORT = 4500
TRANSPORT_SPORT = 10000
FLOW_SPORT, FLOW_DPORT = 4096, 9


def inner_host(i: int) -> str:
    """The i-th policy's inner source: 10.(100 + i // 65536).x.y."""
    if not 0 <= i < 156 * 65536:
        raise ConfigError(f"policy index {i} out of range")
    return f"10.{100 + i // 65536}.{(i >> 8) & 0xFF}.{i & 0xFF}"


def protected_host(protected: str = PROTECTED) -> str:
    """The address flows go to inside `protected`: its first host."""
    net = ipaddress.ip_network(protected)
    return str(net.network_address + 1) if net.num_addresses > 1 else str(net.network_address)


@dataclass(frozen=True)
class GuestFlow:
    """A flow the gateway itself sends (spdlab_flows in a qemu guest): UDP src:sport → dst:dport."""

    src: str
    dst: str
    sport: int
    dport: int

    def line(self) -> str:
        return f"{self.src} {self.dst} {self.sport} {self.dport}"


@dataclass
class Scenario:
    """N SAs, N policies, their PF_KEY messages and one flow per policy.

    Attributes:
        sa_msgs: ADD per SA, to send before the policies.
        policy_msgs: X_SPDADD per policy (direction IN).
        delete_msgs: X_SPDDELETE per policy, by selector.
    """

    sas: list[SaSpec] = field(default_factory=list)
    flows: list[FlowSpec] = field(default_factory=list)
    sa_msgs: list[Msg] = field(default_factory=list)
    policy_msgs: list[Msg] = field(default_factory=list)
    delete_msgs: list[Msg] = field(default_factory=list)
    guest_flows: list[GuestFlow] = field(default_factory=list)

    @property
    def spec(self) -> TrafficSpec:
        return TrafficSpec(list(self.sas), list(self.flows))


def generate(
    n: int,
    traffic_addr: str,
    gateway_addr: str,
    *,
    protected: str = PROTECTED,
    alg: str = "aes-gcm-16",
    mode: str = "tunnel",
    natt: bool = False,
    spi_base: int = SPI_BASE,
    seed: int = 0,
    payload_len: int = 16,
    outbound: bool = False,
) -> Scenario:
    """N SAs and N inbound policies for one gateway, and one flow per policy.

    Tunnel mode: policy i selects inner_host(i)/32 -> `protected`, any protocol, through an
    ESP tunnel traffic_addr -> gateway_addr, level unique with reqid i % 16383 + 1; SA i has
    SPI spi_base + i and the same reqid. Transport mode: policy i selects UDP
    traffic_addr[10000 + i] -> gateway_addr, ESP transport. Keys come from `seed`.
    `outbound` (tunnel mode): also policy i's mirror, direction OUT, through a tunnel
    gateway_addr -> traffic_addr with SA spi_base + n + i, and guest flow i replying to
    flow i, so 2n policies.
    """
    spec = algorithm(alg)
    if n < 1:
        raise ConfigError("a scenario needs at least one policy")
    if mode == "transport" and n > 65536 - TRANSPORT_SPORT:
        raise ConfigError(f"transport mode tells flows apart by port: at most {65536 - 10000}")
    if outbound and mode != "tunnel":
        raise ConfigError("outbound policies are tunnel mode only")
    if spi_base < 256 or spi_base + n * (2 if outbound else 1) - 1 > 0xFFFFFFFF:
        raise ConfigError(f"SPIs 0x{spi_base:x}.. do not fit 0x100..0xffffffff")
    inner_dst = protected_host(protected)
    rng = random.Random(seed)
    sc = Scenario()
    wmode = Mode.TUNNEL if mode == "tunnel" else Mode.TRANSPORT
    for i in range(n):
        reqid = i % REQID_MAX + 1
        sa = SaSpec(
            spi=spi_base + i,
            src=traffic_addr,
            dst=gateway_addr,
            algorithm=alg,
            enc_key=rng.randbytes(spec.enc_key_len),
            auth_key=rng.randbytes(spec.auth_key_len),
            mode=mode,  # type: ignore[arg-type]
            reqid=reqid,
            natt_sport=NATT_PORT if natt else None,
            natt_dport=NATT_PORT if natt else None,
        )
        if mode == "tunnel":
            sel = (f"{inner_host(i)}/32", protected, wire.IPSEC_ULPROTO_ANY, 0, 0)
            flow = FlowSpec(inner_host(i), inner_dst, sa, 17, FLOW_SPORT, FLOW_DPORT, payload_len)
            req = IpsecRequest(50, wmode, Level.UNIQUE, reqid, sa.src, sa.dst)  # type: ignore[arg-type]
        else:
            sport = TRANSPORT_SPORT + i
            sel = (f"{traffic_addr}/32", f"{gateway_addr}/32", 17, sport, FLOW_DPORT)
            flow = FlowSpec(traffic_addr, gateway_addr, sa, 17, sport, FLOW_DPORT, payload_len)
            req = IpsecRequest(50, wmode, Level.UNIQUE, reqid)
        src, dst, proto, sport, dport = sel
        sc.sas.append(sa)
        sc.flows.append(flow)
        sc.sa_msgs.append(add_sa_msg(sa))
        sc.policy_msgs.append(
            messages.spdadd(src, dst, proto, dir=Dir.IN, requests=[req], sport=sport, dport=dport)
        )
        sc.delete_msgs.append(
            messages.spddelete(src, dst, proto, dir=Dir.IN, sport=sport, dport=dport)
        )
    if outbound:
        _mirror(sc, n, spi_base, rng, spec, protected)
    return sc


def _mirror(
    sc: Scenario, n: int, spi_base: int, rng: random.Random, spec: Algorithm, protected: str
) -> None:
    """Each inbound tunnel policy's OUT mirror, its SA and the guest flow that uses it."""
    for i, flow in enumerate(list(sc.flows[:n])):
        inbound = flow.sa
        sa = SaSpec(
            spi=spi_base + n + i,
            src=inbound.dst,
            dst=inbound.src,
            algorithm=inbound.algorithm,
            enc_key=rng.randbytes(spec.enc_key_len),
            auth_key=rng.randbytes(spec.auth_key_len),
            mode="tunnel",
            reqid=inbound.reqid,
        )
        req = IpsecRequest(50, Mode.TUNNEL, Level.UNIQUE, sa.reqid, sa.src, sa.dst)  # type: ignore[arg-type]
        src, dst = protected, f"{flow.src}/32"
        sc.sa_msgs.append(add_sa_msg(sa))
        sc.policy_msgs.append(messages.spdadd(src, dst, wire.IPSEC_ULPROTO_ANY, dir=Dir.OUT,
                                              requests=[req]))  # fmt: skip
        sc.delete_msgs.append(messages.spddelete(src, dst, wire.IPSEC_ULPROTO_ANY, dir=Dir.OUT))
        sc.guest_flows.append(GuestFlow(flow.dst, flow.src, flow.dport, flow.sport))


def add_sa_msg(sa: SaSpec, replay: int = REPLAY) -> Msg:
    """The PF_KEY ADD that installs `sa` on the gateway (mature, replay window on)."""
    alg = sa.alg
    return messages.add_sa(
        sa.src,
        sa.dst,
        sa.spi,
        mode=Mode.TUNNEL if sa.mode == "tunnel" else Mode.TRANSPORT,
        reqid=sa.reqid,
        encrypt=alg.sadb_encrypt,
        enc_key=sa.enc_key,
        auth=alg.sadb_auth,
        auth_key=sa.auth_key,
        replay=replay,
        natt_type=wire.UdpEncap.ESPINUDP if sa.natt else 0,
        natt_sport=sa.natt_sport or 0,
        natt_dport=sa.natt_dport or 0,
    )


# ---------------------------------------------------------------- from setkey messages

_BY_NUMBERS = {(a.sadb_encrypt, a.sadb_auth): a.name for a in ALGORITHMS.values()}


def _sa_from_msg(msg: Msg) -> SaSpec:
    sa, sa2 = msg.sa, msg.get(ExtType.X_SA2)
    src, dst = msg.src, msg.dst
    assert sa is not None and src is not None and dst is not None
    name = _BY_NUMBERS.get((sa.encrypt, sa.auth))
    if name is None:
        raise ConfigError(
            f"SPI 0x{sa.spi:x}: encrypt {sa.encrypt}/auth {sa.auth} is not one the sender "
            f"speaks ({', '.join(ALGORITHMS)})"
        )
    enc = msg.get(ExtType.KEY_ENCRYPT)
    auth = msg.get(ExtType.KEY_AUTH)
    sport = msg.get(ExtType.X_NAT_T_SPORT)
    dport = msg.get(ExtType.X_NAT_T_DPORT)
    natt = msg.get(ExtType.X_NAT_T_TYPE) is not None
    mode = getattr(sa2, "mode", Mode.ANY)
    return SaSpec(
        spi=sa.spi,
        src=str(src.ip),
        dst=str(dst.ip),
        algorithm=name,
        enc_key=getattr(enc, "data", b""),
        auth_key=getattr(auth, "data", b""),
        mode="transport" if mode == Mode.TRANSPORT else "tunnel",
        reqid=getattr(sa2, "reqid", 0),
        natt_sport=getattr(sport, "port", NATT_PORT) if natt else None,
        natt_dport=getattr(dport, "port", NATT_PORT) if natt else None,
    )


def _host_of(addr: Address) -> str:
    """A host inside a selector: the address itself, or the first host of a network."""
    net = ipaddress.ip_network(f"{addr.ip}/{addr.prefixlen}", strict=False)
    if net.num_addresses > 2 and addr.ip == net.network_address:
        return str(net.network_address + 1)
    return str(addr.ip)


def _sa_for(req: IpsecRequest, sel_src: str, sel_dst: str, sas: list[SaSpec]) -> SaSpec | None:
    for sa in sas:
        if req.mode == Mode.TUNNEL:
            if sa.mode != "tunnel" or (str(req.tunnel_src), str(req.tunnel_dst)) != (
                sa.src,
                sa.dst,
            ):
                continue
        elif (sa.src, sa.dst) != (sel_src, sel_dst):
            continue
        if req.level == Level.UNIQUE and req.reqid != sa.reqid:
            continue
        return sa
    return None


def from_messages(msgs: Iterable[Msg], payload_len: int = 16) -> TrafficSpec:
    """The SAs of the ESP ADD messages, and one flow per inbound IPsec policy.

    A flow takes the policy's selector (a network gives its first host, any port gives
    4096 -> 9, any protocol gives UDP) and the first SA that satisfies the policy's ESP
    request: same tunnel endpoints (or hosts, in transport mode), same reqid if unique.

    Raises:
        ConfigError: a policy no SA satisfies, or no inbound IPsec policy at all.
    """
    msgs = list(msgs)
    sas = [
        _sa_from_msg(m)
        for m in msgs
        if m.type in (MsgType.ADD, MsgType.UPDATE) and m.satype == wire.SaType.ESP
    ]
    flows = []
    for m in msgs:
        pol = m.policy
        if m.type not in (MsgType.X_SPDADD, MsgType.X_SPDUPDATE) or pol is None:
            continue
        if pol.dir != Dir.IN or pol.type != PolicyType.IPSEC:
            continue
        src, dst = m.src, m.dst
        assert src is not None and dst is not None
        fsrc, fdst = _host_of(src), _host_of(dst)
        reqs = [r for r in pol.requests if r.proto == 50]
        sa = _sa_for(reqs[0], fsrc, fdst, sas) if reqs else None
        if sa is None:
            raise ConfigError(
                f"policy {src.ip}/{src.prefixlen} -> {dst.ip}/{dst.prefixlen}: "
                "no ESP SA in the file satisfies it"
            )
        proto = src.proto if src.proto in (6, 17) else 17
        flows.append(
            FlowSpec(
                fsrc,
                fdst,
                sa,
                proto,
                src.port or FLOW_SPORT,
                dst.port or FLOW_DPORT,
                payload_len,
            )
        )
    if not flows:
        raise ConfigError("no inbound (-P in) IPsec policy to send traffic for")
    used = {f.sa.spi for f in flows}
    return TrafficSpec([s for s in sas if s.spi in used], flows)
