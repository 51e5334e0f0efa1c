"""ESP input of a real netkeyd, end to end.

A gateway namespace runs netkeyd (the ASan+UBSan build) with --esp and --natt on one
end of a veth pair; a peer namespace sends ESP over a raw socket and ESP-in-UDP from
port 4500. SAs and policies go in over PF_KEY; every verdict is read back from the
admin socket's `stats` counters. Needs root and iproute2 (tests/conftest.py checks).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.pfkey import messages as m
from orchestrator.pfkey import setkey
from orchestrator.pfkey.client import PfkeyClient, PfkeyReplyError
from orchestrator.pfkey.codec import IpsecRequest, Lifetime, Msg
from orchestrator.pfkey.wire import (
    AuthAlg,
    Dir,
    EncAlg,
    Level,
    Mode,
    MsgType,
    PolicyType,
    SaType,
)
from orchestrator.wait import WaitTimeout, until

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
CLONE_NEWNET = 0x40000000

GW, PEER = "10.99.0.1", "10.99.0.2"
IPPROTO_ESP, IPPROTO_UDP, IPPROTO_IPIP = 50, 17, 4

GCM_KEY = bytes(range(16)) + b"salt"
CBC_KEY = bytes(range(32, 48))
HMAC_KEY = bytes(range(64, 96))

SPI_GCM, SPI_TUN, SPI_CBC, SPI_NULL, SPI_NATT, SPI_UNIQ = (
    0x1001,
    0x2002,
    0x3003,
    0x4004,
    0x5005,
    0x6006,
)


# ---------------------------------------------------------------- ESP encoding (RFC 4303)


def _trailer(payload: bytes, nxt: int, align: int) -> bytes:
    padlen = (-(len(payload) + 2)) % align
    return payload + bytes(range(1, padlen + 1)) + bytes([padlen, nxt])


def esp_gcm(
    spi: int, seq: int, payload: bytes, nxt: int, key: bytes = GCM_KEY, icv: int = 16
) -> bytes:
    """rfc4106(gcm(aes)): nonce = salt || IV, AAD = SPI || seq, ICV = the tag's first bytes."""
    hdr = struct.pack("!II", spi, seq)
    iv = struct.pack("!Q", seq)
    sealed = AESGCM(key[:-4]).encrypt(key[-4:] + iv, _trailer(payload, nxt, 4), hdr)
    return hdr + iv + sealed[:-16] + sealed[-16:][:icv]


def _hmac256(data: bytes) -> bytes:
    h = hmac.HMAC(HMAC_KEY, hashes.SHA256())
    h.update(data)
    return h.finalize()[:16]


def esp_cbc(spi: int, seq: int, payload: bytes, nxt: int, plain: bytes | None = None) -> bytes:
    """AES-CBC + HMAC-SHA2-256-128; `plain` overrides the padded plaintext."""
    hdr = struct.pack("!II", spi, seq)
    iv = secrets.token_bytes(16)
    enc = Cipher(algorithms.AES(CBC_KEY), modes.CBC(iv)).encryptor()
    body = plain if plain is not None else _trailer(payload, nxt, 16)
    ct = enc.update(body) + enc.finalize()
    return hdr + iv + ct + _hmac256(hdr + iv + ct)


def esp_null(spi: int, seq: int, payload: bytes, nxt: int) -> bytes:
    hdr = struct.pack("!II", spi, seq)
    body = _trailer(payload, nxt, 4)
    return hdr + body + _hmac256(hdr + body)


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    hdr = struct.pack(
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
    return hdr + payload


# ---------------------------------------------------------------- the lab


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _in_netns(name: str, fn: Callable[[], socket.socket]) -> socket.socket:
    """Run fn in a thread moved into netns `name`: its sockets stay in that namespace."""
    out: list[socket.socket | BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out.append(fn())
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


class Gateway:
    """Gateway — netkeyd in its own namespace, with a peer namespace to send from."""

    def __init__(self, tmp: Path, binary: Path):
        tag = secrets.token_hex(3)
        self.gw_ns, self.peer_ns = f"spdt-{tag}-gw", f"spdt-{tag}-pe"
        self.tmp = tmp
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.stderr = tmp / "netkeyd.stderr"

    def up(self) -> None:
        _ip("netns", "add", self.gw_ns)
        _ip("netns", "add", self.peer_ns)
        veth = f"v{secrets.token_hex(4)}"
        _ip(
            "link",
            "add",
            veth + "a",
            "netns",
            self.gw_ns,
            "type",
            "veth",
            "peer",
            "name",
            veth + "b",
            "netns",
            self.peer_ns,
        )
        for ns, dev, addr in ((self.gw_ns, veth + "a", GW), (self.peer_ns, veth + "b", PEER)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        self.control = str(self.tmp / "control")
        self.admin = str(self.tmp / "admin")
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.gw_ns,
                    str(self.binary),
                    "--control",
                    self.control,
                    "--admin",
                    self.admin,
                    "--tick-ms",
                    "0",
                    "--esp",
                    GW,
                    "--natt",
                    GW,
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        proc = self.proc
        try:
            until(lambda: os.path.exists(self.admin) and os.path.exists(self.control),
                  "netkeyd's sockets", 60, alive=lambda: proc.poll() is None)  # fmt: skip
        except WaitTimeout as e:
            raise RuntimeError(f"netkeyd did not start: {e}: {self.stderr.read_text()}") from e
        self.raw = _in_netns(
            self.peer_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
        )
        self.udp = _in_netns(self.peer_ns, self._udp_socket)

    @staticmethod
    def _udp_socket() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((PEER, 4500))
        return s

    def down(self) -> str:
        """Stop netkeyd and remove both namespaces; return what it wrote on stderr."""
        for s in (getattr(self, "raw", None), getattr(self, "udp", None)):
            if s is not None:
                s.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for ns in (self.gw_ns, self.peer_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    # ------------------------------------------------------------ talking to it

    def cmd(self, line: str) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.admin)
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)

    def esp(self) -> dict[str, int]:
        e = self.cmd("stats")["esp"]
        return {"ok": e["ok"], **e["drop"]}

    def pfkey(self) -> PfkeyClient:
        return PfkeyClient(self.control)

    def send_raw(self, packets: list[bytes]) -> None:
        for p in packets:
            self.raw.sendto(p, (GW, 0))

    def send_udp(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.udp.sendto(p, (GW, 4500))

    def moved(self, before: dict[str, int], total: int) -> dict[str, int]:
        """Wait until the ESP counters moved by `total` since `before`; what moved."""

        def now() -> dict[str, int]:
            e = self.esp()
            return {k: e[k] - before[k] for k in e if e[k] != before[k]}

        with contextlib.suppress(WaitTimeout):  # the caller's assertion shows what moved
            until(lambda: sum(now().values()) >= total, f"{total} ESP packets counted", 60)
        return now()

    def expect(self, raw: Sequence[bytes] = (), udp: Sequence[bytes] = (), **delta: int) -> None:
        """Send raw ESP, then UDP 4500 payloads; wait for the counters to move by `delta`."""
        before = self.esp()
        self.send_raw(list(raw))
        self.send_udp(list(udp))
        assert self.moved(before, sum(delta.values())) == delta


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = subprocess.run(
        [str(FIRMWARE / "mkbuild.sh"), "netkey", "asan"], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.fail(f"firmware build failed:\n{r.stdout}{r.stderr}")
    return FIRMWARE / "build" / "netkey" / "netkeyd-asan"


@contextlib.contextmanager
def installed_gateway(workdir: Path, binary: Path) -> Iterator[Gateway]:
    """A gateway with the SAs and policies of _install; down afterwards, and its stderr
    free of sanitizer findings."""
    g = Gateway(workdir, binary)
    try:
        g.up()
        _install(g)
        yield g
    finally:
        err = g.down()
    assert "Sanitizer" not in err and "runtime error" not in err, err


@pytest.fixture
def gw(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A fresh gateway per test: replay windows and lifetimes never carry over."""
    with installed_gateway(tmp_path_factory.mktemp("espgw"), binary) as g:
        yield g


def _install(g: Gateway) -> None:
    req = IpsecRequest
    with g.pfkey() as c:
        c.request(
            m.add_sa(
                PEER,
                GW,
                SPI_GCM,
                mode=Mode.TRANSPORT,
                encrypt=EncAlg.AES_GCM16,
                enc_key=GCM_KEY,
                replay=4,
            )
        )
        c.request(
            m.add_sa(
                PEER,
                GW,
                SPI_TUN,
                mode=Mode.TUNNEL,
                reqid=5,
                encrypt=EncAlg.AES_GCM16,
                enc_key=GCM_KEY,
                replay=4,
            )
        )
        c.request(
            m.add_sa(
                PEER,
                GW,
                SPI_UNIQ,
                mode=Mode.TUNNEL,
                reqid=9,
                encrypt=EncAlg.AES_GCM16,
                enc_key=GCM_KEY,
            )
        )
        c.request(
            m.add_sa(
                PEER,
                GW,
                SPI_CBC,
                mode=Mode.TRANSPORT,
                encrypt=EncAlg.AES_CBC,
                enc_key=CBC_KEY,
                auth=AuthAlg.HMAC_SHA256,
                auth_key=HMAC_KEY,
                replay=4,
            )
        )
        c.request(
            m.add_sa(
                PEER,
                GW,
                SPI_NULL,
                mode=Mode.TRANSPORT,
                encrypt=EncAlg.NULL,
                auth=AuthAlg.HMAC_SHA256,
                auth_key=HMAC_KEY,
            )
        )
        c.request(
            m.add_sa(
                PEER,
                GW,
                SPI_NATT,
                mode=Mode.TRANSPORT,
                encrypt=EncAlg.AES_GCM16,
                enc_key=GCM_KEY,
                natt_type=2,
                natt_sport=4500,
                natt_dport=4500,
            )
        )
        # Transport: anything from the peer to the gateway must come in ESP transport.
        c.request(
            m.spdadd(
                f"{PEER}/32",
                f"{GW}/32",
                dir=Dir.IN,
                requests=[req(IPPROTO_ESP, Mode.TRANSPORT, Level.REQUIRE)],
            )
        )
        tun = [req(IPPROTO_ESP, Mode.TUNNEL, Level.REQUIRE, 0, PEER, GW)]
        c.request(m.spdadd("172.16.1.0/24", "172.16.2.0/24", dir=Dir.IN, requests=tun))
        c.request(
            m.spdadd(
                "172.16.3.0/24",
                "172.16.2.0/24",
                dir=Dir.IN,
                requests=[req(IPPROTO_ESP, Mode.TUNNEL, Level.UNIQUE, 7, PEER, GW)],
            )
        )
        c.request(
            m.spdadd("172.16.4.0/24", "172.16.2.0/24", dir=Dir.IN, policy_type=PolicyType.DISCARD)
        )
        c.request(
            m.spdadd("172.16.6.0/24", "172.16.2.0/24", dir=Dir.IN, policy_type=PolicyType.NONE)
        )
        c.request(
            m.spdadd(
                "172.16.7.0/24",
                "172.16.2.0/24",
                dir=Dir.IN,
                requests=[req(IPPROTO_ESP, Mode.TRANSPORT, Level.REQUIRE)],
            )
        )


def _inner(src: str, dst: str = "172.16.2.1") -> bytes:
    return ipv4(src, dst, IPPROTO_UDP, udp(1234, 80, b"hello through the tunnel"))


DATA = udp(1234, 80, b"transport payload")


# ---------------------------------------------------------------- accept


def test_transport_gcm_accepted(gw: Gateway) -> None:
    gw.expect(raw=[esp_gcm(SPI_GCM, s, DATA, IPPROTO_UDP) for s in (1, 2, 3)], ok=3)


def test_transport_cbc_and_null_accepted(gw: Gateway) -> None:
    gw.expect(
        raw=[esp_cbc(SPI_CBC, 1, DATA, IPPROTO_UDP), esp_null(SPI_NULL, 1, DATA, IPPROTO_UDP)],
        ok=2,
    )


def test_tunnel_decapsulated_and_checked_against_inner(gw: Gateway) -> None:
    gw.expect(raw=[esp_gcm(SPI_TUN, 1, _inner("172.16.1.9"), IPPROTO_IPIP)], ok=1)


def test_policy_none_accepts(gw: Gateway) -> None:
    gw.expect(raw=[esp_gcm(SPI_TUN, 50, _inner("172.16.6.1"), IPPROTO_IPIP)], ok=1)


def test_esp_in_udp_accepted(gw: Gateway) -> None:
    gw.expect(udp=[esp_gcm(SPI_NATT, 1, DATA, IPPROTO_UDP)], ok=1)


def test_current_lifetime_counts_use(gw: Gateway) -> None:
    with gw.pfkey() as c:
        before = c.request(m.get_sa(PEER, GW, SPI_NULL)).get(2)
        gw.expect(raw=[esp_null(SPI_NULL, 7, DATA, IPPROTO_UDP)], ok=1)
        after = c.request(m.get_sa(PEER, GW, SPI_NULL)).get(2)
    assert after.allocations == before.allocations + 1
    assert after.bytes == before.bytes + len(DATA)


# ---------------------------------------------------------------- drops


def test_unknown_spi(gw: Gateway) -> None:
    gw.expect(raw=[esp_gcm(0xDEAD, 1, DATA, IPPROTO_UDP)], no_sa=1)


def test_flipped_icv_bit_then_window_unmoved(gw: Gateway) -> None:
    for build, spi in ((esp_gcm, SPI_GCM), (esp_cbc, SPI_CBC), (esp_null, SPI_NULL)):
        good = build(spi, 20, DATA, IPPROTO_UDP)
        bad = good[:-1] + bytes([good[-1] ^ 1])
        gw.expect(raw=[bad], bad_icv=1)
        # A forged packet must not have moved the replay window.
        gw.expect(raw=[good], ok=1)


def test_replayed_sequence_number(gw: Gateway) -> None:
    pkts = [esp_gcm(SPI_GCM, s, DATA, IPPROTO_UDP) for s in (100, 101, 200)]
    gw.expect(raw=pkts, ok=3)
    gw.expect(raw=[pkts[1]], replay=1)  # inside the window, seen
    gw.expect(raw=[pkts[0]], replay=1)  # 100 fell out of the 64-window
    gw.expect(raw=[esp_gcm(SPI_GCM, 150, DATA, IPPROTO_UDP)], ok=1)
    gw.expect(raw=[esp_gcm(SPI_GCM, 0, DATA, IPPROTO_UDP)], replay=1)


def test_policy_mismatch(gw: Gateway) -> None:
    # unique:7 against an SA with reqid 9
    gw.expect(
        raw=[esp_gcm(SPI_UNIQ, 1, _inner("172.16.3.1"), IPPROTO_IPIP)],
        policy_mismatch=1,
    )
    # a discard policy
    gw.expect(
        raw=[esp_gcm(SPI_TUN, 60, _inner("172.16.4.1"), IPPROTO_IPIP)],
        policy_mismatch=1,
    )
    # transport required, tunnel SA used
    gw.expect(
        raw=[esp_gcm(SPI_TUN, 61, _inner("172.16.7.1"), IPPROTO_IPIP)],
        policy_mismatch=1,
    )


def test_no_policy(gw: Gateway) -> None:
    gw.expect(raw=[esp_gcm(SPI_TUN, 70, _inner("172.16.5.1"), IPPROTO_IPIP)], no_policy=1)


def test_short_packets(gw: Gateway) -> None:
    gw.expect(raw=[b"\x01"], malformed=1)
    gw.expect(raw=[b""], malformed=1)
    gw.expect(raw=[struct.pack("!II", SPI_GCM, 300)], malformed=1)
    gw.expect(raw=[esp_gcm(SPI_GCM, 301, DATA, IPPROTO_UDP)[:30]], malformed=1)
    # CBC ciphertext that is not a whole number of blocks
    gw.expect(raw=[esp_cbc(SPI_CBC, 302, DATA, IPPROTO_UDP)[:-17]], malformed=1)


def test_bad_padding_is_a_decrypt_error(gw: Gateway) -> None:
    plain = bytes(14) + bytes([200, IPPROTO_UDP])  # pad length 200 in a 16-byte payload
    gw.expect(raw=[esp_cbc(SPI_CBC, 400, b"", 0, plain=plain)], decrypt=1)


def test_truncated_inner_header_is_malformed(gw: Gateway) -> None:
    gw.expect(
        raw=[esp_gcm(SPI_TUN, 80, _inner("172.16.1.9")[:12], IPPROTO_IPIP)],
        malformed=1,
    )


def test_udp_4500(gw: Gateway) -> None:
    # Keepalives and IKE (non-ESP marker) are not ESP: no ESP counter moves.  The
    # unknown-SPI packet after them proves they were read and passed over.
    gw.expect(udp=[b"\xff", b"\0\0\0\0ike", esp_gcm(0xBEEF, 1, DATA, 17)], no_sa=1)
    gw.expect(udp=[b"\x01\x02\x03"], malformed=1)
    gw.expect(udp=[secrets.token_bytes(3) + b"\xff" * 60], no_sa=1)
    # ESP for an SA without NAT-T must not be accepted from UDP.
    gw.expect(udp=[esp_gcm(SPI_GCM, 500, DATA, IPPROTO_UDP)], no_sa=1)


def test_larval_sa_is_not_usable(gw: Gateway) -> None:
    with gw.pfkey() as c:
        getspi = Msg(MsgType.GETSPI, satype=SaType.ESP, exts=m.deleteall_sa(PEER, GW).exts)
        spi = c.request(getspi).sa.spi
    gw.expect(raw=[esp_gcm(spi, 1, DATA, IPPROTO_UDP)], sa_state=1)
    with gw.pfkey() as c:
        c.request(
            m.update_sa(
                PEER, GW, spi, mode=Mode.TRANSPORT, encrypt=EncAlg.AES_GCM16, enc_key=GCM_KEY
            )
        )
    gw.expect(raw=[esp_gcm(spi, 2, DATA, IPPROTO_UDP)], ok=1)


def test_garbage_never_crashes(gw: Gateway) -> None:
    pkts = [secrets.token_bytes(n) for n in range(0, 200, 3)]
    pkts += [
        struct.pack("!II", SPI_GCM, 1000 + i) + secrets.token_bytes(i) for i in range(0, 120, 5)
    ]
    udp = [p for p in pkts if p[:1] != b"\xff" and p[:4] != b"\0\0\0\0"]  # not ESP
    before = gw.esp()
    gw.send_raw(pkts)
    gw.send_udp(udp)
    moved = gw.moved(before, len(pkts) + len(udp))
    assert sum(moved.values()) == len(pkts) + len(udp), moved  # each counted once
    assert "ok" not in moved, moved
    assert gw.proc is not None and gw.proc.poll() is None
    assert gw.cmd("ping") == {"ok": True}


# ---------------------------------------------------------------- PF_KEY SA handlers


def _errno(fn: Callable[[], object]) -> int:
    with pytest.raises(PfkeyReplyError) as ei:
        fn()
    return ei.value.reply.errno


def test_sa_handler_errors(gw: Gateway) -> None:
    with gw.pfkey() as c:
        assert (
            _errno(
                lambda: c.request(
                    m.add_sa(PEER, GW, SPI_GCM, encrypt=EncAlg.AES_GCM16, enc_key=GCM_KEY)
                )
            )
            == errno.EEXIST
        )
        assert (
            _errno(
                lambda: c.request(
                    m.add_sa(PEER, GW, 0x7001, encrypt=EncAlg.AES_GCM16, enc_key=GCM_KEY[:16])
                )
            )
            == errno.EINVAL
        )
        assert (
            _errno(
                lambda: c.request(
                    m.add_sa(
                        PEER,
                        GW,
                        0x7002,
                        encrypt=EncAlg.AES_CBC,
                        enc_key=CBC_KEY,
                        auth=AuthAlg.HMAC_SHA256,
                        auth_key=HMAC_KEY[:20],
                    )
                )
            )
            == errno.EINVAL
        )
        assert (
            _errno(
                lambda: c.request(
                    m.add_sa(PEER, GW, 0x7003, encrypt=EncAlg.AES_CTR, enc_key=CBC_KEY)
                )
            )
            == errno.EINVAL
        )
        assert (
            _errno(lambda: c.request(m.add_sa(PEER, GW, 0x7004, encrypt=EncAlg.AES_CBC)))
            == errno.EINVAL
        )
        assert _errno(lambda: c.request(m.delete_sa(PEER, GW, 0x7005))) == errno.ESRCH
        assert _errno(lambda: c.request(m.get_sa(PEER, GW, 0x7005))) == errno.ESRCH
        assert (
            _errno(
                lambda: c.request(
                    m.update_sa(PEER, GW, 0x7005, encrypt=EncAlg.AES_GCM16, enc_key=GCM_KEY)
                )
            )
            == errno.ENOENT
        )


def test_add_get_delete_and_dump(gw: Gateway) -> None:
    with gw.pfkey() as c, gw.pfkey() as other:
        reply = c.request(
            m.add_sa(
                PEER,
                GW,
                0x8001,
                encrypt=EncAlg.AES_CBC,
                enc_key=CBC_KEY,
                auth=AuthAlg.HMAC_SHA256,
                auth_key=HMAC_KEY,
                hard=Lifetime(addtime=3600),
            )
        )
        assert reply.get(8) is None and reply.get(9) is None  # ADD reply has no keys
        assert other.recv().type == MsgType.ADD  # and goes to every socket
        got = c.request(m.get_sa(PEER, GW, 0x8001))
        assert got.get(9).data == CBC_KEY and got.get(8).data == HMAC_KEY
        assert got.get(3).addtime == 3600
        entries = c.dump(MsgType.DUMP)
        assert 0x8001 in [e.sa.spi for e in entries]
        assert [e.seq for e in entries] == list(range(len(entries) - 1, -1, -1))
        c.request(m.delete_sa(PEER, GW, 0x8001))
        assert other.recv().type == MsgType.DELETE
        assert _errno(lambda: c.request(m.get_sa(PEER, GW, 0x8001))) == errno.ESRCH


def test_lifetimes_expire(gw: Gateway) -> None:
    with gw.pfkey() as c:
        c.request(m.register(SaType.ESP))
        c.request(
            m.add_sa(
                PEER,
                GW,
                0x9001,
                mode=Mode.TRANSPORT,
                encrypt=EncAlg.NULL,
                auth=AuthAlg.HMAC_SHA256,
                auth_key=HMAC_KEY,
                soft=Lifetime(bytes=10),
                hard=Lifetime(addtime=2),
            )
        )
        gw.expect(raw=[esp_null(0x9001, 1, DATA, IPPROTO_UDP)], ok=1)
        soft = _next(c, MsgType.EXPIRE)
        assert soft.get(4) is not None and soft.get(3) is None and soft.sa.spi == 0x9001
        gw.cmd("tick 3")
        hard = _next(c, MsgType.EXPIRE)
        assert hard.get(3) is not None and hard.sa.spi == 0x9001
        assert _errno(lambda: c.request(m.get_sa(PEER, GW, 0x9001))) == errno.ESRCH
    sad = gw.cmd("stats")["sad"]
    assert sad["expired_soft"] >= 1 and sad["expired_hard"] >= 1


def _next(c: PfkeyClient, mtype: int) -> Msg:
    while True:
        msg = c.recv()
        if msg.type == mtype:
            return msg


def test_null_encryption_without_auth(gw: Gateway) -> None:
    """`-E null;` alone, as KAME and Linux take it: plaintext ESP with no ICV is accepted."""
    (st,) = setkey.parse(f"add {PEER} {GW} esp 0x9101 -m transport -E null;")
    with gw.pfkey() as c:
        assert c.request(st.msg).type == MsgType.ADD
    hdr = struct.pack("!II", 0x9101, 1)
    gw.expect(raw=[hdr + _trailer(DATA, IPPROTO_UDP, 4)], ok=1)
    # A packet too short for even the trailer is still dropped.
    gw.expect(raw=[struct.pack("!II", 0x9101, 2) + b"\x00"], malformed=1)
