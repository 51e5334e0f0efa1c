"""PF_KEY v2 codec: hand-assembled RFC 2367 vectors, round trips, located decode errors."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from orchestrator.errors import PfkeyError
from orchestrator.pfkey import messages
from orchestrator.pfkey.codec import (
    Address,
    Alg,
    Ext,
    Identity,
    IpsecRequest,
    Key,
    Lifetime,
    Msg,
    NatTFrag,
    NatTPort,
    NatTType,
    Policy,
    RawExt,
    Sa,
    Sa2,
    SpiRange,
    Supported,
    decode,
    encode,
    iter_messages,
)
from orchestrator.pfkey.wire import (
    AuthAlg,
    Dir,
    EncAlg,
    ExtType,
    IpsecProto,
    Level,
    Mode,
    MsgType,
    PolicyType,
    SaState,
    SaType,
    errno_text,
    type_name,
)

FLAVOURS = ("bsd", "freebsd", "linux")


def hexbytes(text: str) -> bytes:
    """bytes.fromhex over a commented multi-line layout: '#' to end of line is ignored."""
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


# ---------------------------------------------------------------- hand-made vectors

# SADB_ADD, ESP, BSD sockaddrs: SA, ADDRESS_SRC, ADDRESS_DST, KEY_ENCRYPT (RFC 2367 §3.1.3).
SADB_ADD = hexbytes("""
    02 03 00 03           # sadb_msg: version 2, type ADD, errno 0, satype ESP
    0d 00 00 00           # len 13 units (104 bytes), reserved 0
    01 00 00 00           # seq 1
    d2 04 00 00           # pid 1234
    02 00 01 00           # sadb_sa: len 2, exttype SA
    00 00 10 00           # spi 0x1000, network order
    20 00 00 0c           # replay 32, state LARVAL, auth NONE, encrypt X_AES (12)
    00 00 00 00           # flags
    03 00 05 00           # sadb_address: len 3, exttype ADDRESS_SRC
    ff 20 00 00           # proto any (255), prefixlen 32, reserved
    10 02 00 00           # sockaddr_in: sa_len 16, AF_INET 2, port 0
    c0 00 02 01           # 192.0.2.1
    00 00 00 00 00 00 00 00  # sin_zero
    03 00 06 00 ff 20 00 00  # ADDRESS_DST, proto any, /32
    10 02 00 00 c0 00 02 02  # sockaddr_in 192.0.2.2
    00 00 00 00 00 00 00 00
    03 00 09 00           # sadb_key: len 3, exttype KEY_ENCRYPT
    80 00 00 00           # bits 128, reserved
    00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff  # the key
""")

# X_SPDADD out ipsec esp/tunnel/192.0.2.1-192.0.2.2/require, 10.0.1.0/24 -> 10.0.2.0/24.
X_SPDADD = hexbytes("""
    02 0e 00 00           # version 2, type X_SPDADD, errno 0, satype UNSPEC
    0f 00 00 00           # len 15 units (120 bytes), reserved 0
    07 00 00 00           # seq 7
    39 30 00 00           # pid 12345
    03 00 05 00 ff 18 00 00  # ADDRESS_SRC, proto any, /24
    10 02 00 00 0a 00 01 00  # sockaddr_in 10.0.1.0
    00 00 00 00 00 00 00 00
    03 00 06 00 ff 18 00 00  # ADDRESS_DST, proto any, /24
    10 02 00 00 0a 00 02 00  # sockaddr_in 10.0.2.0
    00 00 00 00 00 00 00 00
    07 00 12 00           # sadb_x_policy: len 7, exttype X_POLICY
    02 00 02 00           # type IPSEC, dir OUT, reserved
    00 00 00 00           # id 0 (kernel assigns)
    00 00 00 00           # reserved2
    28 00 32 00           # sadb_x_ipsecrequest: len 40 BYTES, proto ESP (50)
    02 02 00 00           # mode TUNNEL, level REQUIRE, reqid 0
    10 02 00 00 c0 00 02 01 00 00 00 00 00 00 00 00  # tunnel src 192.0.2.1
    10 02 00 00 c0 00 02 02 00 00 00 00 00 00 00 00  # tunnel dst 192.0.2.2
""")

# One X_SPDDUMP reply entry: reserved = refcnt 3, seq 0 (the last entry), KAME ext order.
SPDDUMP_REPLY = hexbytes("""
    02 12 00 00           # version 2, type X_SPDDUMP, errno 0, satype UNSPEC
    12 00 03 00           # len 18 units (144 bytes), reserved = refcnt 3
    00 00 00 00           # seq 0: the countdown is over
    d2 04 00 00           # pid 1234 (the requester's)
    03 00 05 00 06 20 00 00  # ADDRESS_SRC, proto tcp (6), /32
    10 02 04 d2 0a 00 01 01  # sockaddr_in port 1234, 10.0.1.1
    00 00 00 00 00 00 00 00
    03 00 06 00 06 20 00 00  # ADDRESS_DST, proto tcp, /32
    10 02 00 50 0a 00 02 01  # sockaddr_in port 80, 10.0.2.1
    00 00 00 00 00 00 00 00
    02 00 12 00           # X_POLICY, len 2 (no requests)
    00 00 01 00           # type DISCARD, dir IN
    01 40 00 00           # id 0x4001
    00 00 00 00
    04 00 02 00 00 00 00 00  # LIFETIME_CURRENT, allocations 0
    00 00 00 00 00 00 00 00  # bytes
    0a 00 00 00 00 00 00 00  # addtime = created 10
    0f 00 00 00 00 00 00 00  # usetime = lastused 15
    04 00 03 00 00 00 00 00  # LIFETIME_HARD
    00 00 00 00 00 00 00 00
    3c 00 00 00 00 00 00 00  # addtime = lifetime 60
    1e 00 00 00 00 00 00 00  # usetime = validtime 30
""")

# Linux flavour: X_SPDDELETE for 2001:db8::/32 -> ::/0; sockaddr_in6 with a u16 family 10.
LINUX_SPDDELETE = hexbytes("""
    02 0f 00 00 0e 00 00 00 02 00 00 00 01 00 00 00  # X_SPDDELETE, len 14, seq 2, pid 1
    05 00 05 00 ff 20 00 00  # ADDRESS_SRC, len 5 (8 + 28 padded to 32), /32
    0a 00 00 00           # sin6_family 10 (u16), port 0
    00 00 00 00           # flowinfo
    20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 00  # 2001:db8::
    00 00 00 00 00 00 00 00  # scope_id, padding
    05 00 06 00 ff 00 00 00  # ADDRESS_DST, /0
    0a 00 00 00 00 00 00 00
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # ::
    00 00 00 00 00 00 00 00
    02 00 12 00 00 00 02 00 00 00 00 00 00 00 00 00  # X_POLICY DISCARD out
""")


def test_sadb_add_vector_decodes() -> None:
    msg = decode(SADB_ADD)
    assert (msg.type, msg.satype, msg.seq, msg.pid) == (MsgType.ADD, SaType.ESP, 1, 1234)
    assert list(msg.exts) == [
        ExtType.SA,
        ExtType.ADDRESS_SRC,
        ExtType.ADDRESS_DST,
        ExtType.KEY_ENCRYPT,
    ]
    assert msg.sa == Sa(0x1000, 32, SaState.LARVAL, AuthAlg.NONE, EncAlg.AES_CBC)
    assert msg.src == Address(ip_address("192.0.2.1"), 32, 0, 255)
    assert msg.dst is not None and msg.dst.ip == IPv4Address("192.0.2.2")
    assert msg.exts[ExtType.KEY_ENCRYPT] == Key(bytes.fromhex("00112233445566778899aabbccddeeff"))
    assert encode(msg) == SADB_ADD


def test_sadb_add_vector_from_builder() -> None:
    msg = messages.add_sa(
        "192.0.2.1",
        "192.0.2.2",
        0x1000,
        encrypt=EncAlg.AES_CBC,
        enc_key=bytes.fromhex("00112233445566778899aabbccddeeff"),
        replay=32,
    )
    del msg.exts[ExtType.X_SA2]  # the vector above is RFC 2367's, without KAME's SA2
    msg.seq, msg.pid = 1, 1234
    assert encode(msg) == SADB_ADD


def test_spdadd_vector_with_tunnel_request() -> None:
    msg = decode(X_SPDADD)
    assert msg.type == MsgType.X_SPDADD and msg.satype == SaType.UNSPEC
    assert msg.src == Address(ip_address("10.0.1.0"), 24)
    assert msg.policy == Policy(
        PolicyType.IPSEC,
        Dir.OUT,
        0,
        [
            IpsecRequest(
                IpsecProto.ESP,
                Mode.TUNNEL,
                Level.REQUIRE,
                0,
                ip_address("192.0.2.1"),
                ip_address("192.0.2.2"),
            )
        ],
    )
    req = IpsecRequest(50, 2, 2, 0, "192.0.2.1", "192.0.2.2")
    built = messages.spdadd("10.0.1.0/24", "10.0.2.0/24", 255, Dir.OUT, PolicyType.IPSEC, [req])
    built.seq, built.pid = 7, 12345
    assert encode(built) == X_SPDADD


def test_spddump_reply_vector_carries_refcnt() -> None:
    msg = decode(SPDDUMP_REPLY)
    assert msg.type == MsgType.X_SPDDUMP
    assert msg.reserved == msg.refcnt == 3
    assert msg.seq == 0
    assert msg.src == Address(ip_address("10.0.1.1"), 32, 1234, 6)
    assert msg.dst == Address(ip_address("10.0.2.1"), 32, 80, 6)
    assert msg.policy == Policy(PolicyType.DISCARD, Dir.IN, 0x4001)
    assert msg.exts[ExtType.LIFETIME_CURRENT] == Lifetime(0, 0, 10, 15)
    assert msg.exts[ExtType.LIFETIME_HARD] == Lifetime(0, 0, 60, 30)
    assert encode(msg) == SPDDUMP_REPLY


def test_linux_flavour_vector() -> None:
    msg = decode(LINUX_SPDDELETE, "linux")
    assert msg.src == Address(IPv6Address("2001:db8::"), 32)
    assert msg.dst == Address(IPv6Address("::"), 0)
    assert encode(msg, "linux") == LINUX_SPDDELETE
    # The same bytes are not a BSD message: sa_len 10 is no sockaddr length.
    with pytest.raises(PfkeyError):
        decode(LINUX_SPDDELETE, "bsd")


def test_flavours_differ_only_in_sockaddr_header() -> None:
    msg = messages.spdadd("2001:db8::/48", "2001:db8:1::/48")
    bsd, linux = encode(msg, "bsd"), encode(msg, "linux")
    assert len(bsd) == len(linux)
    assert bsd[24:26] == bytes([28, 24])  # sa_len, AF_INET6 as on NetBSD
    assert linux[24:26] == struct.pack("<H", 10)  # Linux AF_INET6, no length byte


def test_freebsd_numbers_af_inet6_28() -> None:
    msg = messages.spdadd("2001:db8::/48", "2001:db8:1::/48")
    fbsd = encode(msg, "freebsd")
    assert fbsd[24:26] == bytes([28, 28])  # sa_len, FreeBSD's AF_INET6
    assert decode(fbsd, "freebsd").src == msg.src
    with pytest.raises(PfkeyError, match="unsupported address family 28"):
        decode(fbsd, "bsd")  # NetBSD's reading of the same bytes: no such family
    v4 = messages.spdadd("10.1.0.0/16", "10.2.0.0/16")
    assert encode(v4, "freebsd") == encode(v4, "bsd")  # AF_INET is 2 on every BSD


# ---------------------------------------------------------------- round trips

V4, V6 = ip_address("198.51.100.7"), ip_address("2001:db8::7")


def sample_exts(flavour: str) -> dict[int, Ext]:
    """One value for every extension type; ext 24/25 are Linux's own (opaque) there."""
    exts: dict[int, Ext] = {
        ExtType.SA: Sa(0xDEADBEEF, 64, SaState.MATURE, AuthAlg.HMAC_SHA256, EncAlg.AES_GCM16, 3),
        ExtType.LIFETIME_CURRENT: Lifetime(1, 2, 3, 4),
        ExtType.LIFETIME_HARD: Lifetime(2**32 - 1, 2**64 - 1, 7, 8),
        ExtType.LIFETIME_SOFT: Lifetime(0, 100, 0, 0),
        ExtType.ADDRESS_SRC: Address(V4, 24, 4500, 17),
        ExtType.ADDRESS_DST: Address(V6, 64, 65535, 6),
        ExtType.ADDRESS_PROXY: Address(ip_address("fe80::1%3"), 128),
        ExtType.KEY_AUTH: Key(bytes(range(20))),
        ExtType.KEY_ENCRYPT: Key(b"\x01\x02\x03", 20),
        ExtType.IDENTITY_SRC: Identity(1, 0, b"gw1.example"),
        ExtType.IDENTITY_DST: Identity(2, 42, b"12345678"),
        ExtType.SENSITIVITY: RawExt(bytes(range(12))),
        ExtType.PROPOSAL: RawExt(bytes(4)),
        ExtType.SUPPORTED_AUTH: Supported([Alg(2, 0, 128, 128), Alg(5, 0, 256, 256)]),
        ExtType.SUPPORTED_ENCRYPT: Supported([Alg(12, 16, 128, 256)]),
        ExtType.SPIRANGE: SpiRange(0x100, 0xFFFFFFFF),
        ExtType.X_KMPRIVATE: RawExt(b"kmp\x00"),
        ExtType.X_POLICY: Policy(
            PolicyType.IPSEC,
            Dir.OUT,
            0x4000,
            [
                IpsecRequest(IpsecProto.AH, Mode.TRANSPORT, Level.USE),
                IpsecRequest(IpsecProto.ESP, Mode.TUNNEL, Level.UNIQUE, 0x3FFF, V6, V6),
                IpsecRequest(IpsecProto.IPCOMP, Mode.TUNNEL, Level.DEFAULT, 0, V4, V4),
            ],
        ),
        ExtType.X_SA2: Sa2(Mode.TUNNEL, 99, 7),
        ExtType.X_NAT_T_TYPE: NatTType(2),
        ExtType.X_NAT_T_SPORT: NatTPort(4500),
        ExtType.X_NAT_T_DPORT: NatTPort(65535),
        ExtType.X_NAT_T_OAI: Address(V4),
        ExtType.X_NAT_T_OAR: Address(V6),
        ExtType.X_NAT_T_FRAG: NatTFrag(1400),
    }
    if flavour == "linux":
        exts[24] = RawExt(b"sec_ctx!" * 2 + b"\0\0\0\0")
        exts[25] = RawExt(bytes(4))
    return exts


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("mtype", list(MsgType))
def test_round_trip_every_message_type(mtype: MsgType, flavour: str) -> None:
    msg = Msg(mtype, SaType.ESP, 17, 0xFFFFFFFF, 4321, 9, sample_exts(flavour))
    data = encode(msg, flavour)
    assert len(data) % 8 == 0 and struct.unpack_from("<H", data, 4)[0] * 8 == len(data)
    back = decode(data, flavour)
    assert back == msg
    assert encode(back, flavour) == data


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("ext_type", list(ExtType))
def test_round_trip_every_extension_alone(ext_type: ExtType, flavour: str) -> None:
    ext = sample_exts(flavour)[ext_type]
    msg = Msg(MsgType.GET, SaType.AH, exts={ext_type: ext})
    data = encode(msg, flavour)
    assert decode(data, flavour) == msg
    # Every extension length covers its bytes exactly, padding included.
    assert struct.unpack_from("<H", data, 16)[0] * 8 == len(data) - 16


def test_key_bits_are_kept() -> None:
    data = encode(Msg(MsgType.ADD, exts={ExtType.KEY_AUTH: Key(b"\xff\xf0", 12)}))
    assert decode(data).exts[ExtType.KEY_AUTH] == Key(b"\xff\xf0", 12)
    assert data[16:24] == bytes.fromhex("0200 0800 0c00 0000")


def test_iter_messages_splits_a_capture() -> None:
    msgs = list(iter_messages(SADB_ADD + X_SPDADD + SPDDUMP_REPLY))
    assert [m.type for m in msgs] == [MsgType.ADD, MsgType.X_SPDADD, MsgType.X_SPDDUMP]


def test_iter_messages_names_the_truncated_one() -> None:
    with pytest.raises(PfkeyError) as e:
        list(iter_messages(SADB_ADD + X_SPDADD[:40]))
    assert (e.value.offset, e.value.field) == (len(SADB_ADD) + 4, "sadb_msg_len")


def test_unknown_message_type_still_decodes() -> None:
    # netkeyd echoes type > 22 with errno set: the client must be able to read that.
    data = encode(Msg(23, errno=22))
    assert decode(data).type == 23


# ---------------------------------------------------------------- builders


def test_spd_builders_follow_pfkey_rules() -> None:
    assert encode(messages.spdflush()) == bytes.fromhex("0213000002000000 0000000000000000")
    assert len(encode(messages.spdflush())) == 16
    add = messages.spdadd("10.0.0.0/8", "0.0.0.0/0", 6, Dir.IN, PolicyType.NONE)
    assert add.satype == SaType.UNSPEC
    assert list(add.exts) == [ExtType.ADDRESS_SRC, ExtType.ADDRESS_DST, ExtType.X_POLICY]
    assert add.src == Address(ip_address("10.0.0.0"), 8, 0, 6)
    timed = messages.spdadd("10.0.0.1", "10.0.0.2", lifetime=30, validtime=10, update=True)
    assert timed.type == MsgType.X_SPDUPDATE
    assert timed.exts[ExtType.LIFETIME_HARD] == Lifetime(0, 0, 30, 10)
    assert messages.spddelete2(0x4001).policy == Policy(PolicyType.DISCARD, Dir.ANY, 0x4001)
    assert messages.spdget(5).type == MsgType.X_SPDGET
    assert messages.spddump().exts == {}


def test_sa_builders() -> None:
    add = messages.add_sa(
        "192.0.2.1",
        "192.0.2.2",
        0x1234,
        mode=Mode.TUNNEL,
        reqid=3,
        encrypt=EncAlg.AES_GCM16,
        enc_key=bytes(20),
        natt_type=2,
        natt_sport=4500,
        natt_dport=4501,
    )
    assert list(add.exts) == [
        ExtType.SA,
        ExtType.X_SA2,
        ExtType.ADDRESS_SRC,
        ExtType.ADDRESS_DST,
        ExtType.KEY_ENCRYPT,
        ExtType.X_NAT_T_TYPE,
        ExtType.X_NAT_T_SPORT,
        ExtType.X_NAT_T_DPORT,
    ]
    assert add.exts[ExtType.KEY_ENCRYPT] == Key(bytes(20), 160)
    assert messages.update_sa("192.0.2.1", "192.0.2.2", 1).type == MsgType.UPDATE
    assert ExtType.SA not in messages.deleteall_sa("192.0.2.1", "192.0.2.2").exts
    assert messages.delete_sa("192.0.2.1", "192.0.2.2", 9).sa == Sa(9)
    assert messages.flush_sa().satype == SaType.UNSPEC
    assert messages.register(SaType.ESP).satype == SaType.ESP


def test_names() -> None:
    assert type_name(MsgType.X_SPDADD) == "SPDADD"
    assert type_name(MsgType.ADD) == "ADD"
    assert type_name(99) == "type 99"
    assert errno_text(17) == "File exists (EEXIST)"


# ---------------------------------------------------------------- decode errors


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def with_len(data: bytes) -> bytes:
    """data with sadb_msg_len set from its real size."""
    return patched(data, 4, "<H", len(data) // 8)


def located(data: bytes, flavour: str = "bsd") -> tuple[int | None, str | None, str]:
    with pytest.raises(PfkeyError) as e:
        decode(data, flavour)
    return e.value.offset, e.value.field, str(e.value)


def test_error_truncated_header() -> None:
    assert located(SADB_ADD[:10]) == (
        0,
        "sadb_msg",
        "offset 0 sadb_msg: truncated header: 10 of 16 bytes",
    )


def test_error_length_mismatch() -> None:
    off, fld, text = located(SADB_ADD + bytes(8))
    assert (off, fld) == (4, "sadb_msg_len")
    assert "13 units (104 bytes)" in text and "112 bytes" in text


def test_error_version_3() -> None:
    assert located(patched(SADB_ADD, 0, "B", 3))[:2] == (0, "sadb_msg_version")


def test_error_extension_length_0() -> None:
    bad = patched(SADB_ADD, 16, "<H", 0)
    assert located(bad)[2] == "offset 16 sadb_ext_len: extension length 0"


def test_error_extension_overruns_message() -> None:
    bad = patched(SADB_ADD, 80, "<H", 4)  # KEY_ENCRYPT claims 32 bytes, 24 are left
    assert located(bad)[:2] == (80, "sadb_ext_len")


def test_error_duplicate_extension() -> None:
    # Two ADDRESS_SRC: the second is at 56 (16 + SA 16 + SRC 24).
    bad = patched(SADB_ADD, 58, "<H", ExtType.ADDRESS_SRC)
    off, fld, text = located(bad)
    assert (off, fld) == (58, "sadb_ext_type")
    assert "duplicate extension type 5 (ADDRESS_SRC)" in text


def test_error_unknown_extension_type_99() -> None:
    bad = patched(SADB_ADD, 18, "<H", 99)
    assert located(bad) == (
        18,
        "sadb_ext_type",
        "offset 18 sadb_ext_type: unknown extension type 99",
    )


def test_error_extension_type_0() -> None:
    assert located(patched(SADB_ADD, 18, "<H", 0))[:2] == (18, "sadb_ext_type")


def test_error_sockaddr_length_mismatch() -> None:
    bad = patched(SADB_ADD, 40, "B", 20)  # SRC sockaddr at 32 + 8: sa_len 20 for AF_INET
    off, fld, text = located(bad)
    assert (off, fld) == (40, "sa_len")
    assert "sockaddr length 20 does not match AF_INET (16)" in text


def test_error_sockaddr_unknown_family() -> None:
    assert located(patched(SADB_ADD, 41, "B", 99))[:2] == (41, "sa_family")


def test_error_sockaddr_overruns_extension() -> None:
    # AF_INET6 (28 bytes) inside an address extension sized for AF_INET.
    bad = patched(patched(SADB_ADD, 40, "B", 28), 41, "B", 24)
    assert located(bad)[:2] == (40, "sa_len")


def test_error_prefix_33_for_ipv4() -> None:
    bad = patched(SADB_ADD, 37, "B", 33)  # SRC prefixlen at 32 + 5
    off, fld, text = located(bad)
    assert (off, fld) == (37, "sadb_address_prefixlen")
    assert "prefix 33 exceeds 32 bits" in text


def test_error_prefix_129_for_ipv6() -> None:
    bad = patched(LINUX_SPDDELETE, 21, "B", 129)
    assert located(bad, "linux")[:2] == (21, "sadb_address_prefixlen")


def test_error_address_extension_too_long() -> None:
    msg = encode(messages.spdflush())
    ext = bytes.fromhex("0400 0500 ff20 0000 1002 0000 c0000201") + bytes(16)
    assert located(with_len(msg + ext))[:2] == (16, "sadb_address_len")


def test_error_request_overruns_policy() -> None:
    bad = patched(X_SPDADD, 80, "<H", 48)  # the request at 64 + 16 claims 48 of 40 bytes
    off, fld, text = located(bad)
    assert (off, fld) == (80, "sadb_x_ipsecrequest_len")
    assert "overruns the policy extension by 8 bytes" in text


def test_error_request_shorter_than_header() -> None:
    assert located(patched(X_SPDADD, 80, "<H", 4))[:2] == (80, "sadb_x_ipsecrequest_len")


def test_error_request_sockaddr_overruns_request() -> None:
    # A 32-byte request: the tunnel src fits (88..104), the dst needs 16 of the 8 left.
    off, fld, text = located(patched(X_SPDADD, 80, "<H", 32))
    assert (off, fld) == (104, "sa_len")
    assert "overruns its container by 8" in text


def test_error_request_missing_second_sockaddr() -> None:
    assert located(patched(X_SPDADD, 80, "<H", 24))[:2] == (104, "sockaddr")


def test_error_fixed_size_extension() -> None:
    bad = patched(SADB_ADD, 16, "<H", 5)  # SA claims 40 bytes: overlaps SRC, fixed size 16
    off, fld, text = located(bad)
    assert (off, fld) == (16, "sadb_ext_len")
    assert "SA extension of 40 bytes, expected 16" in text


def test_error_key_bits_do_not_match_length() -> None:
    bad = patched(SADB_ADD, 84, "<H", 256)  # KEY_ENCRYPT bits 256 in a 24-byte extension
    assert located(bad)[:2] == (84, "sadb_key_bits")


# ---------------------------------------------------------------- encode errors


def test_encode_rejects_wrong_class_and_bad_values() -> None:
    with pytest.raises(PfkeyError, match="ADDRESS_SRC needs a Address, not Sa"):
        encode(Msg(MsgType.ADD, exts={ExtType.ADDRESS_SRC: Sa(1)}))
    with pytest.raises(PfkeyError) as e:
        encode(Msg(MsgType.ADD, exts={ExtType.SA: Sa(2**32)}))
    assert e.value.field == "sadb_sa_spi"
    with pytest.raises(PfkeyError):
        encode(Msg(MsgType.ADD, exts={99: RawExt()}))
    with pytest.raises(PfkeyError, match="tunnel endpoints"):
        encode(
            Msg(
                MsgType.X_SPDADD,
                exts={ExtType.X_POLICY: Policy(2, 2, 0, [IpsecRequest(50, 2, 2, 0, V4, None)])},
            )
        )
    with pytest.raises(PfkeyError, match="flavour"):
        encode(Msg(MsgType.ADD), "solaris")
    with pytest.raises(PfkeyError, match="12 bits but 1 bytes"):
        encode(Msg(MsgType.ADD, exts={ExtType.KEY_AUTH: Key(b"\x01", 12)}))
