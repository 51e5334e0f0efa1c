"""The qemu kind's host side without a VM: the relay bridge against a fake guest, and the
SPDDUMP-polling stats adapter against canned dumps."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from orchestrator.pfkey.codec import Msg, Policy
from orchestrator.pfkey.wire import MsgType
from orchestrator.targets import relay
from orchestrator.targets.spdpoll import RESOLUTION, SpdPoller
from orchestrator.wait import until


class FakeGuest:
    """pfkey_relay's side of the stream: says HELLO, echoes every MSG on its channel."""

    def __init__(self, path: str):
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.ops: list[tuple[int, int]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        conn, _ = self.srv.accept()
        conn.sendall(relay.FRAME.pack(0, relay.HELLO, 0, 0))
        buf = b""
        while True:
            try:
                chunk = conn.recv(1 << 16)
            except ConnectionResetError:  # the bridge went away first: the guest's view
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= relay.FRAME.size:
                chan, op, _, n = relay.FRAME.unpack_from(buf)
                if len(buf) < relay.FRAME.size + n:
                    break
                data, buf = buf[relay.FRAME.size : relay.FRAME.size + n], buf[8 + n :]
                self.ops.append((chan, op))
                if op == relay.MSG:
                    conn.sendall(relay.FRAME.pack(chan, relay.MSG, 0, n) + data)


@pytest.fixture
def bridge(monkeypatch):
    monkeypatch.setattr(relay, "SEND_TIMEOUT_S", 0.5)
    d = Path(tempfile.mkdtemp(prefix="spdr", dir="/tmp"))
    guest = FakeGuest(str(d / "relay.sock"))
    b = relay.RelayBridge(str(d / "relay.sock"), str(d / "control.sock"))
    b.connect(5)
    threading.Thread(target=b.guest_reader, daemon=True).start()
    assert b.hello.wait(5)
    threading.Thread(target=b.serve, daemon=True).start()
    until((d / "control.sock").exists, "the bridge's control socket", 30)
    yield b, guest, d
    b.guest.close()
    guest.srv.close()
    shutil.rmtree(d, ignore_errors=True)


def client(d: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.settimeout(5)
    c.connect(str(d / "control.sock"))
    return c


def test_each_client_is_a_channel_and_gets_only_its_messages(bridge):
    _, guest, d = bridge
    a, c = client(d), client(d)
    a.send(b"A" * 16)
    c.send(b"C" * 24)
    assert c.recv(1 << 16) == b"C" * 24  # one datagram per message, as PF_KEY
    assert a.recv(1 << 16) == b"A" * 16
    a.close()
    until(lambda: (1, relay.CLOSE) in guest.ops, "the guest to see channel 1 close", 30)
    ops = guest.ops
    assert ops.index((1, relay.OPEN)) < ops.index((1, relay.MSG)) < ops.index((1, relay.CLOSE))
    assert ops.index((2, relay.OPEN)) < ops.index((2, relay.MSG))
    c.send(b"again!!!")
    assert c.recv(1 << 16) == b"again!!!"


def test_a_client_that_never_reads_is_dropped_not_waited_for(bridge):
    _, _, d = bridge
    stuck, ok = client(d), client(d)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with contextlib.suppress(OSError):  # the bridge may drop it while we still send
        for _ in range(400):  # far more than its socket holds
            stuck.send(b"x" * 4096)
    ok.send(b"still here")
    assert ok.recv(1 << 16) == b"still here"
    stuck.settimeout(2)
    got = b""
    with contextlib.suppress(OSError):
        while chunk := stuck.recv(1 << 16):  # until the bridge shuts it down
            got += chunk
    assert len(got) < 400 * 4096


def entry(pid: int, d: int, refcnt: int = 1) -> Msg:
    return Msg(MsgType.X_SPDDUMP, reserved=refcnt, exts={18: Policy(2, d, pid)})


def test_spdpoll_counts_unlinks_between_observations(monkeypatch):
    p = SpdPoller("/nonexistent", tick_ms=0)
    dumps = [
        [entry(1, 1), entry(2, 2), entry(3, 2)],
        [entry(1, 1), entry(2, 2), entry(3, 2)],
        [],
    ]
    monkeypatch.setattr(p, "_dump", lambda: dumps.pop(0))
    before = p.answer("stats")
    assert before["spd"]["alive"] == {"in": 1, "out": 2} and before["spd"]["allocated"] == 3
    assert before["resolution"] == RESOLUTION and "use_after_free" in before["not_observable"]
    assert p.answer("tick 1")["now"] == 2
    after = p.answer("stats")
    assert after["now"] == 3 and after["spd"]["unlinked"] - before["spd"]["unlinked"] == 3
    assert after["spd"]["dead"] == {"in": 0, "out": 0} and after["spd"]["allocated"] == 0
    recs = p.answer("ticks 1")["ticks"]
    assert [r["tick"] for r in recs] == [2, 3] and [r["unlinked"] for r in recs] == [0, 3]
    assert all(r["resolution"] == RESOLUTION for r in recs)
    assert "error" in p.answer("flow open 1 2 3 4 5")


RELAY_DIR = Path(__file__).resolve().parents[1] / "firmware" / "relay"
RELAY_ASAN = RELAY_DIR.parent / "build" / "relay" / "pfkey_relay-asan"


def test_the_relay_reads_the_kernels_counters_and_takes_flows():
    """pfkey_relay (ASan+UBSan) on a socketpair: STAT answers with this kernel's own
    counters, as the guest's relay does; an empty FLOWS stops the guest's flows."""
    from orchestrator.targets.kstat import SLABINFO, XFRM_STAT, KernelCounters, sections

    make = subprocess.run(["make", "-s", "-C", str(RELAY_DIR), "asan"], capture_output=True,
                          text=True)  # fmt: skip
    assert make.returncode == 0, make.stderr
    d = Path(tempfile.mkdtemp(prefix="spdr", dir="/tmp"))
    b = relay.RelayBridge("", str(d / "control.sock"))
    child = b.spawn([str(RELAY_ASAN), "-"], None)
    try:
        threading.Thread(target=b.guest_reader, daemon=True).start()
        assert b.hello.wait(30)
        text = b.stat()
        got = sections(text)
        assert set(got) <= {XFRM_STAT, SLABINFO, "/proc/net/xfrm_census",
                            "/sys/kernel/tracing/kprobe_profile"}  # fmt: skip
        assert SLABINFO in got and all(line.startswith("xfrm") for line in got[SLABINFO])
        k = KernelCounters.parse(text)
        if Path(XFRM_STAT).exists():
            assert k.xfrm_stat and k.in_errors is not None
        b.flows("")  # answered: no flows run
        assert sections(b.stat()).keys() == got.keys()  # the relay still answers after it
    finally:
        child.terminate()
        assert child.wait(10) is not None
        shutil.rmtree(d, ignore_errors=True)
