"""PF_KEY v2 numbers and struct layouts (RFC 2367 + KAME, NetBSD NAT-T numbering).

Everything is host order, written explicitly as little-endian ('<': the x86 targets and
netkeyd), except SPIs and ports, which are network order as on a BSD kernel. Those are
packed as raw 2- or 4-byte fields and converted with int.from_bytes(..., "big").
"""

from __future__ import annotations

import errno as _errno
import os
import struct
from enum import IntEnum

PF_KEY_V2 = 2
ALIGN = 8
HEADER_LEN = 16
IPSEC_ULPROTO_ANY = 255
IPSEC_PORT_ANY = 0
IPSEC_MANUAL_REQID_MAX = 0x3FFF


class MsgType(IntEnum):
    """sadb_msg_type."""

    GETSPI = 1
    UPDATE = 2
    ADD = 3
    DELETE = 4
    GET = 5
    ACQUIRE = 6
    REGISTER = 7
    EXPIRE = 8
    FLUSH = 9
    DUMP = 10
    X_PROMISC = 11
    X_PCHANGE = 12
    X_SPDUPDATE = 13
    X_SPDADD = 14
    X_SPDDELETE = 15
    X_SPDGET = 16
    X_SPDACQUIRE = 17
    X_SPDDUMP = 18
    X_SPDFLUSH = 19
    X_SPDSETIDX = 20
    X_SPDEXPIRE = 21
    X_SPDDELETE2 = 22


SADB_MAX = 22


class ExtType(IntEnum):
    """sadb_ext_type, with the later NetBSD/FreeBSD NAT-T numbers."""

    SA = 1
    LIFETIME_CURRENT = 2
    LIFETIME_HARD = 3
    LIFETIME_SOFT = 4
    ADDRESS_SRC = 5
    ADDRESS_DST = 6
    ADDRESS_PROXY = 7
    KEY_AUTH = 8
    KEY_ENCRYPT = 9
    IDENTITY_SRC = 10
    IDENTITY_DST = 11
    SENSITIVITY = 12
    PROPOSAL = 13
    SUPPORTED_AUTH = 14
    SUPPORTED_ENCRYPT = 15
    SPIRANGE = 16
    X_KMPRIVATE = 17
    X_POLICY = 18
    X_SA2 = 19
    X_NAT_T_TYPE = 20
    X_NAT_T_SPORT = 21
    X_NAT_T_DPORT = 22
    X_NAT_T_OAI = 23
    X_NAT_T_OAR = 24
    X_NAT_T_FRAG = 25


class SaType(IntEnum):
    """sadb_msg_satype."""

    UNSPEC = 0
    AH = 2
    ESP = 3
    RSVP = 5
    OSPFV2 = 6
    RIPV2 = 7
    MIP = 8
    IPCOMP = 9


class SaState(IntEnum):
    """sadb_sa_state."""

    LARVAL = 0
    MATURE = 1
    DYING = 2
    DEAD = 3


class PolicyType(IntEnum):
    """sadb_x_policy_type (KAME IPSEC_POLICY_*)."""

    DISCARD = 0
    NONE = 1
    IPSEC = 2
    ENTRUST = 3
    BYPASS = 4


class Dir(IntEnum):
    """sadb_x_policy_dir (KAME IPSEC_DIR_*)."""

    ANY = 0
    IN = 1
    OUT = 2


class IpsecProto(IntEnum):
    """sadb_x_ipsecrequest_proto: an IP protocol number."""

    ESP = 50
    AH = 51
    IPCOMP = 108


class Mode(IntEnum):
    """sadb_x_ipsecrequest_mode and sadb_x_sa2_mode."""

    ANY = 0
    TRANSPORT = 1
    TUNNEL = 2


class Level(IntEnum):
    """sadb_x_ipsecrequest_level."""

    DEFAULT = 0
    USE = 1
    REQUIRE = 2
    UNIQUE = 3


class EncAlg(IntEnum):
    """sadb_sa_encrypt (net/pfkeyv2.h)."""

    NONE = 0
    DES_CBC = 2
    DES3_CBC = 3
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_GCM8 = 18
    AES_GCM12 = 19
    AES_GCM16 = 20


class AuthAlg(IntEnum):
    """sadb_sa_auth (net/pfkeyv2.h)."""

    NONE = 0
    HMAC_MD5 = 2
    HMAC_SHA1 = 3
    HMAC_SHA256 = 5
    HMAC_SHA384 = 6
    HMAC_SHA512 = 7
    NULL = 251


class CompAlg(IntEnum):
    """sadb_sa_encrypt for IPCOMP SAs."""

    NONE = 0
    OUI = 1
    DEFLATE = 2
    LZS = 3


class UdpEncap(IntEnum):
    """sadb_x_nat_t_type_type (UDP_ENCAP_*)."""

    ESPINUDP_NON_IKE = 1
    ESPINUDP = 2


# netkeyd is a Linux process, so its errno values are the host's.
_ERRNO_NAMES = (
    "EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG EBADF EAGAIN ENOMEM EACCES EFAULT EBUSY EEXIST "
    "EINVAL ENFILE EMFILE ENOSPC ERANGE EMSGSIZE EPROTONOSUPPORT EOPNOTSUPP EAFNOSUPPORT "
    "ENOBUFS ETIMEDOUT"
)
Errno = IntEnum("Errno", {name: getattr(_errno, name) for name in _ERRNO_NAMES.split()})
Errno.__doc__ = "sadb_msg_errno values, with the host's numbering."


def errno_name(value: int) -> str:
    """EEXIST for 17; the number itself when unknown."""
    return _errno.errorcode.get(value, str(value))


def errno_text(value: int) -> str:
    """'File exists (EEXIST)', as the CLI prints a failed reply."""
    return f"{os.strerror(value)} ({errno_name(value)})"


def enum_or_int(enum: type[IntEnum], value: int) -> int:
    """The enum member for value if there is one, else the plain int."""
    try:
        return enum(value)
    except ValueError:
        return value


def align8(n: int) -> int:
    """n rounded up to a multiple of 8 (PFKEY_ALIGN8)."""
    return (n + ALIGN - 1) & ~(ALIGN - 1)


# Struct layouts: 'Ns' fields are network-order SPIs and ports.
MSG = struct.Struct("<BBBBHHII")  # version type errno satype len reserved seq pid
EXT = struct.Struct("<HH")  # len type
SA = struct.Struct("<HH4sBBBBI")  # len type spi replay state auth encrypt flags
LIFETIME = struct.Struct("<HHIQQQ")  # len type allocations bytes addtime usetime
ADDRESS = struct.Struct("<HHBBH")  # len type proto prefixlen reserved
KEY = struct.Struct("<HHHH")  # len type bits reserved
IDENTITY = struct.Struct("<HHHHQ")  # len type idtype reserved id
SUPPORTED = struct.Struct("<HHI")  # len type reserved
ALG = struct.Struct("<BBHHH")  # id ivlen minbits maxbits reserved
SPIRANGE = struct.Struct("<HHIII")  # len type min max reserved (host order, as KAME)
SA2 = struct.Struct("<HHBBHII")  # len type mode reserved1 reserved2 sequence reqid
POLICY = struct.Struct("<HHHBBII")  # len type ptype dir reserved id reserved2
IPSECREQUEST = struct.Struct("<HHBBH")  # len(bytes) proto mode level reqid
# Linux's is 16 bytes: len(bytes) proto mode level reserved1, u32 reqid, u32 reserved2.
IPSECREQUEST_LINUX = struct.Struct("<HHBBHII")
NAT_T_TYPE = struct.Struct("<HHB3x")  # len type nat_t_type
NAT_T_PORT = struct.Struct("<HH2sH")  # len type port reserved
NAT_T_FRAG = struct.Struct("<HHHH")  # len type frag reserved

# Sockaddrs: BSD puts sa_len first and a one-byte family; Linux a two-byte family.
SIN_LEN = 16
SIN6_LEN = 28
BSD_SIN = struct.Struct("<BB2s4s8x")  # len family port addr zero
BSD_SIN6 = struct.Struct("<BB2sI16sI")  # len family port flowinfo addr scope_id
LINUX_SIN = struct.Struct("<H2s4s8x")
LINUX_SIN6 = struct.Struct("<H2sI16sI")

# (AF_INET, AF_INET6) per flavour: NetBSD numbers the BSD side.
# (AF_INET, AF_INET6) per flavour. The BSDs agree on AF_INET; FreeBSD (and DragonFly)
# number AF_INET6 28 where NetBSD, OpenBSD and KAME's netkeyd use 24.
FAMILIES: dict[str, tuple[int, int]] = {"bsd": (2, 24), "freebsd": (2, 28), "linux": (2, 10)}
# Flavours whose sockaddrs start with sa_len (the BSDs); Linux's start with a u16 family.
SA_LEN_FLAVOURS = frozenset({"bsd", "freebsd"})


def type_name(value: int) -> str:
    """SPDADD for X_SPDADD, as setkey and the CLI name message types."""
    if value in MsgType._value2member_map_:
        return MsgType(value).name.removeprefix("X_")
    return f"type {value}"
