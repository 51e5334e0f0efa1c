"""setkey(8) names for PF_KEY numbers, shared by the parser and the formatter.

The first name listed for a number is the one the formatter prints.
"""

from __future__ import annotations

from orchestrator.pfkey.wire import (
    AuthAlg,
    CompAlg,
    Dir,
    EncAlg,
    IpsecProto,
    Level,
    Mode,
    PolicyType,
    SaState,
    SaType,
)

# name -> (number, allowed key sizes in bits). GCM and CTR keys carry a 4-byte salt/nonce.
ENC_ALGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "null": (EncAlg.NULL, (0,)),
    "3des-cbc": (EncAlg.DES3_CBC, (192,)),
    "aes-cbc": (EncAlg.AES_CBC, (128, 192, 256)),
    "rijndael-cbc": (EncAlg.AES_CBC, (128, 192, 256)),
    "aes-ctr": (EncAlg.AES_CTR, (160, 224, 288)),
    "aes-gcm-16": (EncAlg.AES_GCM16, (160, 224, 288)),
    "rfc4106-gcm-aes": (EncAlg.AES_GCM16, (160, 224, 288)),
    "aes-gcm": (EncAlg.AES_GCM16, (160, 224, 288)),
    "aes-gcm-12": (EncAlg.AES_GCM12, (160, 224, 288)),
    "aes-gcm-8": (EncAlg.AES_GCM8, (160, 224, 288)),
}
AEAD = (EncAlg.AES_GCM8, EncAlg.AES_GCM12, EncAlg.AES_GCM16)

AUTH_ALGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "hmac-md5": (AuthAlg.HMAC_MD5, (128,)),
    "hmac-sha1": (AuthAlg.HMAC_SHA1, (160,)),
    "hmac-sha256": (AuthAlg.HMAC_SHA256, (256,)),
    "hmac-sha384": (AuthAlg.HMAC_SHA384, (384,)),
    "hmac-sha512": (AuthAlg.HMAC_SHA512, (512,)),
    "null": (AuthAlg.NULL, (0,)),
}

COMP_ALGS: dict[str, int] = {"oui": CompAlg.OUI, "deflate": CompAlg.DEFLATE, "lzs": CompAlg.LZS}

# SA protocol keyword -> satype; esp-udp is ESP with UDP encapsulation (RFC 3948).
SA_PROTOS: dict[str, int] = {
    "esp": SaType.ESP,
    "ah": SaType.AH,
    "ipcomp": SaType.IPCOMP,
    "esp-udp": SaType.ESP,
}

UPPER: dict[str, int] = {
    "any": 255,
    "icmp": 1,
    "igmp": 2,
    "ip4": 4,
    "ipip": 4,
    "tcp": 6,
    "udp": 17,
    "ip6": 41,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmp6": 58,
    "ipv6-icmp": 58,
    "ipcomp": 108,
    "sctp": 132,
}

REQ_PROTOS: dict[str, int] = {
    "esp": IpsecProto.ESP,
    "ah": IpsecProto.AH,
    "ipcomp": IpsecProto.IPCOMP,
}
MODES: dict[str, int] = {"any": Mode.ANY, "transport": Mode.TRANSPORT, "tunnel": Mode.TUNNEL}
LEVELS: dict[str, int] = {
    "default": Level.DEFAULT,
    "use": Level.USE,
    "require": Level.REQUIRE,
    "unique": Level.UNIQUE,
}
DIRS: dict[str, int] = {"any": Dir.ANY, "in": Dir.IN, "out": Dir.OUT}
POLICY_TYPES: dict[str, int] = {
    "discard": PolicyType.DISCARD,
    "none": PolicyType.NONE,
    "ipsec": PolicyType.IPSEC,
    "entrust": PolicyType.ENTRUST,
    "bypass": PolicyType.BYPASS,
}
SATYPES: dict[str, int] = {
    "unspec": SaType.UNSPEC,
    "ah": SaType.AH,
    "esp": SaType.ESP,
    "ipcomp": SaType.IPCOMP,
}
STATES: dict[str, int] = {
    "larval": SaState.LARVAL,
    "mature": SaState.MATURE,
    "dying": SaState.DYING,
    "dead": SaState.DEAD,
}


def name_of(table: dict[str, int] | dict[str, tuple[int, tuple[int, ...]]], value: int) -> str:
    """The first name for value in table, else the number (KAME GETMSGSTR)."""
    for name, entry in table.items():
        number = entry[0] if isinstance(entry, tuple) else entry
        if number == value:
            return name
    return str(value)
