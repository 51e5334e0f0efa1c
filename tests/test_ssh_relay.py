"""pfkey_relay as the ssh kind runs it: on stdio, relaying to netkeyd's control socket (-u).

The relay is the ASan+UBSan build, behind the real relay bridge, against a real netkeyd:
several clients each get their own channel and socket, and the relay exits quietly when
its stream closes, as it does when an SSH channel ends. `-t` says whether PF_KEY opens
(this host's kernel has none). The source also builds as plain POSIX against a BSD-style
<net/pfkeyv2.h>, warnings fatal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.pfkey.client import PfkeyClient
from orchestrator.targets import cleanup
from orchestrator.traffic import scenario as traffic_scenario
from orchestrator.wait import until

ROOT = Path(__file__).resolve().parents[1]
RELAY_DIR = ROOT / "firmware" / "relay"
ASAN = ROOT / "firmware" / "build" / "relay" / "pfkey_relay-asan"
NETKEYD = ROOT / "firmware" / "build" / "netkey" / "netkeyd"
N = 40


def make(*targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(RELAY_DIR), *targets],
                          capture_output=True, text=True)  # fmt: skip


@pytest.fixture(scope="module")
def relay_bin() -> Path:
    r = make("asan")
    assert r.returncode == 0, r.stderr
    return ASAN


@pytest.fixture()
def netkeyd():
    d = Path(tempfile.mkdtemp(prefix="spdr", dir="/tmp"))
    argv = [str(NETKEYD), "--control", str(d / "c.sock"), "--admin", str(d / "a.sock"),
            "--tick-ms", "0", "--log", str(d / "netkeyd.log")]  # fmt: skip
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    until(lambda: (d / "c.sock").exists(), "netkeyd's control socket", 30)
    yield d
    p.terminate()
    p.wait(timeout=10)
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def test_builds_as_plain_posix_against_a_bsd_pfkeyv2_header():
    r = make("check")
    assert r.returncode == 0, r.stderr


def test_relay_on_stdio_to_netkeyd_then_exits_when_the_stream_closes(relay_bin, netkeyd):
    d = netkeyd
    bridge = [sys.executable, "-m", "orchestrator.targets.relay", "--control", str(d / "r.sock"),
              "--command-pidfile", str(d / "relay.pid"), "--",
              str(relay_bin), "-u", str(d / "c.sock"), "-"]  # fmt: skip
    with open(d / "relay.err", "wb") as err:
        b = subprocess.Popen(bridge, cwd=ROOT, stdin=subprocess.DEVNULL, stderr=err)
    try:
        until(lambda: (d / "r.sock").exists(), "the bridge's control socket", 60)
        sc = traffic_scenario.generate(N, "10.1.0.2", "10.1.0.10")
        with PfkeyClient(str(d / "r.sock"), timeout=15) as c1, \
                PfkeyClient(str(d / "r.sock"), timeout=15) as c2:  # fmt: skip
            assert c1.register().errno == 0 and c2.register().errno == 0
            assert [r.errno for r in c1.pipeline(sc.policy_msgs)] == [0] * N
            assert len(c2.spddump()) == N  # another channel, the same SPD
            assert [r.errno for r in c2.pipeline(sc.delete_msgs)] == [0] * N
        relay_pid = int((d / "relay.pid").read_text())
        assert cleanup.process_matches(relay_pid, "pfkey_relay-asan")
    finally:
        b.send_signal(signal.SIGKILL)  # as a crash would: the relay sees its stdin close
        b.wait()
    until(lambda: not cleanup.process_matches(relay_pid, "pfkey_relay-asan"), "relay exits", 30)
    text = (d / "relay.err").read_text()
    assert "relaying" in text and "Sanitizer" not in text and "runtime error" not in text, text
    os.unlink(d / "relay.err")


def test_check_says_whether_a_channel_opens(relay_bin, netkeyd):
    r = subprocess.run([str(relay_bin), "-t"], capture_output=True, text=True)
    assert r.returncode == 1 and "socket(PF_KEY)" in r.stderr  # this host has no PF_KEY
    r = subprocess.run([str(relay_bin), "-t", "-u", str(netkeyd / "c.sock")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and "opens" in r.stdout
    r = subprocess.run([str(relay_bin), "-t", "-u", str(netkeyd / "none.sock")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and "none.sock" in r.stderr
    r = subprocess.run([str(relay_bin), "a", "b"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage:")
