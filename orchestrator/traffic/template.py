"""Packet templates: scapy builds each flow's inner packet and one encrypted sample.

scapy is the source of truth for the on-wire format. A template records what the fast path
needs (the outer header bytes, the plaintext ESP payload with its padding trailer, the IV and
ICV sizes), and `check()` proves the fast path writes exactly the bytes scapy writes.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.packet import Packet, Raw

from orchestrator.traffic.sa import FlowSpec, SaSpec

SAMPLE_SEQ = 1
ESP_HDR_LEN = 8  # SPI + sequence number
UDP_HDR_LEN = 8


def scapy_sa(sa: SaSpec) -> SecurityAssociation:
    """scapy's SecurityAssociation for `sa` (tunnel header and NAT-T header included)."""
    alg = sa.alg
    return SecurityAssociation(
        ESP,
        spi=sa.spi,
        crypt_algo=alg.crypt,
        crypt_key=sa.enc_key or None,
        auth_algo=alg.auth,
        auth_key=sa.auth_key or None,
        tunnel_header=IP(src=sa.src, dst=sa.dst) if sa.mode == "tunnel" else None,
        nat_t_header=UDP(sport=sa.natt_sport, dport=sa.natt_dport) if sa.natt else None,
    )


def inner_packet(flow: FlowSpec) -> Packet:
    """The cleartext packet of `flow`: IPv4, UDP or TCP, a counted payload."""
    l4 = TCP if flow.proto == 6 else UDP
    payload = bytes(i & 0xFF for i in range(flow.payload_len))
    return IP(src=flow.src, dst=flow.dst) / l4(sport=flow.sport, dport=flow.dport) / Raw(payload)


def iv_size(sa: SaSpec) -> int:
    return scapy_sa(sa).crypt_algo.iv_size


def sample_iv(sa: SaSpec, seq: int = SAMPLE_SEQ) -> bytes:
    """The IV the fast path uses first for `sa`: the sequence number for GCM (RFC 4106
    allows any unique value), an SPI-derived block for CBC, nothing for NULL."""
    n = iv_size(sa)
    if n == 0:
        return b""
    if n == 8:
        return struct.pack("!Q", seq)
    return struct.pack("!IIQ", sa.spi, 0x5EED5EED, seq)[:n].rjust(n, b"\0")


@dataclass(frozen=True)
class Template:
    """One flow's fixed parts, derived from a scapy-encrypted sample.

    Attributes:
        header: the outer IPv4 header, plus the UDP header under NAT-T; constant per flow,
            since every packet of a flow has the same length.
        plaintext: the ESP payload before encryption: inner packet (tunnel) or transport
            payload, padding, pad length, next header.
        iv_len, icv_len: sizes of the IV and the ICV on the wire.
        length: the whole packet's length.
    """

    flow: FlowSpec
    header: bytes
    plaintext: bytes
    iv_len: int
    icv_len: int
    length: int

    @property
    def esp_offset(self) -> int:
        return len(self.header)


def scapy_sample(flow: FlowSpec, seq: int = SAMPLE_SEQ, iv: bytes | None = None) -> bytes:
    """One packet of `flow` encrypted by scapy; the IV defaults to the fast path's first."""
    ssa = scapy_sa(flow.sa)
    return bytes(
        ssa.encrypt(
            inner_packet(flow), seq_num=seq, iv=sample_iv(flow.sa, seq) if iv is None else iv
        )
    )


def build(flow: FlowSpec) -> Template:
    """Encrypt one packet of `flow` with scapy and take its layout apart."""
    sa = flow.sa
    ssa = scapy_sa(sa)
    sample = scapy_sample(flow)
    ihl = (sample[0] & 0x0F) * 4
    off = ihl + (UDP_HDR_LEN if sa.natt else 0)
    iv_len = ssa.crypt_algo.iv_size
    icv_len = ssa.crypt_algo.icv_size or ssa.auth_algo.icv_size
    esp = sample[off:]
    plaintext = _decrypt(sa, esp, iv_len, icv_len)
    return Template(flow, sample[:off], plaintext, iv_len, icv_len, len(sample))


def _shape(flow: FlowSpec) -> tuple:
    """Flows of one shape differ only in addresses, ports, SPI and keys: same layout."""
    sa = flow.sa
    return (sa.algorithm, sa.mode, sa.natt, flow.proto, flow.payload_len)


def build_all(flows: list[FlowSpec]) -> list[Template]:
    """Templates for many flows: scapy builds the first of each shape, the rest are derived.

    Deriving rewrites addresses, ports and checksums in the first one's bytes (scapy costs
    milliseconds a packet); callers cross-check a sample with `fastpath.check`.
    """
    bases: dict[tuple, Template] = {}
    out = []
    for flow in flows:
        base = bases.get(_shape(flow))
        if base is None:
            base = bases[_shape(flow)] = build(flow)
            out.append(base)
        else:
            out.append(derive(base, flow))
    return out


def derive(base: Template, flow: FlowSpec) -> Template:
    """`base` re-addressed for `flow`, a flow of the same shape."""
    if _shape(flow) != _shape(base.flow):
        raise ValueError("derive() needs a flow of the base's shape")
    sa = flow.sa
    ihl = (base.header[0] & 0x0F) * 4
    header = _ipv4_header(base.header[:ihl], sa.src, sa.dst)
    if sa.natt:
        header += struct.pack("!HH", sa.natt_sport, sa.natt_dport) + base.header[ihl + 4 :]
    pl = base.plaintext
    data_len = len(pl) - pl[-2] - 2  # before padding, pad length and next header
    if sa.mode == "tunnel":
        iihl = (pl[0] & 0x0F) * 4
        data = _ipv4_header(pl[:iihl], flow.src, flow.dst) + _l4(pl[iihl:data_len], flow)
    else:
        data = _l4(pl[:data_len], flow)
    return Template(flow, header, data + pl[data_len:], base.iv_len, base.icv_len, base.length)


def _csum(data: bytes | bytearray) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4_header(header: bytes, src: str, dst: str) -> bytes:
    h = bytearray(header)
    h[12:20] = socket.inet_aton(src) + socket.inet_aton(dst)
    h[10:12] = b"\0\0"
    h[10:12] = struct.pack("!H", _csum(h))
    return bytes(h)


def _l4(segment: bytes, flow: FlowSpec) -> bytes:
    """A UDP or TCP segment with `flow`'s ports and its checksum redone."""
    s = bytearray(segment)
    s[0:4] = struct.pack("!HH", flow.sport, flow.dport)
    at = 16 if flow.proto == 6 else 6
    s[at : at + 2] = b"\0\0"
    pseudo = socket.inet_aton(flow.src) + socket.inet_aton(flow.dst)
    pseudo += struct.pack("!BBH", 0, flow.proto, len(s))
    c = _csum(pseudo + s)
    if flow.proto == 17 and c == 0:
        c = 0xFFFF
    s[at : at + 2] = struct.pack("!H", c)
    return bytes(s)


def _decrypt(sa: SaSpec, esp: bytes, iv_len: int, icv_len: int) -> bytes:
    """The plaintext of one ESP payload (header at 0); no ICV check, scapy just made it."""
    iv = esp[ESP_HDR_LEN : ESP_HDR_LEN + iv_len]
    body = esp[ESP_HDR_LEN + iv_len :]
    crypt = sa.alg.crypt
    if crypt == "AES-GCM":
        key, salt = sa.enc_key[:-4], sa.enc_key[-4:]
        return AESGCM(key).decrypt(salt + iv, body, esp[:ESP_HDR_LEN])
    body = body[: len(body) - icv_len]
    if crypt == "AES-CBC":
        dec = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).decryptor()
        return dec.update(body) + dec.finalize()
    return body


def scapy_decrypt(flow: FlowSpec, packet: bytes) -> Packet:
    """Decrypt and verify one on-wire packet with scapy; returns the inner packet.

    Raises:
        scapy.layers.ipsec.IPSecIntegrityError, cryptography.exceptions.InvalidTag:
            the ICV does not verify.
    """
    pkt = IP(packet)
    if flow.sa.natt and not pkt.haslayer(ESP):
        pkt[UDP].decode_payload_as(ESP)  # scapy binds ESP-in-UDP to port 4500 only
    return scapy_sa(flow.sa).decrypt(pkt)
