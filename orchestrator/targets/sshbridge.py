"""SshBridge — one target's relay bridge over SSH: PF_KEY and stats through one ssh.

The bridge (`python -m orchestrator.targets.relay --daemon … -- ssh …`) runs ssh on a
socketpair, serves control.sock here, and records both PIDs (relay.pid, ssh.pid). The
relay on the far side exits when the channel closes. Used by ssh boards and by the
gateways of a multi-host lab's hosts.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import InfraError, SpdlabError
from orchestrator.lab.builds import firmware_dir
from orchestrator.runs import project_root
from orchestrator.targets import cleanup, sshconn
from orchestrator.targets.endpoints import UnixPfkeyEndpoint
from orchestrator.wait import WaitTimeout, until

if TYPE_CHECKING:
    from orchestrator.targets.base import TargetDriver

FILES = {"control": "control.sock", "admin": "admin.sock", "bridge_pid": "relay.pid",
         "ssh_pid": "ssh.pid", "log": "relay.log"}  # fmt: skip
START_TIMEOUT_S = 60.0


def build_static(builds: Iterable[str], env: Mapping[str, str] | None = None) -> None:
    """What goes over SSH: the static pfkey_relay, and a static netkeyd per firmware build
    (make's environment: `env`, default this process's)."""
    r = subprocess.run(["make", "-s", "-C", str(firmware_dir() / "relay")],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        raise InfraError(f"pfkey_relay build: {r.stderr.strip()[-300:]}", step="build")
    if builds := sorted(builds):
        from orchestrator.targets.dockerapi import make_static

        make_static(builds, env)


def files(d: Path) -> dict[str, Path]:
    """A bridged target's files here, in its folder under runs/<id>/targets/."""
    return {k: d / v for k, v in FILES.items()}


class SshBridge:
    """SshBridge — start, record, check and describe one target's bridge.

    Args:
        driver: the target's driver (run, state, environment, cancel).
        name: the target.
        config: the ssh_config its ssh uses (the PID check matches on it).
    """

    def __init__(self, driver: TargetDriver, name: str, config: Path):
        self.driver, self.name, self.config = driver, name, config
        self.files = files(driver.run.target_dir(name))

    def match(self, what: str) -> str:
        """A string only that process's command line holds (guards PID reuse)."""
        return str(self.files["control"]) if what == "bridge" else str(self.config)

    def argv(self, options: list[str], command: list[str]) -> list[str]:
        f = self.files
        return [sys.executable, "-m", "orchestrator.targets.relay", "--daemon",
                "--control", str(f["control"]), "--pidfile", str(f["bridge_pid"]),
                "--command-pidfile", str(f["ssh_pid"]), *options, "--", *command]  # fmt: skip

    def spawn(self, argv: list[str]) -> None:
        """Start the bridge; returns once it has daemonized, its PIDs recorded."""
        f = self.files
        for k in ("control", "admin", "bridge_pid", "ssh_pid"):
            f[k].unlink(missing_ok=True)
        with open(f["log"], "ab") as log:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, cwd=project_root(),
                               env=self.driver.spawn_env, timeout=60)  # fmt: skip
        self.record()
        if r.returncode != 0 or "bridge_pid" not in self.driver.state.targets[self.name]:
            raise InfraError(f"relay bridge did not start; {self.tail()}", self.name, "start")

    def record(self) -> None:
        """Record the bridge and its ssh by the PIDs their pidfiles name (also after a crash)."""
        for what in ("bridge", "ssh"):
            try:
                pid = int(self.files[f"{what}_pid"].read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            self.driver.state.record({"type": "process", "pid": pid, "match": self.match(what),
                                      "target": self.name})  # fmt: skip
            self.driver.state.set_target(self.name, **{f"{what}_pid": pid})

    def running(self, what: str = "bridge") -> bool:
        pid = self.driver.state.targets.get(self.name, {}).get(f"{what}_pid")
        return pid is not None and cleanup.process_matches(pid, self.match(what))

    def wait_register(self, endpoint: UnixPfkeyEndpoint, deadline: float,
                      cancel: Callable[[], bool]) -> None:  # fmt: skip
        """Until the far side answers PF_KEY REGISTER through the bridge."""
        f, last = self.files, ["no control socket"]

        def registered() -> bool:
            if cancel():
                raise KeyboardInterrupt
            self.record()
            if not self.running():
                raise InfraError(f"the relay's ssh ended; {self.tail()}", self.name, "start")
            if not (f["control"].exists() and f["admin"].exists()):
                return False
            try:
                with endpoint.connect(timeout=15.0) as c:
                    c.register()
                return True
            except (SpdlabError, OSError) as e:
                last[0] = str(e)
                return False

        try:
            until(registered, f"{self.name} answers PF_KEY REGISTER",
                  max(1.0, deadline - time.monotonic()))  # fmt: skip
        except WaitTimeout as e:
            raise InfraError(f"{e} ({last[0]}); {self.tail()}", self.name, "start") from None

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            text = self.files["log"].read_text(errors="replace").strip()
            why = sshconn.host_key_problem(text)
            lines = text.splitlines()[-3:]
            return (f"{why}: refusing to connect / " if why else "") + " / ".join(lines)
        return "no output"
