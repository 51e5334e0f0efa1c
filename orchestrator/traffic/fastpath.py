"""The fast path: each flow's packets encrypted with `cryptography` on its scapy template.

A packet costs one cipher call, one struct pack and a concatenation: the outer header is
constant per flow (every packet of a flow has the same length), the plaintext ESP payload is
precomputed. Per algorithm:

- AES-GCM (RFC 4106): IV = the 64-bit sequence number, unique per SA; AAD = SPI || seq.
- AES-CBC + HMAC-SHA2-256-128: one long-lived CBC encryptor per flow, so each packet's IV is
  the previous packet's last ciphertext block (explicit on the wire, as RFC 4303 requires);
  HMAC from precomputed inner/outer hash states.
- NULL + HMAC-SHA2-256-128: the plaintext and an HMAC.
- AES-CBC + HMAC-SHA2-512-256: as SHA2-256-128. Linux's af_key keys hmac(sha256) with the
  old 96-bit ICV (xfrm_algo.c), so real kernels take SHA2-512, whose 256 bits agree.

`check()` proves, per template, that the fast path writes scapy's exact bytes.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.errors import ConfigError
from orchestrator.traffic.template import SAMPLE_SEQ, Template, sample_iv, scapy_sample

PacketFn = Callable[[int], bytes]
SEQ_MAX = 0xFFFFFFFF  # no ESN: a 32-bit sequence number space per SA


def _hmac(key: bytes, icv_len: int, hash: str = "sha256") -> Callable[[bytes], bytes]:
    """HMAC truncated to icv_len, from precomputed pad states (RFC 2104)."""
    block = hashlib.new(hash).block_size
    if len(key) > block:
        key = hashlib.new(hash, key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.new(hash, bytes(b ^ 0x36 for b in key))
    outer = hashlib.new(hash, bytes(b ^ 0x5C for b in key))

    def mac(data: bytes) -> bytes:
        i = inner.copy()
        i.update(data)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()[:icv_len]

    return mac


def _gcm(t: Template) -> PacketFn:
    sa = t.flow.sa
    encrypt = AESGCM(sa.enc_key[:-4]).encrypt
    salt = sa.enc_key[-4:]
    plaintext = t.plaintext
    hl = len(t.header)
    head = struct.Struct(f"!{hl}sIIQ").pack  # outer header, SPI, seq, IV = seq
    header, spi = t.header, sa.spi
    aad_end, iv_start = hl + 8, hl + 8

    def packet(seq: int) -> bytes:
        h = head(header, spi, seq, seq)
        return h + encrypt(salt + h[iv_start:], plaintext, h[hl:aad_end])

    return packet


def _cbc_hmac(t: Template, hash: str = "sha256") -> PacketFn:
    sa = t.flow.sa
    iv = sample_iv(sa, SAMPLE_SEQ)
    update = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).encryptor().update
    mac = _hmac(sa.auth_key, t.icv_len, hash)
    esph = struct.Struct("!II").pack
    header, spi, plaintext = t.header, sa.spi, t.plaintext
    last = [iv]

    def packet(seq: int) -> bytes:
        ct = update(plaintext)
        esp = esph(spi, seq) + last[0] + ct
        last[0] = ct[-16:]
        return header + esp + mac(esp)

    return packet


def _null_hmac(t: Template) -> PacketFn:
    sa = t.flow.sa
    mac = _hmac(sa.auth_key, t.icv_len)
    esph = struct.Struct("!II").pack
    header, spi, plaintext = t.header, sa.spi, t.plaintext

    def packet(seq: int) -> bytes:
        esp = esph(spi, seq) + plaintext
        return header + esp + mac(esp)

    return packet


_BUILDERS: dict[tuple[str, str], Callable[[Template], PacketFn]] = {
    ("AES-GCM", "NULL"): _gcm,
    ("AES-CBC", "SHA2-256-128"): _cbc_hmac,
    ("NULL", "SHA2-256-128"): _null_hmac,
    ("AES-CBC", "SHA2-512-256"): lambda t: _cbc_hmac(t, "sha512"),
}


def encoder(t: Template) -> PacketFn:
    """A function seq -> one on-wire IPv4 packet of t's flow.

    The caller owns sequence numbers: pass each SA a fresh, increasing one (1..SEQ_MAX).
    CBC encoders chain their IV, so build one per flow and do not share it.
    """
    alg = t.flow.sa.alg
    try:
        return _BUILDERS[alg.crypt, alg.auth](t)
    except KeyError:
        raise ConfigError(f"no fast path for {alg.name}") from None


def check(t: Template) -> None:
    """Raise unless a fresh encoder's first packet is byte-identical to scapy's.

    Raises:
        ConfigError: the fast path and scapy disagree, naming the first differing byte.
    """
    got = encoder(t)(SAMPLE_SEQ)
    want = scapy_sample(t.flow)
    if got != want:
        at = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
            min(len(got), len(want)),
        )
        raise ConfigError(
            f"SPI 0x{t.flow.sa.spi:x}: fast path differs from scapy at byte {at} "
            f"(lengths {len(got)}/{len(want)})"
        )


def check_sample(templates: list[Template], k: int = 8, seed: int = 0) -> int:
    """`check()` the first, the last and k-2 random templates; returns how many were checked."""
    if not templates:
        return 0
    picks = {0, len(templates) - 1}
    rng = random.Random(seed)
    while len(picks) < min(k, len(templates)):
        picks.add(rng.randrange(len(templates)))
    for i in sorted(picks):
        check(templates[i])
    return len(picks)
