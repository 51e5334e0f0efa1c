"""Netkeyd — one netkeyd process started directly, without a lab or ansible.

The matrix demo, the benchmarks and the tests use it; lab targets go through
their drivers instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from types import TracebackType

from orchestrator.errors import ConfigError, InfraError
from orchestrator.lab.builds import binary_path, known_builds
from orchestrator.pfkey import messages
from orchestrator.pfkey.client import PfkeyClient, PfkeyTimeout
from orchestrator.proc import terminate
from orchestrator.targets.admin import AdminClient
from orchestrator.wait import WaitTimeout, until


def netkeyd_binary(build: str, asan: bool = False) -> Path:
    """The built binary for `build`, or a ConfigError saying how to build it."""
    if build not in known_builds():
        raise ConfigError(f"unknown build '{build}'. Known builds are: {', '.join(known_builds())}")
    path = binary_path(build)
    if asan:
        path = path.with_name("netkeyd-asan")
    if not path.exists():
        target = "asan" if asan else f"BUILD='{build}'"
        raise ConfigError(f"{path} is not built: run make -C firmware {target}")
    return path


class Netkeyd:
    """Netkeyd — a netkeyd process with its control and admin sockets in `workdir`.

    Life cycle:
      - start(): spawn, then wait until the control socket answers a REGISTER;
      - pfkey() / admin: talk to it;
      - stop(): SIGTERM by PID, wait, and report sanitizer findings.

    Args:
        build: a name from firmware/builds.conf.
        workdir: where sockets, pidfile and log go.
        tick_ms: wall length of a tick; 0 = ticks only on `tick N`.
        flow_idle_ticks: flows idle out after this many ticks.
        asan: run the ASan+UBSan binary.
        netns: run inside this network namespace.
        extra: more netkeyd flags (e.g. --esp ADDR).
    """

    def __init__(
        self,
        build: str,
        workdir: Path,
        tick_ms: int = 0,
        flow_idle_ticks: int = 30,
        asan: bool = False,
        netns: str | None = None,
        extra: tuple[str, ...] = (),
    ):
        self.build = build
        self.binary = netkeyd_binary(build, asan)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.control = self.workdir / "control.sock"
        self.admin_path = self.workdir / "admin.sock"
        self.log = self.workdir / "netkeyd.log"
        self.tick_ms = tick_ms
        self.flow_idle_ticks = flow_idle_ticks
        self.asan = asan
        self.netns = netns
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = AdminClient(str(self.admin_path), target=build)
        self.returncode: int | None = None

    def argv(self) -> list[str]:
        argv = [
            str(self.binary),
            "--control",
            str(self.control),
            "--admin",
            str(self.admin_path),
            "--log",
            str(self.log),
            "--tick-ms",
            str(self.tick_ms),
            "--flow-idle-ticks",
            str(self.flow_idle_ticks),
            *self.extra,
        ]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return argv

    def start(self, timeout: float = 10.0) -> Netkeyd:
        env = dict(os.environ)
        # Leaks are findings: LeakSanitizer fails the exit status at shutdown.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.stderr = open(self.workdir / "netkeyd.stderr", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(self.argv(), stderr=self.stderr, env=env)
        try:
            until(self._registers, "netkeyd answers PF_KEY REGISTER", timeout, 0.02,
                  alive=lambda: self.proc.poll() is None)  # fmt: skip
        except WaitTimeout as e:
            code = self.proc.poll()
            self.stop()
            why = f"exited with {code}" if code is not None else str(e)
            raise InfraError(f"netkeyd {why}: {self.tail()}", self.build, "start") from None
        return self

    def _registers(self) -> bool:
        try:
            with self.pfkey(timeout=0.5) as c:
                c.request(messages.register())
            return True
        except (InfraError, PfkeyTimeout):  # not listening yet, or slow to answer under load
            return False

    def pfkey(self, timeout: float = 10.0) -> PfkeyClient:
        return PfkeyClient(str(self.control), timeout=timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, n: int = 2000) -> str:
        text = ""
        for f in (self.workdir / "netkeyd.stderr", self.log):
            with contextlib.suppress(OSError):
                text += f.read_text(errors="replace")[-n:]
        return text.strip()

    def sanitizer_report(self) -> str:
        """What ASan/UBSan printed, if anything."""
        try:
            text = (self.workdir / "netkeyd.stderr").read_text(errors="replace")
        except OSError:
            return ""
        markers = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
        return text if any(m in text for m in markers) else ""

    def stop(self, timeout: float = 10.0) -> int | None:
        self.admin.close()
        if self.proc is None:
            return self.returncode
        terminate(self.proc, timeout)
        self.returncode = self.proc.returncode
        self.proc = None
        self.stderr.close()
        return self.returncode

    def __enter__(self) -> Netkeyd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
