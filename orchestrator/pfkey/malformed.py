"""Malformed PF_KEY v2 messages, one family per validation rule of spec §5, and pairs of them.

Built with struct from the RFC 2367 layouts, never through orchestrator.pfkey.codec, so a
bug in the codec cannot hide the same bug in a kernel's parser. Each case starts from a
valid message (`BASES`) and applies one mutation, or two of different rules; the rule
names are the spec's.

    corpus(flavour) -> list[Case]       deterministic, >= 1000 cases for either flavour
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace

HDR = struct.Struct("<BBBBHHII")  # version type errno satype len reserved seq pid
EXT = struct.Struct("<HH")

# spec §5's message, extension and SA type numbers
GETSPI, ADD, DELETE, GET, REGISTER, FLUSH, DUMP = 1, 3, 4, 5, 7, 9, 10
SPDADD, SPDDELETE, SPDGET, SPDDUMP, SPDFLUSH = 14, 15, 16, 18, 19
SA, KEY_AUTH, KEY_ENCRYPT, SRC, DST, SPIRANGE, POLICY = 1, 8, 9, 5, 6, 16, 18
UNSPEC, AH, ESP, IPCOMP = 0, 2, 3, 9
MAX_TYPE = 22

# The rules of spec §5 "Validation and errors", in its order.
RULES = (
    "length",  # total length != len*8, or shorter than a header
    "version",  # version != 2
    "ext-unknown",  # an unknown extension type
    "ext-duplicate",  # a duplicate extension type
    "ext-length",  # a bad extension length: 0, past the end, short of its struct
    "msg-type",  # type 0 or > 22
    "satype",  # a policy message with AH/ESP/IPCOMP, an SA message with UNSPEC
    "family",  # src/dst family or upper-layer protocol mismatch
    "prefix",  # a prefix over 32 or 128
    "sockaddr",  # a sockaddr with a bad length or family
    "policy",  # a policy extension with a bad type, direction or request
    "sa",  # an SA or key extension with a bad algorithm, state or key length
)


@dataclass(frozen=True)
class Raw:
    """A message as parts: the header fields, its extensions as bytes, and how to lie."""

    type: int
    satype: int
    exts: tuple[bytes, ...] = ()
    version: int = 2
    units: int | None = None  # sadb_msg_len; None: the true length
    tail: bytes = b""  # bytes past what sadb_msg_len covers
    cut: int | None = None  # send only this many bytes

    def encode(self, seq: int = 0, pid: int = 0) -> bytes:
        body = b"".join(self.exts)
        units = (HDR.size + len(body)) // 8 if self.units is None else self.units
        data = HDR.pack(self.version, self.type, 0, self.satype, units & 0xFFFF, 0, seq, pid)
        data += body + self.tail
        return data if self.cut is None else data[: self.cut]


@dataclass(frozen=True)
class Case:
    name: str  # base/rule:detail[+rule:detail]
    rules: tuple[str, ...]
    raw: Raw = field(repr=False)


# ------------------------------------------------------------------ building blocks


def ext(ext_type: int, body: bytes, units: int | None = None) -> bytes:
    """One extension, padded to 8 bytes; `units` overrides its sadb_ext_len."""
    body += b"\0" * (-(len(body) + EXT.size) % 8)
    n = (EXT.size + len(body)) // 8 if units is None else units
    return EXT.pack(n & 0xFFFF, ext_type) + body


def sockaddr(ip: str, flavour: str, port: int = 0, *, sa_len: int | None = None,
             family: int | None = None) -> bytes:  # fmt: skip
    a = ipaddress.ip_address(ip)
    v6 = a.version == 6
    fam = family if family is not None else ((24 if flavour == "bsd" else 10) if v6 else 2)
    size = 28 if v6 else 16
    if flavour == "bsd":
        head = bytes([size if sa_len is None else sa_len & 0xFF, fam & 0xFF])
    else:
        head = struct.pack("<H", fam & 0xFFFF)
    tail = (b"\0" * 4 + a.packed + b"\0" * 4) if v6 else (a.packed + b"\0" * 8)
    return head + struct.pack("!H", port) + tail


def address(ext_type: int, ip: str, plen: int, flavour: str, proto: int = 255, **sa) -> bytes:
    return ext(ext_type, struct.pack("<BBH", proto, plen, 0) + sockaddr(ip, flavour, **sa))


def policy(ptype: int, direction: int, flavour: str, requests: bytes = b"", pid: int = 0) -> bytes:
    return ext(POLICY, struct.pack("<HBBII", ptype, direction, 0, pid, 0) + requests)


def request(flavour: str, proto: int = 50, mode: int = 1, level: int = 2,
            length: int | None = None) -> bytes:  # fmt: skip
    """One sadb_x_ipsecrequest: KAME's is 8 bytes, Linux's 16 (a u32 reqid)."""
    if flavour == "bsd":
        body = struct.pack("<HHBBH", 8, proto, mode, level, 0)
    else:
        body = struct.pack("<HHBBHII", 16, proto, mode, level, 0, 0, 0)
    if length is not None:
        body = struct.pack("<H", length) + body[2:]
    return body


def sa(spi: int = 0x1234, replay: int = 0, state: int = 0, auth: int = 5, enc: int = 12) -> bytes:
    return ext(SA, struct.pack("!I", spi) + struct.pack("<BBBBI", replay, state, auth, enc, 0))


def key(ext_type: int, data: bytes, bits: int | None = None) -> bytes:
    n = len(data) * 8 if bits is None else bits
    return ext(ext_type, struct.pack("<HH", n, 0) + data)


SRC_NET, DST_NET = "10.213.0.0", "10.214.0.0"
SRC_IP, DST_IP = "10.213.0.1", "10.214.0.1"


def bases(flavour: str) -> dict[str, Raw]:
    """Valid messages, one per kind the rules apply to; every one is answered."""
    fl = flavour
    pair = (address(SRC, SRC_NET, 24, fl), address(DST, DST_NET, 24, fl))
    hosts = (address(SRC, SRC_IP, 32, fl), address(DST, DST_IP, 32, fl))
    keys = (key(KEY_AUTH, bytes(range(32))), key(KEY_ENCRYPT, bytes(range(16))))
    return {
        "spdadd": Raw(SPDADD, UNSPEC, (*pair, policy(0, 2, fl))),
        "spdadd-ipsec": Raw(SPDADD, UNSPEC, (*pair, policy(2, 2, fl, request(fl)))),
        "spddelete": Raw(SPDDELETE, UNSPEC, (*pair, policy(0, 2, fl))),
        "spdget": Raw(SPDGET, UNSPEC, (policy(0, 2, fl, pid=1),)),
        "spdflush": Raw(SPDFLUSH, UNSPEC),
        "spddump": Raw(SPDDUMP, UNSPEC),
        "add": Raw(ADD, ESP, (sa(), *hosts, *keys)),
        "get": Raw(GET, ESP, (sa(), *hosts)),
        "delete": Raw(DELETE, ESP, (sa(), *hosts)),
        "getspi": Raw(GETSPI, ESP, (*hosts, ext(SPIRANGE, struct.pack("<III", 0x100, 0x200, 0)))),
        "register": Raw(REGISTER, ESP),
        "flush": Raw(FLUSH, ESP),
    }


# ------------------------------------------------------------------ mutations

Mutation = tuple[str, str, Callable[[Raw], Raw]]


def _set_ext(r: Raw, i: int, data: bytes) -> Raw:
    return replace(r, exts=(*r.exts[:i], data, *r.exts[i + 1 :]))


def _ext_type(data: bytes) -> int:
    return EXT.unpack_from(data)[1]


def _find(r: Raw, ext_type: int) -> int | None:
    return next((i for i, e in enumerate(r.exts) if _ext_type(e) == ext_type), None)


def _true_units(r: Raw) -> int:
    return (HDR.size + sum(map(len, r.exts))) // 8


def header_mutations(r: Raw) -> list[Mutation]:
    n = _true_units(r)
    out: list[Mutation] = []
    for units in sorted({0, 1, n - 1, n + 1, 0xFFFF} - {n}):
        out.append(("length", f"len={units}", lambda r, u=units: replace(r, units=u)))
    out.append(("length", "trailing-8", lambda r: replace(r, tail=b"\0" * 8)))
    out.append(("length", "trailing-3", lambda r: replace(r, tail=b"\0" * 3)))
    if r.exts:
        out.append(("length", "truncated-ext", lambda r: replace(r, cut=HDR.size + 4)))
    for v in (0, 1, 3, 255):
        out.append(("version", f"v{v}", lambda r, v=v: replace(r, version=v)))
    for t in (0, MAX_TYPE + 1, 24, 100, 255):
        out.append(("msg-type", f"type={t}", lambda r, t=t: replace(r, type=t)))
    return out


def satype_mutations(r: Raw) -> list[Mutation]:
    if r.type in (SPDADD, SPDDELETE, SPDGET, SPDFLUSH, SPDDUMP):
        bad = (AH, ESP, IPCOMP)
    elif r.type in (REGISTER, FLUSH):
        bad = (1, 4, 255)
    else:
        bad = (UNSPEC, 1, 4, 255)
    return [("satype", f"satype={s}", lambda r, s=s: replace(r, satype=s)) for s in bad]


def ext_mutations(r: Raw) -> list[Mutation]:
    out: list[Mutation] = []
    for t in (0, 26, 30, 0x7FFF, 0xFFFF):
        out.append(
            ("ext-unknown", f"type={t}", lambda r, t=t: replace(r, exts=(*r.exts, ext(t, b""))))
        )
    for i, e in enumerate(r.exts):
        t = _ext_type(e)
        out.append(("ext-duplicate", f"ext{t}", lambda r, e=e: replace(r, exts=(*r.exts, e))))
        for units, what in (
            (0, "zero"),
            (1, "short"),
            (len(e) // 8 + 1, "past-end"),
            (0xFFFF, "max"),
        ):
            if units == len(e) // 8 or (what == "short" and len(e) <= 8):
                continue
            data = struct.pack("<H", units) + e[2:]
            out.append(("ext-length", f"ext{t}:{what}", lambda r, i=i, d=data: _set_ext(r, i, d)))
        # The same extension type at the wrong end: what the parser says for a dangling one.
        out.append(("ext-length", f"ext{t}:odd", lambda r, i=i, e=e: _set_ext(r, i, e + b"\0" * 4)))
    return out


def address_mutations(r: Raw, fl: str) -> list[Mutation]:
    i_src, i_dst = _find(r, SRC), _find(r, DST)
    if i_src is None or i_dst is None:
        return []
    plen = 24 if r.type in (SPDADD, SPDDELETE) else 32
    ip = SRC_NET if plen == 24 else SRC_IP
    out: list[Mutation] = []

    def at(i: int, data: bytes) -> Callable[[Raw], Raw]:
        return lambda r: _set_ext(r, i, data)

    for p in (33, 64, 128, 255):
        out.append(("prefix", f"src/{p}", at(i_src, address(SRC, ip, p, fl))))
    out.append(
        (
            "prefix",
            "v6/129",
            lambda r: _set_ext(
                _set_ext(r, i_src, address(SRC, "fd00::", 129, fl)),
                i_dst,
                address(DST, "fd01::", 64, fl),
            ),
        )
    )
    out.append(("family", "v4-v6", at(i_dst, address(DST, "fd01::1", 128, fl))))
    out.append(
        (
            "family",
            "proto-6-17",
            lambda r: _set_ext(
                _set_ext(r, i_src, address(SRC, ip, plen, fl, proto=6)),
                i_dst,
                address(DST, DST_NET if plen == 24 else DST_IP, plen, fl, proto=17),
            ),
        )
    )
    for fam in (0, 1, 255):
        out.append(("sockaddr", f"family={fam}", at(i_src, address(SRC, ip, plen, fl, family=fam))))
    if fl == "bsd":
        for n in (0, 1, 15, 17, 255):
            out.append(("sockaddr", f"sa_len={n}", at(i_src, address(SRC, ip, plen, fl, sa_len=n))))
    # An IPv6 family in an IPv4-sized address extension, and an address cut to its header.
    v6fam = 24 if fl == "bsd" else 10
    out.append(("sockaddr", "v6-in-v4-slot", at(i_src, address(SRC, ip, plen, fl, family=v6fam))))
    out.append(("sockaddr", "no-sockaddr", at(i_src, ext(SRC, struct.pack("<BBH", 255, plen, 0)))))
    return out


def policy_mutations(r: Raw, fl: str) -> list[Mutation]:
    i = _find(r, POLICY)
    if i is None:
        return []
    out: list[Mutation] = []

    def at(data: bytes) -> Callable[[Raw], Raw]:
        return lambda r: _set_ext(r, i, data)

    for d in (0, 3, 255):
        out.append(("policy", f"dir={d}", at(policy(0, d, fl))))
    for t in (5, 255, 0xFFFF):
        out.append(("policy", f"type={t}", at(policy(t, 2, fl))))
    for what, req in (
        ("req-len=0", request(fl, length=0)),
        ("req-len=past-end", request(fl, length=200)),
        ("req-len=odd", request(fl, length=10)),
        ("req-proto=255", request(fl, proto=255)),
        ("req-mode=0", request(fl, mode=0)),
        ("req-mode=tunnel-no-ends", request(fl, mode=2)),
        ("req-level=255", request(fl, level=255)),
    ):
        out.append(("policy", what, at(policy(2, 2, fl, req))))
    out.append(("policy", "discard-with-req", at(policy(0, 2, fl, request(fl)))))
    return out


def sa_mutations(r: Raw) -> list[Mutation]:
    i = _find(r, SA)
    if i is None:
        return []
    out: list[Mutation] = []
    for what, data in (
        ("spi=0", sa(spi=0)),
        ("state=255", sa(state=255)),
        ("enc=255", sa(enc=255)),
        ("auth=255", sa(auth=255)),
        ("enc=none", sa(enc=0)),
        ("replay=255", sa(replay=255)),
    ):
        out.append(("sa", what, lambda r, d=data: _set_ext(r, i, d)))
    k = _find(r, KEY_ENCRYPT)
    if k is not None:
        for what, data in (
            ("keybits=1", key(KEY_ENCRYPT, bytes(16), bits=1)),
            ("keybits>data", key(KEY_ENCRYPT, bytes(16), bits=4096)),
            ("keybits=0", key(KEY_ENCRYPT, b"", bits=0)),
        ):
            out.append(("sa", what, lambda r, d=data: _set_ext(r, k, d)))
    return out


def mutations(r: Raw, fl: str) -> list[Mutation]:
    return [
        *header_mutations(r),
        *satype_mutations(r),
        *ext_mutations(r),
        *address_mutations(r, fl),
        *policy_mutations(r, fl),
        *sa_mutations(r),
    ]


def corpus(flavour: str) -> list[Case]:
    """Every single mutation of every base, then pairs of different rules, then messages
    shorter than a header."""
    out: list[Case] = []
    for bname, base in bases(flavour).items():
        ms = mutations(base, flavour)
        for rule, detail, fn in ms:
            out.append(Case(f"{bname}/{rule}:{detail}", (rule,), fn(base)))
        # Pairs: the first mutation of each rule with the first of every later rule, so
        # each combination of rules this base allows appears once.
        firsts: dict[str, Mutation] = {}
        for m in ms:
            firsts.setdefault(m[0], m)
        seconds = [m for m in ms if m is not firsts[m[0]]]
        rules = list(firsts.values())
        for a_i, a in enumerate(rules):
            for b in [*rules[a_i + 1 :], *(s for s in seconds if s[0] != a[0])][:12]:
                name = f"{bname}/{a[0]}:{a[1]}+{b[0]}:{b[1]}"
                out.append(Case(name, (a[0], b[0]), b[2](a[2](base))))
    for n in range(16):
        out.append(Case(f"header/length:short-{n}", ("length",), Raw(SPDDUMP, 0, cut=n)))
    return out
