"""kill -9 of `spdlab run` in every phase of every target kind, then `spdlab down`: nothing left.

Each test runs a small lab (tests/labs/kill9/), waits for the phase in what the run writes
(state.json, result.json, traffic/stats.json), kills spdlab with SIGKILL, checks that it
left something behind, then that `spdlab down` alone removes every namespace, link,
container, VM and process, each exited by the time `down` returns.

Phases after up are held by the run's own breakpoint, SPDLAB_STOP_AT: spdlab stops itself
once the phase's work is done and before it is recorded as complete, so the kill lands in
the phase however loaded the machine is (install lasts milliseconds). qemu labs send no
traffic (`traffic: none`): they have no reference phase.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from leftovers import leftovers, processes
from test_docker import dockerd  # noqa: F401  (the session's docker daemon)

from orchestrator import proc
from orchestrator.runs import list_runs
from orchestrator.targets import cleanup
from orchestrator.wait import WaitTimeout, until

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "tests" / "labs" / "kill9"
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
PHASES = {
    "netns": ("up", "install", "reference", "drain"),
    "docker": ("up", "install", "reference", "drain"),
    "qemu": ("up", "install", "drain"),  # traffic: none, so nothing to reference
}
# SPDLAB_STOP_AT per test phase: the end of install and reference (policies in, traffic
# running), the start of drain (the drain stops the traffic when it ends); up is long enough
STOP_AT = {"install": "installed", "reference": "referenced", "drain": "drained:start"}
TIMEOUT_S = 600.0  # a generous limit for a stuck run, not a measure of speed

# ------------------------------------------------------------------ what the run wrote


def state(run: Path) -> dict[str, Any]:
    return json.loads((run / "state.json").read_text())


def result_phase(run: Path) -> str | None:
    try:
        return json.loads((run / "result.json").read_text())["phase"]
    except FileNotFoundError:
        return None


def stopped(pid: int) -> bool:
    """The process is stopped (state T in /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def started(run: Path, spdlab_pid: int) -> bool:
    """Up, with something running: the start playbook, a container or a booting VM."""
    st = state(run)
    pids = [t for t in st["targets"].values() if "pid" in t or "bridge_pid" in t]
    others = [p for p in processes(run.parent) if not p.startswith(f"{spdlab_pid} ")]
    return st["phase"] == "starting" and bool(pids or others)


# Each phase as the run records it (and the spdlab PID); after the kill, where it died.
IN_PHASE: dict[str, Callable[[Path, int], bool]] = {"up": started}
STILL_IN: dict[str, Callable[[Path], bool]] = {
    "up": lambda run: state(run)["phase"] == "starting",
    "install": lambda run: result_phase(run) == "up",
    "reference": lambda run: result_phase(run) == "installed",
    "drain": lambda run: result_phase(run) == "deleted",
}

# ------------------------------------------------------------------ waiting on the run's files

_libc = ctypes.CDLL(None, use_errno=True)
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100


class FolderWatch:
    """Wakes on every file written or renamed into a folder (inotify).

    Phases that last a few milliseconds are seen as they begin: a poll would sleep
    through them.
    """

    def __init__(self, path: Path):
        self.fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        if self.fd < 0 or _libc.inotify_add_watch(self.fd, str(path).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")

    def until(self, cond: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
        """Check `cond` now and after every change in the folder (at least twice a second)."""
        deadline = time.monotonic() + timeout
        while not (got := cond()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
            if select.select([self.fd], [], [], min(left, 0.5))[0]:
                while True:
                    try:
                        os.read(self.fd, 65536)
                    except BlockingIOError:
                        break
        return got

    def close(self) -> None:
        os.close(self.fd)


# ------------------------------------------------------------------ fixtures and helpers


class Spdlab:
    """`spdlab ARGS` in the background, its output in a file (a full pipe would block it)."""

    def __init__(self, runs: Path, *args: str, env: dict[str, str] | None = None):
        env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), **(env or {})}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the object)
        self.proc = subprocess.Popen(
            [*SPDLAB, *args], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __del__(self) -> None:
        self.log.close()


def down(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    return subprocess.run(
        [*SPDLAB, "down", *args], cwd=ROOT, env=env, text=True, capture_output=True,
        timeout=TIMEOUT_S,
    )  # fmt: skip


@pytest.fixture
def runs() -> Iterator[Path]:
    """A short runs folder (Unix socket paths stay under 108 bytes), clean afterwards."""
    d = Path(tempfile.mkdtemp(prefix="sk9-", dir="/tmp"))
    yield d
    down(d, "--all")
    assert leftovers(d) == []
    shutil.rmtree(d, ignore_errors=True)


def the_run(runs: Path) -> Path:
    """The run's folder, once spdlab has written its state file."""
    rid = until(lambda: list_runs(runs) and list_runs(runs)[0], "the run's state.json", TIMEOUT_S)
    return runs / rid


def run_until(runs: Path, kind: str, phase: str) -> tuple[Spdlab, Path]:
    """Start `spdlab run` on the kind's lab; return once it is in `phase`."""
    hold = {"SPDLAB_STOP_AT": STOP_AT[phase]} if phase in STOP_AT else {}
    sp = Spdlab(runs, "run", str(LABS / f"{kind}.yaml"), "--metrics-addr", "", env=hold)
    pid = sp.proc.pid
    try:
        run = the_run(runs)
        if hold:
            until(lambda: stopped(pid) or sp.proc.poll() is not None, f"spdlab held at {phase}",
                  timeout=TIMEOUT_S)  # fmt: skip
        else:
            watch = FolderWatch(run)
            try:
                watch.until(lambda: IN_PHASE[phase](run, pid) or sp.proc.poll() is not None, phase)
            finally:
                watch.close()
        assert sp.proc.poll() is None, sp.output()
    except BaseException:
        sp.kill()
        raise
    return sp, run


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("kind,phase", [(k, ph) for k, phases in PHASES.items() for ph in phases])
def test_kill9_in_phase_then_down_leaves_nothing(
    runs: Path, kind: str, phase: str, request: pytest.FixtureRequest
) -> None:
    if kind == "docker":
        request.getfixturevalue("dockerd")
    sp, run = run_until(runs, kind, phase)
    sp.kill()
    assert STILL_IN[phase](run), f"spdlab got past {phase} before it was killed"
    left = leftovers(runs)
    assert left, "the kill left nothing to clean up"
    if phase in ("reference", "drain") and kind != "qemu":  # AES-GCM: the native sender
        assert any("espgen" in what for what in left), left
    d = down(runs)
    assert d.returncode == 0, d.stdout + d.stderr
    # No wait here: `down` returns once what it stopped has exited.
    assert leftovers(runs) == []
    assert state(run)["phase"] == "down"
    assert not any(cleanup.still_there(r) for r in state(run)["resources"])


def test_sigint_in_up_tears_down_without_a_traceback(runs: Path) -> None:
    sp, run = run_until(runs, "netns", "up")
    sp.proc.send_signal(signal.SIGINT)
    code = sp.proc.wait(timeout=TIMEOUT_S)
    out = sp.output()
    assert code == 128 + signal.SIGINT, out
    assert "Traceback" not in out and "interrupted" in out, out
    assert leftovers(runs) == []  # right as it returns
    assert state(run)["phase"] == "down"


# ------------------------------------------------------------------ stopping processes


def child(code: str, **env: str) -> subprocess.Popen[bytes]:
    """A python child that says `ready` on stdout once its signal handlers are set."""
    p = subprocess.Popen(
        [sys.executable, "-c", code + "\nprint('ready', flush=True)\nimport time\n"
         "while True: time.sleep(1)"],
        env={**os.environ, **env}, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    return p


def test_a_reused_pid_is_never_signalled() -> None:
    p = child("")
    try:
        gone = {"type": "process", "pid": p.pid, "match": "/no/such/run/control.sock"}
        assert cleanup.remove(gone) is None
        assert p.poll() is None
        marked = {"type": "processes", "env": "SPDLAB_RUN=/no/such/run"}
        assert cleanup.remove(marked) is None
        assert p.poll() is None
    finally:
        p.kill()
        p.wait()


def test_sigterm_escalates_to_sigkill_and_down_awaits_the_exit() -> None:
    p = child("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)", SPDLAB_RUN="/r/1")
    assert cleanup.remove({"type": "processes", "env": "SPDLAB_RUN=/r/1"}) is None
    assert p.poll() == -signal.SIGKILL  # exited already: no wait needed


def test_a_stopped_process_gets_sigterm_and_sigcont() -> None:
    p = child("", SPDLAB_RUN="/r/2")
    os.kill(p.pid, signal.SIGSTOP)
    assert cleanup.remove({"type": "process", "pid": p.pid, "match": "ready"}) is None
    assert p.poll() == -signal.SIGTERM


def test_the_marker_finds_children_that_were_never_recorded() -> None:
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])"
    )
    p = child(code, SPDLAB_RUN="/r/3")
    try:
        kids = [pid for pid in proc.pids_with_env("SPDLAB_RUN=/r/3") if pid != p.pid]
        assert len(kids) == 1
        assert cleanup.remove({"type": "processes", "env": "SPDLAB_RUN=/r/3"}) is None
        assert p.poll() == -signal.SIGTERM
        assert not proc.pids_with_env("SPDLAB_RUN=/r/3")
    finally:
        p.kill()
        p.wait()
