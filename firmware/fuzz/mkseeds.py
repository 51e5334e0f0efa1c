"""Write seed corpora for the harnesses: fuzz/corpus/{pfkey,esp,admin,relay,py-*}.

Run from the repository root: python firmware/fuzz/mkseeds.py
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from orchestrator.pfkey import messages as m
from orchestrator.pfkey.codec import IpsecRequest, Lifetime, Msg, SpiRange, encode
from orchestrator.pfkey.wire import (
    AuthAlg,
    Dir,
    EncAlg,
    ExtType,
    Level,
    Mode,
    MsgType,
    PolicyType,
    SaType,
)

GW, PEER = "10.99.0.1", "10.99.0.2"
GCM = bytes(range(16)) + b"salt"
CBC = bytes(range(32, 48))
HMAC = bytes(range(64, 96))
OUT = Path(__file__).parent / "corpus"


def _write(kind: str, data: bytes) -> None:
    d = OUT / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def pfkey_seeds() -> None:
    tun = IpsecRequest(50, Mode.TUNNEL, Level.UNIQUE, 7, PEER, GW)
    add = m.add_sa(
        PEER,
        GW,
        0x1001,
        mode=Mode.TUNNEL,
        reqid=7,
        encrypt=EncAlg.AES_GCM16,
        enc_key=GCM,
        replay=4,
        hard=Lifetime(addtime=1),
        soft=Lifetime(bytes=1),
    )
    msgs = [
        add,
        m.add_sa(
            PEER,
            GW,
            0x2002,
            encrypt=EncAlg.AES_CBC,
            enc_key=CBC,
            auth=AuthAlg.HMAC_SHA256,
            auth_key=HMAC,
        ),
        m.add_sa(
            PEER,
            GW,
            0x3003,
            encrypt=EncAlg.NULL,
            auth=AuthAlg.HMAC_SHA256,
            auth_key=HMAC,
            natt_type=2,
            natt_sport=4500,
            natt_dport=4500,
        ),
        m.add_sa(PEER, GW, 0x4004, satype=SaType.AH, auth=AuthAlg.HMAC_SHA1, auth_key=HMAC[:20]),
        m.update_sa(PEER, GW, 0x1001, encrypt=EncAlg.AES_GCM8, enc_key=GCM),
        m.get_sa(PEER, GW, 0x1001),
        m.delete_sa(PEER, GW, 0x1001),
        m.deleteall_sa(PEER, GW),
        m.flush_sa(),
        m.dump_sa(),
        m.register(),
        Msg(
            MsgType.GETSPI,
            satype=SaType.ESP,
            exts={**m.deleteall_sa(PEER, GW).exts, ExtType.SPIRANGE: SpiRange(0x100, 0x200)},
        ),
        m.spdadd("172.16.1.0/24", "172.16.2.0/24", dir=Dir.IN, requests=[tun]),
        m.spdadd(f"{PEER}/32", f"{GW}/32", dir=Dir.OUT, policy_type=PolicyType.DISCARD, lifetime=1),
        m.spddelete("172.16.1.0/24", "172.16.2.0/24", dir=Dir.IN),
        m.spddelete2(0x4000),
        m.spdget(0x4000),
        m.spdflush(),
        m.spddump(),
    ]
    raw = [encode(x) for x in msgs]
    for r in raw:
        _write("pfkey", r)
    # Sequences: each SA message after the ADD that makes it meaningful.
    for r in raw[1:]:
        _write("pfkey", raw[0] + r)
    _write("pfkey", raw[0] + raw[1] + raw[9] + raw[5] + raw[6])


def _trailer(payload: bytes, nxt: int, align: int) -> bytes:
    padlen = (-(len(payload) + 2)) % align
    return payload + bytes(range(1, padlen + 1)) + bytes([padlen, nxt])


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    import socket

    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            1,
            0,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + payload
    )


def esp_seeds() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    udp = struct.pack("!HHHH", 1234, 80, 12, 0) + b"data"
    inner = _ipv4("172.16.1.5", "172.16.2.5", 17, udp)

    def gcm(spi: int, seq: int) -> bytes:
        hdr = struct.pack("!II", spi, seq)
        iv = struct.pack("!Q", seq)
        return hdr + iv + AESGCM(GCM[:-4]).encrypt(GCM[-4:] + iv, _trailer(udp, 17, 4), hdr)

    for seq in (1, 2):
        esp = gcm(0x1001, seq)
        _write("esp", b"\x00" + _ipv4(PEER, GW, 50, esp))
        _write("esp", b"\x02" + esp)
        esp = gcm(0x5005, seq)
        natt = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0) + esp
        _write("esp", b"\x01" + _ipv4(PEER, GW, 17, natt))
        _write("esp", b"\x03" + esp)
    _write("esp", b"\x03\xff")
    _write("esp", b"\x03\x00\x00\x00\x00ike")
    # Sealed by the harness: SA index, sequence (host order), next header, payload.
    for sa in range(7):
        nxt, body = (4, inner) if sa in (1, 5) else (17, udp)
        _write("esp", b"\x04" + bytes([sa]) + struct.pack("<I", 5) + bytes([nxt]) + body)
        _write(
            "esp", b"\x05" + bytes([sa]) + struct.pack("<I", 6) + bytes([0]) + body + b"\x00\x04"
        )
    for src in ("172.16.3.1", "172.16.4.1", "172.16.6.1", "172.16.9.1"):
        body = _ipv4(src, "172.16.2.1", 17, udp)
        _write("esp", b"\x04\x01" + struct.pack("<I", 7) + b"\x04" + body)


ADMIN_LINES = (
    "ping",
    "version",
    "stats",
    "policies",
    "tick",
    "tick 3\nticks\nticks 2",
    "flow open 10.99.0.2 10.99.0.1 17 1234 80\nflow send 1\nflow sendall\nflow close 1",
    "flow open 172.16.1.5 172.16.2.5 6 1 2\ntick 31\nflow closeall",
    # The harness's tick ring holds 32: this wraps it, then reads past the wrap.
    "tick 40\nticks\nticks 10",
    "flow open fd00::1 fd00::2 58 0 0",
    "persist 1\npersist 99",
    "flow\nflow bogus\nticks x\nnope",
)


def admin_seeds() -> None:
    # The first byte is the harness's chunk size.
    for lines in ADMIN_LINES:
        for chunk in (127, 3):
            _write("admin", bytes([chunk]) + lines.encode() + b"\n")
    _write("admin", b"\x7f" + b"x" * 1100)


def _frame(chan: int, op: int, data: bytes = b"") -> bytes:
    return struct.pack("<HBBI", chan, op, 0, len(data)) + data


def relay_seeds() -> None:
    dump = encode(m.spddump())
    add = encode(
        m.spdadd("10.0.0.1/32", "10.0.0.2/32", dir=Dir.OUT, policy_type=PolicyType.DISCARD)
    )
    open1, close1 = _frame(1, 1), _frame(1, 3)
    for chunk in (63, 5):
        _write("relay", bytes([chunk]) + open1 + _frame(1, 2, dump) + close1)
        _write("relay", bytes([chunk]) + open1 + _frame(1, 2, add) + _frame(2, 2, dump) + close1)
    # The harness's last channel (it has 8) and the first past it.
    _write("relay", b"\x3f" + open1 + _frame(7, 1) + _frame(7, 2, dump) + _frame(8, 1))
    _write("relay", b"\x3f" + open1 + open1 + _frame(1, 9))


SETKEY_SEEDS = (
    "spdadd 10.0.0.0/24[any] 10.0.1.0/24[80] tcp -P out ipsec"
    " esp/tunnel/10.0.0.1-10.0.1.1/require;",
    "spdadd fd00::/64 fd01::/64 any -P in ipsec esp/transport//unique:7 ah/transport//use;",
    "spddelete 10.0.0.0/24 10.0.1.0/24 any -P out; spdflush; spddump;",
    "add 10.0.0.1 10.0.0.2 esp 0x1000 -m tunnel -r 4 -u 7 -E aes-cbc 0x"
    + "00" * 16
    + " -A hmac-sha256 0x"
    + "11" * 32
    + ";",
    "add 10.0.0.1 10.0.0.2 esp 300 -E null;"
    ' add 1.1.1.1 1.1.1.2 ah 5 -A hmac-sha1 "12345678901234567890";',
    "add 10.0.0.1[4500] 10.0.0.2[4500] esp-udp 9 -lh 60 -bs 1000 -E rijndael-cbc 0x"
    + "22" * 16
    + ";",
    "add 1.1.1.1 1.1.1.2 ipcomp 4 -C deflate -R; get 1.1.1.1 1.1.1.2 esp 300;",
    "delete 1.1.1.1 1.1.1.2 esp 1; deleteall 1.1.1.1 1.1.1.2 ah; flush esp; dump; # comment",
)


def py_seeds() -> None:
    for text in SETKEY_SEEDS:
        _write("py-setkey", text.encode())
    root = Path(__file__).resolve().parents[2]
    for lab in sorted((root / "labs").glob("*.yaml")):
        _write("py-lab", lab.read_bytes())
    for f in sorted((OUT / "pfkey").iterdir())[:40]:
        _write("py-codec", f.read_bytes())


if __name__ == "__main__":
    pfkey_seeds()
    esp_seeds()
    admin_seeds()
    relay_seeds()
    py_seeds()
