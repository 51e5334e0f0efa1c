"""PF_KEY v2 messages as dataclasses, and their byte-exact encoding (RFC 2367 + KAME).

Decoding treats its input as untrusted, like KAME's key_parse/key_validate_ext: every
rejection is a PfkeyError naming the byte offset and the C field at fault.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from orchestrator.errors import PfkeyError
from orchestrator.pfkey import wire
from orchestrator.pfkey.wire import ExtType, MsgType, SaType, align8

IPAddress = IPv4Address | IPv6Address
FLAVOURS = tuple(wire.FAMILIES)


@dataclass
class Sa:
    """sadb_sa: the SPI is a plain int here, network order on the wire."""

    spi: int
    replay: int = 0
    state: int = wire.SaState.LARVAL
    auth: int = wire.AuthAlg.NONE
    encrypt: int = wire.EncAlg.NONE
    flags: int = 0


@dataclass
class Lifetime:
    """sadb_lifetime; the message key says whether it is CURRENT, HARD or SOFT."""

    allocations: int = 0
    bytes: int = 0
    addtime: int = 0
    usetime: int = 0


@dataclass
class Address:
    """sadb_address and its sockaddr; prefixlen None means a host (32 or 128)."""

    ip: IPAddress
    prefixlen: int | None = None
    port: int = wire.IPSEC_PORT_ANY
    proto: int = wire.IPSEC_ULPROTO_ANY

    def __post_init__(self) -> None:
        if not isinstance(self.ip, IPv4Address | IPv6Address):
            self.ip = ipaddress.ip_address(self.ip)
        if self.prefixlen is None:
            self.prefixlen = self.ip.max_prefixlen


@dataclass
class Key:
    """sadb_key: bits defaults to the whole of data."""

    data: bytes
    bits: int | None = None

    def __post_init__(self) -> None:
        if self.bits is None:
            self.bits = len(self.data) * 8


@dataclass
class Sa2:
    """sadb_x_sa2."""

    mode: int = wire.Mode.ANY
    sequence: int = 0
    reqid: int = 0


@dataclass
class IpsecRequest:
    """sadb_x_ipsecrequest; tunnel endpoints go together or not at all."""

    proto: int
    mode: int
    level: int = wire.Level.DEFAULT
    reqid: int = 0
    tunnel_src: IPAddress | None = None
    tunnel_dst: IPAddress | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tunnel_src, str):
            self.tunnel_src = ipaddress.ip_address(self.tunnel_src)
        if isinstance(self.tunnel_dst, str):
            self.tunnel_dst = ipaddress.ip_address(self.tunnel_dst)


@dataclass
class Policy:
    """sadb_x_policy with its requests."""

    type: int
    dir: int
    id: int = 0
    requests: list[IpsecRequest] = field(default_factory=list)
    reserved2: int = 0


@dataclass
class SpiRange:
    """sadb_spirange (host order, as KAME reads it)."""

    min: int
    max: int


@dataclass
class Alg:
    """sadb_alg, one entry of a SUPPORTED extension."""

    id: int
    ivlen: int = 0
    minbits: int = 0
    maxbits: int = 0


@dataclass
class Supported:
    """sadb_supported."""

    algs: list[Alg] = field(default_factory=list)


@dataclass
class Identity:
    """sadb_ident; data is the identity string without its NUL padding."""

    idtype: int = 0
    id: int = 0
    data: bytes = b""


@dataclass
class NatTType:
    """sadb_x_nat_t_type."""

    type: int = wire.UdpEncap.ESPINUDP


@dataclass
class NatTPort:
    """sadb_x_nat_t_port: the port is network order on the wire."""

    port: int


@dataclass
class NatTFrag:
    """sadb_x_nat_t_frag."""

    frag: int


@dataclass
class RawExt:
    """Any extension kept opaque: the bytes after its 4-byte header, padding included."""

    data: bytes = b""


Ext = (
    Sa
    | Lifetime
    | Address
    | Key
    | Sa2
    | Policy
    | SpiRange
    | Supported
    | Identity
    | NatTType
    | NatTPort
    | NatTFrag
    | RawExt
)


@dataclass
class Msg:
    """sadb_msg and its extensions, in wire order; reserved is the refcnt in SPDDUMP replies."""

    type: int
    satype: int = SaType.UNSPEC
    errno: int = 0
    seq: int = 0
    pid: int = 0
    reserved: int = 0
    exts: dict[int, Ext] = field(default_factory=dict)

    def get(self, ext_type: int) -> Ext | None:
        return self.exts.get(ext_type)

    @property
    def refcnt(self) -> int:
        return self.reserved

    @property
    def policy(self) -> Policy | None:
        ext = self.exts.get(ExtType.X_POLICY)
        return ext if isinstance(ext, Policy) else None

    @property
    def src(self) -> Address | None:
        ext = self.exts.get(ExtType.ADDRESS_SRC)
        return ext if isinstance(ext, Address) else None

    @property
    def dst(self) -> Address | None:
        ext = self.exts.get(ExtType.ADDRESS_DST)
        return ext if isinstance(ext, Address) else None

    @property
    def sa(self) -> Sa | None:
        ext = self.exts.get(ExtType.SA)
        return ext if isinstance(ext, Sa) else None


# Which class each extension type holds; Linux reuses 24.. for its own extensions.
_EXT_CLASS: dict[int, type] = {
    ExtType.SA: Sa,
    ExtType.LIFETIME_CURRENT: Lifetime,
    ExtType.LIFETIME_HARD: Lifetime,
    ExtType.LIFETIME_SOFT: Lifetime,
    ExtType.ADDRESS_SRC: Address,
    ExtType.ADDRESS_DST: Address,
    ExtType.ADDRESS_PROXY: Address,
    ExtType.KEY_AUTH: Key,
    ExtType.KEY_ENCRYPT: Key,
    ExtType.IDENTITY_SRC: Identity,
    ExtType.IDENTITY_DST: Identity,
    ExtType.SENSITIVITY: RawExt,
    ExtType.PROPOSAL: RawExt,
    ExtType.SUPPORTED_AUTH: Supported,
    ExtType.SUPPORTED_ENCRYPT: Supported,
    ExtType.SPIRANGE: SpiRange,
    ExtType.X_KMPRIVATE: RawExt,
    ExtType.X_POLICY: Policy,
    ExtType.X_SA2: Sa2,
    ExtType.X_NAT_T_TYPE: NatTType,
    ExtType.X_NAT_T_SPORT: NatTPort,
    ExtType.X_NAT_T_DPORT: NatTPort,
    ExtType.X_NAT_T_OAI: Address,
    ExtType.X_NAT_T_OAR: Address,
    ExtType.X_NAT_T_FRAG: NatTFrag,
}
_EXT_CLASS_LINUX: dict[int, type] = {**_EXT_CLASS, 24: RawExt, 25: RawExt, 26: RawExt}


def _ext_classes(flavour: str) -> dict[int, type]:
    if flavour not in wire.FAMILIES:
        raise PfkeyError(f"unknown sockaddr flavour {flavour!r}; use one of {FLAVOURS}")
    return _EXT_CLASS_LINUX if flavour == "linux" else _EXT_CLASS


def _ext_name(ext_type: int) -> str:
    return ExtType(ext_type).name if ext_type in ExtType._value2member_map_ else str(ext_type)


# ---------------------------------------------------------------- encoding


def _pack(st: struct.Struct, fieldname: str, *values: object) -> bytes:
    try:
        return st.pack(*values)
    except struct.error as e:
        raise PfkeyError(f"cannot encode: {e}", field=fieldname) from None


def _be(value: int, size: int, fieldname: str) -> bytes:
    try:
        return int(value).to_bytes(size, "big")
    except OverflowError:
        raise PfkeyError(f"{value} does not fit {size * 8} bits", field=fieldname) from None


def _pad(body: bytes) -> bytes:
    return body + bytes(align8(len(body)) - len(body))


def encode_sockaddr(ip: IPAddress, port: int, flavour: str) -> bytes:
    """A 16- or 28-byte sockaddr in the given flavour."""
    af_inet, af_inet6 = wire.FAMILIES[flavour]
    bport = _be(port, 2, "sin_port")
    if ip.version == 4:
        if flavour in wire.SA_LEN_FLAVOURS:
            return wire.BSD_SIN.pack(wire.SIN_LEN, af_inet, bport, ip.packed)
        return wire.LINUX_SIN.pack(af_inet, bport, ip.packed)
    scope = int(ip.scope_id) if ip.scope_id and ip.scope_id.isdigit() else 0
    if flavour in wire.SA_LEN_FLAVOURS:
        return wire.BSD_SIN6.pack(wire.SIN6_LEN, af_inet6, bport, 0, ip.packed, scope)
    return wire.LINUX_SIN6.pack(af_inet6, bport, 0, ip.packed, scope)


def _enc_sa(ext: Sa, t: int, fl: str) -> bytes:
    spi = _be(ext.spi, 4, "sadb_sa_spi")
    return _pack(
        wire.SA, "sadb_sa", 0, t, spi, ext.replay, ext.state, ext.auth, ext.encrypt, ext.flags
    )


def _enc_lifetime(ext: Lifetime, t: int, fl: str) -> bytes:
    values = (ext.allocations, ext.bytes, ext.addtime, ext.usetime)
    return _pack(wire.LIFETIME, "sadb_lifetime", 0, t, *values)


def _enc_address(ext: Address, t: int, fl: str) -> bytes:
    sa = _pad(encode_sockaddr(ext.ip, ext.port, fl))
    return _pack(wire.ADDRESS, "sadb_address", 0, t, ext.proto, ext.prefixlen, 0) + sa


def _enc_key(ext: Key, t: int, fl: str) -> bytes:
    bits = len(ext.data) * 8 if ext.bits is None else ext.bits
    if (bits + 7) // 8 != len(ext.data):
        raise PfkeyError(f"{bits} bits but {len(ext.data)} bytes of key", field="sadb_key_bits")
    return _pack(wire.KEY, "sadb_key", 0, t, bits, 0) + _pad(ext.data)


def _enc_identity(ext: Identity, t: int, fl: str) -> bytes:
    return _pack(wire.IDENTITY, "sadb_ident", 0, t, ext.idtype, 0, ext.id) + _pad(ext.data)


def _enc_supported(ext: Supported, t: int, fl: str) -> bytes:
    algs = b"".join(
        _pack(wire.ALG, "sadb_alg", a.id, a.ivlen, a.minbits, a.maxbits, 0) for a in ext.algs
    )
    return _pack(wire.SUPPORTED, "sadb_supported", 0, t, 0) + algs


def _enc_spirange(ext: SpiRange, t: int, fl: str) -> bytes:
    return _pack(wire.SPIRANGE, "sadb_spirange", 0, t, ext.min, ext.max, 0)


def _enc_sa2(ext: Sa2, t: int, fl: str) -> bytes:
    return _pack(wire.SA2, "sadb_x_sa2", 0, t, ext.mode, 0, 0, ext.sequence, ext.reqid)


def _request_struct(fl: str) -> struct.Struct:
    """sadb_x_ipsecrequest: 8 bytes with a u16 reqid (KAME), 16 with a u32 one (Linux)."""
    return wire.IPSECREQUEST_LINUX if fl == "linux" else wire.IPSECREQUEST


def _enc_request(req: IpsecRequest, fl: str) -> bytes:
    addrs = b""
    if (req.tunnel_src is None) != (req.tunnel_dst is None):
        raise PfkeyError("tunnel endpoints need both src and dst", field="sadb_x_ipsecrequest")
    if req.tunnel_src is not None and req.tunnel_dst is not None:
        addrs = encode_sockaddr(req.tunnel_src, 0, fl) + encode_sockaddr(req.tunnel_dst, 0, fl)
    # The one PF_KEY length in bytes; KAME pads it to 8 like everything else.
    hdr = _request_struct(fl)
    size = align8(hdr.size + len(addrs))
    values = (size, req.proto, req.mode, req.level, req.reqid)
    if fl == "linux":
        values = (*values[:4], 0, req.reqid, 0)
    head = _pack(hdr, "sadb_x_ipsecrequest", *values)
    return head + addrs + bytes(size - len(head) - len(addrs))


def _enc_policy(ext: Policy, t: int, fl: str) -> bytes:
    reqs = b"".join(_enc_request(r, fl) for r in ext.requests)
    values = (ext.type, ext.dir, 0, ext.id, ext.reserved2)
    return _pack(wire.POLICY, "sadb_x_policy", 0, t, *values) + reqs


def _enc_natt_type(ext: NatTType, t: int, fl: str) -> bytes:
    return _pack(wire.NAT_T_TYPE, "sadb_x_nat_t_type", 0, t, ext.type)


def _enc_natt_port(ext: NatTPort, t: int, fl: str) -> bytes:
    return _pack(wire.NAT_T_PORT, "sadb_x_nat_t_port", 0, t, _be(ext.port, 2, "port"), 0)


def _enc_natt_frag(ext: NatTFrag, t: int, fl: str) -> bytes:
    return _pack(wire.NAT_T_FRAG, "sadb_x_nat_t_frag", 0, t, ext.frag, 0)


def _enc_raw(ext: RawExt, t: int, fl: str) -> bytes:
    return _pad(_pack(wire.EXT, "sadb_ext", 0, t) + ext.data)


_ENCODERS: dict[type, Callable[..., bytes]] = {
    Sa: _enc_sa,
    Lifetime: _enc_lifetime,
    Address: _enc_address,
    Key: _enc_key,
    Identity: _enc_identity,
    Supported: _enc_supported,
    SpiRange: _enc_spirange,
    Sa2: _enc_sa2,
    Policy: _enc_policy,
    NatTType: _enc_natt_type,
    NatTPort: _enc_natt_port,
    NatTFrag: _enc_natt_frag,
    RawExt: _enc_raw,
}


def encode(msg: Msg, flavour: str = "bsd") -> bytes:
    """The wire bytes of msg; extensions in dict order.

    Raises:
        PfkeyError: an extension of the wrong class for its type, or a value out of range.
    """
    classes = _ext_classes(flavour)
    exts = []
    for t, ext in msg.exts.items():
        want = classes.get(t)
        if want is None:
            raise PfkeyError(f"unknown extension type {t}", field="sadb_ext_type")
        if not isinstance(ext, want):
            raise PfkeyError(
                f"{_ext_name(t)} needs a {want.__name__}, not {type(ext).__name__}",
                field="sadb_ext_type",
            )
        # Encoders leave sadb_ext_len at 0: it is filled in from what they built.
        body = _ENCODERS[type(ext)](ext, t, flavour)
        if len(body) // 8 > 0xFFFF:
            raise PfkeyError(f"{_ext_name(t)} is too long", field="sadb_ext_len")
        exts.append(struct.pack("<H", len(body) // 8) + body[2:])
    payload = b"".join(exts)
    units = (wire.HEADER_LEN + len(payload)) // 8
    if units > 0xFFFF:
        raise PfkeyError(f"message of {units * 8} bytes is too long", field="sadb_msg_len")
    values = (msg.type, msg.errno, msg.satype, units, msg.reserved, msg.seq, msg.pid)
    head = _pack(wire.MSG, "sadb_msg", wire.PF_KEY_V2, *values)
    return head + payload


# ---------------------------------------------------------------- decoding


def decode_sockaddr(buf: bytes, off: int, end: int, flavour: str) -> tuple[IPAddress, int, int]:
    """(ip, port, size) of the sockaddr at buf[off:], which must end by `end`."""
    af_inet, af_inet6 = wire.FAMILIES[flavour]
    if end - off < 2:
        raise PfkeyError("truncated sockaddr", offset=off, field="sockaddr")
    if flavour in wire.SA_LEN_FLAVOURS:
        sa_len, family = buf[off], buf[off + 1]
        fam_off, fam_field = off + 1, "sa_family"
    else:
        family = struct.unpack_from("<H", buf, off)[0]
        fam_off, fam_field = off, "sin_family"
    if family == af_inet:
        size, name = wire.SIN_LEN, "AF_INET"
    elif family == af_inet6:
        size, name = wire.SIN6_LEN, "AF_INET6"
    else:
        raise PfkeyError(f"unsupported address family {family}", offset=fam_off, field=fam_field)
    if flavour in wire.SA_LEN_FLAVOURS and sa_len != size:
        raise PfkeyError(
            f"sockaddr length {sa_len} does not match {name} ({size})", offset=off, field="sa_len"
        )
    if off + size > end:
        raise PfkeyError(
            f"{name} sockaddr of {size} bytes overruns its container by {off + size - end}",
            offset=off,
            field="sa_len" if flavour in wire.SA_LEN_FLAVOURS else "sockaddr",
        )
    port = int.from_bytes(buf[off + 2 : off + 4], "big")
    ip: IPAddress
    if size == wire.SIN_LEN:
        ip = IPv4Address(buf[off + 4 : off + 8])
    else:
        ip = IPv6Address(buf[off + 8 : off + 24])
        scope = struct.unpack_from("<I", buf, off + 24)[0]
        if scope:
            ip = IPv6Address(f"{ip}%{scope}")
    return ip, port, size


def _fixed(st: struct.Struct, name: str, buf: bytes, off: int, end: int) -> tuple:
    if end - off != st.size:
        raise PfkeyError(
            f"{name} extension of {end - off} bytes, expected {st.size}",
            offset=off,
            field="sadb_ext_len",
        )
    return st.unpack_from(buf, off)


def _least(st: struct.Struct, name: str, buf: bytes, off: int, end: int) -> tuple:
    if end - off < st.size:
        raise PfkeyError(
            f"{name} extension of {end - off} bytes, at least {st.size} needed",
            offset=off,
            field="sadb_ext_len",
        )
    return st.unpack_from(buf, off)


def _dec_sa(buf: bytes, off: int, end: int, fl: str) -> Sa:
    _, _, spi, replay, state, auth, encrypt, flags = _fixed(wire.SA, "SA", buf, off, end)
    return Sa(
        int.from_bytes(spi, "big"),
        replay,
        wire.enum_or_int(wire.SaState, state),
        auth,
        encrypt,
        flags,
    )


def _dec_lifetime(buf: bytes, off: int, end: int, fl: str) -> Lifetime:
    _, _, alloc, nbytes, add, use = _fixed(wire.LIFETIME, "lifetime", buf, off, end)
    return Lifetime(alloc, nbytes, add, use)


def _dec_address(buf: bytes, off: int, end: int, fl: str) -> Address:
    _, _, proto, plen, _ = _least(wire.ADDRESS, "address", buf, off, end)
    ip, port, size = decode_sockaddr(buf, off + wire.ADDRESS.size, end, fl)
    want = wire.ADDRESS.size + align8(size)
    if end - off != want:
        raise PfkeyError(
            f"address extension of {end - off} bytes, the sockaddr needs {want}",
            offset=off,
            field="sadb_address_len",
        )
    if plen > ip.max_prefixlen:
        raise PfkeyError(
            f"prefix {plen} exceeds {ip.max_prefixlen} bits for IPv{ip.version}",
            offset=off + 5,
            field="sadb_address_prefixlen",
        )
    return Address(ip, plen, port, proto)


def _dec_key(buf: bytes, off: int, end: int, fl: str) -> Key:
    _, _, bits, _ = _least(wire.KEY, "key", buf, off, end)
    nbytes = (bits + 7) // 8
    if end - off != align8(wire.KEY.size + nbytes):
        raise PfkeyError(
            f"key extension of {end - off} bytes does not hold {bits} bits exactly padded",
            offset=off + 4,
            field="sadb_key_bits",
        )
    start = off + wire.KEY.size
    return Key(bytes(buf[start : start + nbytes]), bits)


def _dec_identity(buf: bytes, off: int, end: int, fl: str) -> Identity:
    _, _, idtype, _, ident = _least(wire.IDENTITY, "identity", buf, off, end)
    return Identity(idtype, ident, bytes(buf[off + wire.IDENTITY.size : end]).rstrip(b"\0"))


def _dec_supported(buf: bytes, off: int, end: int, fl: str) -> Supported:
    _least(wire.SUPPORTED, "supported", buf, off, end)
    algs = []
    for pos in range(off + wire.SUPPORTED.size, end, wire.ALG.size):
        alg_id, ivlen, minbits, maxbits, _ = wire.ALG.unpack_from(buf, pos)
        algs.append(Alg(alg_id, ivlen, minbits, maxbits))
    return Supported(algs)


def _dec_spirange(buf: bytes, off: int, end: int, fl: str) -> SpiRange:
    _, _, lo, hi, _ = _fixed(wire.SPIRANGE, "SPI range", buf, off, end)
    return SpiRange(lo, hi)


def _dec_sa2(buf: bytes, off: int, end: int, fl: str) -> Sa2:
    _, _, mode, _, _, seq, reqid = _fixed(wire.SA2, "SA2", buf, off, end)
    return Sa2(wire.enum_or_int(wire.Mode, mode), seq, reqid)


def _dec_request(buf: bytes, pos: int, end: int, fl: str) -> tuple[IpsecRequest, int]:
    hdr = _request_struct(fl)
    if end - pos < hdr.size:
        raise PfkeyError(
            f"truncated ipsecrequest: {end - pos} bytes left in the policy",
            offset=pos,
            field="sadb_x_ipsecrequest_len",
        )
    reqlen, proto, mode, level, reqid = hdr.unpack_from(buf, pos)[:5]
    if fl == "linux":
        reqid = hdr.unpack_from(buf, pos)[5]
    if reqlen < hdr.size:
        raise PfkeyError(
            f"request length {reqlen} is shorter than its {hdr.size}-byte header",
            offset=pos,
            field="sadb_x_ipsecrequest_len",
        )
    if pos + reqlen > end:
        raise PfkeyError(
            f"request length {reqlen} overruns the policy extension by {pos + reqlen - end} bytes",
            offset=pos,
            field="sadb_x_ipsecrequest_len",
        )
    req = IpsecRequest(
        wire.enum_or_int(wire.IpsecProto, proto),
        wire.enum_or_int(wire.Mode, mode),
        wire.enum_or_int(wire.Level, level),
        reqid,
    )
    # KAME reads endpoints whenever the request is longer than its header, whatever the mode.
    if reqlen > hdr.size:
        sub = pos + hdr.size
        req.tunnel_src, _, size = decode_sockaddr(buf, sub, pos + reqlen, fl)
        req.tunnel_dst, _, _ = decode_sockaddr(buf, sub + size, pos + reqlen, fl)
    return req, pos + reqlen


def _dec_policy(buf: bytes, off: int, end: int, fl: str) -> Policy:
    _, _, ptype, pdir, _, pid, res2 = _least(wire.POLICY, "policy", buf, off, end)
    pol = Policy(wire.enum_or_int(wire.PolicyType, ptype), wire.enum_or_int(wire.Dir, pdir), pid)
    pol.reserved2 = res2
    pos = off + wire.POLICY.size
    while pos < end:
        req, pos = _dec_request(buf, pos, end, fl)
        pol.requests.append(req)
    return pol


def _dec_natt_type(buf: bytes, off: int, end: int, fl: str) -> NatTType:
    _, _, t = _fixed(wire.NAT_T_TYPE, "NAT-T type", buf, off, end)
    return NatTType(wire.enum_or_int(wire.UdpEncap, t))


def _dec_natt_port(buf: bytes, off: int, end: int, fl: str) -> NatTPort:
    _, _, port, _ = _fixed(wire.NAT_T_PORT, "NAT-T port", buf, off, end)
    return NatTPort(int.from_bytes(port, "big"))


def _dec_natt_frag(buf: bytes, off: int, end: int, fl: str) -> NatTFrag:
    _, _, frag, _ = _fixed(wire.NAT_T_FRAG, "NAT-T frag", buf, off, end)
    return NatTFrag(frag)


def _dec_raw(buf: bytes, off: int, end: int, fl: str) -> RawExt:
    return RawExt(bytes(buf[off + wire.EXT.size : end]))


_DECODERS: dict[type, Callable[[bytes, int, int, str], Ext]] = {
    Sa: _dec_sa,
    Lifetime: _dec_lifetime,
    Address: _dec_address,
    Key: _dec_key,
    Identity: _dec_identity,
    Supported: _dec_supported,
    SpiRange: _dec_spirange,
    Sa2: _dec_sa2,
    Policy: _dec_policy,
    NatTType: _dec_natt_type,
    NatTPort: _dec_natt_port,
    NatTFrag: _dec_natt_frag,
    RawExt: _dec_raw,
}


def _decode_at(buf: bytes, start: int, end: int, flavour: str) -> Msg:
    classes = _ext_classes(flavour)
    if end - start < wire.HEADER_LEN:
        raise PfkeyError(
            f"truncated header: {end - start} of {wire.HEADER_LEN} bytes",
            offset=start,
            field="sadb_msg",
        )
    version, mtype, err, satype, units, reserved, seq, pid = wire.MSG.unpack_from(buf, start)
    if version != wire.PF_KEY_V2:
        raise PfkeyError(
            f"version {version}, expected {wire.PF_KEY_V2}", offset=start, field="sadb_msg_version"
        )
    if units * 8 != end - start:
        raise PfkeyError(
            f"length {units} units ({units * 8} bytes) but the message is {end - start} bytes",
            offset=start + 4,
            field="sadb_msg_len",
        )
    msg = Msg(
        wire.enum_or_int(MsgType, mtype),
        wire.enum_or_int(SaType, satype),
        err,
        seq,
        pid,
        reserved,
    )
    off = start + wire.HEADER_LEN
    while off < end:
        if end - off < wire.EXT.size:
            raise PfkeyError("truncated extension header", offset=off, field="sadb_ext_len")
        ext_units, ext_type = wire.EXT.unpack_from(buf, off)
        if ext_units == 0:
            raise PfkeyError("extension length 0", offset=off, field="sadb_ext_len")
        ext_end = off + ext_units * 8
        if ext_end > end:
            raise PfkeyError(
                f"extension length {ext_units} units overruns the message by {ext_end - end} bytes",
                offset=off,
                field="sadb_ext_len",
            )
        cls = classes.get(ext_type)
        if cls is None:
            raise PfkeyError(
                f"unknown extension type {ext_type}", offset=off + 2, field="sadb_ext_type"
            )
        if ext_type in msg.exts:
            raise PfkeyError(
                f"duplicate extension type {ext_type} ({_ext_name(ext_type)})",
                offset=off + 2,
                field="sadb_ext_type",
            )
        msg.exts[wire.enum_or_int(ExtType, ext_type)] = _DECODERS[cls](buf, off, ext_end, flavour)
        off = ext_end
    return msg


def decode(data: bytes, flavour: str = "bsd") -> Msg:
    """One message; every byte of data must belong to it.

    Raises:
        PfkeyError: with the offset and C field name of the first problem found.
    """
    buf = bytes(data)
    return _decode_at(buf, 0, len(buf), flavour)


def iter_messages(data: bytes, flavour: str = "bsd") -> Iterator[Msg]:
    """Split a concatenation of messages (a stream capture) by their sadb_msg_len."""
    buf = bytes(data)
    off = 0
    while off < len(buf):
        if len(buf) - off < wire.HEADER_LEN:
            raise PfkeyError(
                f"truncated header: {len(buf) - off} of {wire.HEADER_LEN} bytes",
                offset=off,
                field="sadb_msg",
            )
        units = struct.unpack_from("<H", buf, off + 4)[0]
        if units * 8 < wire.HEADER_LEN or off + units * 8 > len(buf):
            raise PfkeyError(
                f"length {units} units does not fit the {len(buf) - off} bytes left",
                offset=off + 4,
                field="sadb_msg_len",
            )
        yield _decode_at(buf, off, off + units * 8, flavour)
        off += units * 8
