"""Processes spdlab started itself, stopped by PID.

Every process a run starts carries `SPDLAB_RUN=<run folder>` in its environment, its
children too, so `down` finds them after a crash of spdlab even when no PID was written
down yet.  A process is signalled through a pidfd opened before its identity is checked,
so a PID that was reused in between is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

from orchestrator.wait import WaitTimeout, until

RUN_ENV = "SPDLAB_RUN"
TERM_GRACE_S = 2.0  # SIGTERM → SIGKILL
KILL_WAIT_S = 10.0  # SIGKILL → given up (a process stuck in the kernel)
SWEEPS = 5  # a parent may fork while it is being stopped: look again


class ProcessOwner(Protocol):
    """What starts processes for a run: their environment, and where they are recorded."""

    @property
    def spawn_env(self) -> Mapping[str, str]: ...

    def record_process(self, pid: int, match: str, what: str) -> None: ...


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_marker(run_path: Path | str) -> str:
    """The environment entry every process of the run carries."""
    return f"{RUN_ENV}={run_path}"


def run_env(run_path: Path | str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) plus the run's marker."""
    return {**(os.environ if base is None else base), RUN_ENV: str(run_path)}


def _proc_file(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def cmdline(pid: int) -> str | None:
    """The command line of `pid`, words joined by spaces; None if it is gone."""
    raw = _proc_file(pid, "cmdline")
    return None if raw is None else raw.replace(b"\0", b" ").decode(errors="replace")


def has_env(pid: int, entry: str) -> bool:
    """Whether `pid` started with `entry` (NAME=value) in its environment."""
    raw = _proc_file(pid, "environ")
    return raw is not None and entry.encode() in raw.split(b"\0")


def pids_with_env(entry: str) -> list[int]:
    """Every other process whose environment holds `entry`."""
    me = os.getpid()
    pids = (int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit())
    return sorted(p for p in pids if p != me and has_env(p, entry))


def _open(pid: int, ours: Callable[[int], bool]) -> int | None:
    """A pidfd for `pid` if it is still ours (checked after opening: no PID reuse)."""
    if pid <= 1 or pid == os.getpid():
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if ours(pid):
        return fd
    os.close(fd)
    return None


def _exited(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])  # a pidfd reads ready once it exits


def _signal(fds: Iterable[int], sig: int) -> None:
    for fd in fds:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, sig)


def _await(fds: dict[int, int], timeout: float) -> bool:
    what = f"processes {sorted(fds)} to exit"
    try:
        until(lambda: all(_exited(fd) for fd in fds.values()), what, timeout, interval=0.01)
    except WaitTimeout:
        return False
    return True


def stop_pids(
    pids: Iterable[int], ours: Callable[[int], bool], grace: float = TERM_GRACE_S
) -> list[int]:
    """Stop the processes `ours` accepts and wait until they have exited.

    SIGTERM (and SIGCONT, so a stopped process acts on it), up to `grace` seconds,
    then SIGKILL and up to KILL_WAIT_S more.

    Returns:
        The PIDs still alive after that.
    """
    fds = {p: fd for p in set(pids) if (fd := _open(p, ours)) is not None}
    try:
        _signal(fds.values(), signal.SIGTERM)
        _signal(fds.values(), signal.SIGCONT)
        if not _await(fds, grace):
            _signal((fd for fd in fds.values() if not _exited(fd)), signal.SIGKILL)
            _await(fds, KILL_WAIT_S)
        return sorted(p for p, fd in fds.items() if not _exited(fd))
    finally:
        for fd in fds.values():
            os.close(fd)


def stop_marked(entry: str, grace: float = TERM_GRACE_S) -> list[int]:
    """Stop every process carrying `entry`, children forked meanwhile included.

    Returns:
        The PIDs that would not exit.
    """
    for _ in range(SWEEPS):
        pids = pids_with_env(entry)
        if not pids:
            return []
        stop_pids(pids, lambda p: has_env(p, entry), grace)
    return pids_with_env(entry)
