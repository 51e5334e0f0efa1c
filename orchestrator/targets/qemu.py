"""QemuDriver — runs a real Linux kernel per target in QEMU, reached through a PF_KEY relay.

Each target is one VM, x86_64 or arm64 (`arch:`), under TCG. Build `linux-af_key`
is Debian's stock kernel (`scripts/qemu-kernel.sh`) with an initramfs whose init
loads af_key, esp4, xfrm_user and drbg; a kernel build (kernels/builds.conf, or
the lab file's `kernels:`) is an all-built-in kernel from orchestrator.kernel. Both
run firmware/relay/pfkey_relay on a virtio-serial port. QEMU maps the port to
runs/<id>/targets/<name>/relay.sock; a bridge process on the host
(orchestrator.targets.relay) serves control.sock (SOCK_SEQPACKET, Linux sockaddr
flavour) and admin.sock, where orchestrator.targets.spdpoll answers `stats` and
`ticks` by polling SPDDUMP. Each VM has a virtio-net NIC on a tap in the lab switch's
namespace, plugged into its bridge (QEMU runs in that namespace to open it): the
traffic host's ESP reaches the guest's esp4 as it reaches a netns gateway.

There is no firmware to build: the kernel is the build.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.atomic import write_json
from orchestrator.errors import ConfigError, InfraError, SpdlabError
from orchestrator.runs import project_root
from orchestrator.targets import cleanup
from orchestrator.targets import preflight as pf
from orchestrator.targets.base import Health, TargetDriver
from orchestrator.targets.endpoints import UnixPfkeyEndpoint, UnixStatsEndpoint
from orchestrator.targets.labnet import BRIDGE, OnTheSwitch
from orchestrator.targets.qemuboot import (
    STOCK,
    Boot,
    Nic,
    arch_of,
    built,
    kernel_unmet,
    qemu_argv,
    qemu_binary,
    qemu_unmet,
    stock,
)
from orchestrator.targets.registry import KIND_BUILDS, register_kind

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab, TargetSpec

PORT_NAME = "spdlab.pfkey"
MEMORY_MB = 256
# TCG on a loaded machine boots slower (every VM of the lab): SPDLAB_QEMU_BOOT_S sets the limit.
BOOT_TIMEOUT_S = float(os.environ.get("SPDLAB_QEMU_BOOT_S", "300"))
# A TCG guest dumping thousands of policies on a loaded machine answers in seconds, not
# milliseconds: a generous limit per answer, for a stuck guest only.
ANSWER_TIMEOUT_S = 120.0
# A built kernel answers REGISTER well under a second after QEMU starts; each poll of the
# boot is a stat and two /proc reads, so a short interval costs nothing and loses no time.
BOOT_POLL_S = 0.02
MAX_UNIX_PATH = 107


def kernel_dir() -> Path:
    """.cache/qemu/current: vmlinuz and initramfs.gz from scripts/qemu-kernel.sh."""
    return project_root() / ".cache" / "qemu" / "current"


def prepare_kernel(env: Mapping[str, str] | None = None) -> Path:
    """Fetch the kernel and build the initramfs unless they are there and current.

    Args:
        env: the script's environment (default: this process's).

    Raises:
        InfraError: the script failed.
    """
    script = project_root() / "scripts" / "qemu-kernel.sh"
    r = subprocess.run([str(script)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise InfraError(f"{script.name}: {' / '.join(tail)}", step="provision")
    d = kernel_dir().resolve()
    if not (d / "vmlinuz").is_file() or not (d / "initramfs.gz").is_file():
        raise InfraError(f"{d}: no vmlinuz or initramfs.gz", step="provision")
    return d


@register_kind("qemu")
class QemuDriver(OnTheSwitch, TargetDriver):
    """QemuDriver — a real Linux kernel per target, in QEMU under TCG."""

    def tap(self, index: int) -> str:
        return f"s{self.run.short}q{index}"  # ≤ 15 characters up to index 999999

    def files(self, name: str) -> dict[str, Path]:
        """The target's sockets, pidfiles and logs, all under runs/<id>/targets/<name>/."""
        d = self.run.target_dir(name)
        return {
            "relay": d / "relay.sock",
            "control": d / "control.sock",
            "admin": d / "admin.sock",
            "qemu_pid": d / "qemu.pid",
            "bridge_pid": d / "relay.pid",
            "console": d / "console.log",
            "console_err": d / "qemu.log",
            "bridge_log": d / "relay.log",
            "boot": d / "boot.json",
        }

    # ------------------------------------------------------------ provision

    @classmethod
    def preconditions(cls, lab: ResolvedLab) -> list[pf.Unmet | None]:
        """QEMU for each arch, each kernel (fetched, cached, or its source), the relay's cc."""
        specs = cls.lab_specs(lab)
        arches = sorted({arch_of(t) for t in specs})
        kernels = sorted({(t.build, arch_of(t)) for t in specs})
        return [*pf.gateways("VMs on the lab switch"), *(qemu_unmet(a) for a in arches),
                *(kernel_unmet(lab, b, a, kernel_dir()) for b, a in kernels)]  # fmt: skip

    def provision(self) -> None:
        """Check socket paths, record the targets, build or fetch each kernel and initramfs."""
        builds = [*KIND_BUILDS["qemu"], *(self.lab.kernels if self.lab else ())]
        for t in self.specs:
            if t.build not in builds:
                raise InfraError(f"kind qemu runs builds {', '.join(builds)}", t.name, "provision")
            qemu_binary(arch_of(t))
            longest = str(self.files(t.name)["control"])
            if len(longest.encode()) > MAX_UNIX_PATH:
                raise InfraError(f"socket path too long for a Unix socket: {longest}", t.name)
        self.state.set_targets(
            {
                t.name: {
                    "kind": self.kind,
                    "build": t.build,
                    "address": str(t.address),
                    "dir": str(self.run.target_dir(t.name)),
                    "arch": arch_of(t),
                }
                for t in self.specs
            }
        )
        kernels = {(t.build, arch_of(t)): t for t in reversed(self.specs)}
        self.progress.phase("kernel", len(kernels))
        boots = {}
        for key in sorted(kernels):
            boots[key] = self._prepare(kernels[key])
            self.progress.advance("kernel")
        for t in self.specs:
            boot = boots[(t.build, arch_of(t))]
            self.state.set_target(t.name, kernel=boot.meta)
            self.files(t.name)["boot"].parent.mkdir(parents=True, exist_ok=True)
            write_json(self.files(t.name)["boot"], boot.as_dict())
        assert self.lab is not None
        self.state.record(*self.network.resources())
        self.network.up(self.lab, self.spawn_env)

    def _prepare(self, spec: TargetSpec) -> Boot:
        """The kernel and initramfs of one (build, arch), built or fetched once per run.

        Raises:
            ConfigError: the build's own input is wrong (a patch that does not apply).
        """
        try:
            if spec.build == STOCK:
                return stock(arch_of(spec), prepare_kernel(self.spawn_env))
            return built(self.lab, spec)
        except ConfigError as e:
            raise ConfigError(f"kernel {spec.build} ({arch_of(spec)}): {e}") from None

    # ------------------------------------------------------------ start

    def start(self) -> None:
        """Boot one VM per target, start its bridge; returns when each answers REGISTER."""
        self.progress.phase("boot", len(self.specs))
        for t in self.specs:
            boot = Boot(**json.loads(self.files(t.name)["boot"].read_text()))
            self._spawn(t.name, boot, t.build, t.tick_ms, self._plug(t))
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        for t in self.specs:
            self._wait_register(t.name, deadline)
            self.progress.advance("boot")

    def _plug(self, t: TargetSpec) -> Nic:
        """A tap in the switch's namespace, on its bridge, for the VM's NIC (recorded first)."""
        sw, tap = self.network.switch_ns, self.tap(t.index)
        self.state.record({"type": "link", "name": tap, "netns": sw, "what": "tap",
                           "target": t.name})  # fmt: skip
        self.state.set_target(t.name, tap=tap)
        steps = [
            ["ip", "-n", sw, "tuntap", "add", "dev", tap, "mode", "tap"],
            ["ip", "-n", sw, "link", "set", "dev", tap, "master", BRIDGE, "up"],
        ]
        if subprocess.run(["ip", "-n", sw, "link", "show", "dev", tap],
                          capture_output=True).returncode == 0:  # fmt: skip
            steps.pop(0)  # made already
        for argv in steps:
            r = subprocess.run(argv, capture_output=True, text=True, env=self.spawn_env)
            if r.returncode != 0:
                raise InfraError(f"{' '.join(argv)}: {r.stderr.strip()}", t.name, "network")
        from orchestrator.traffic.scenario import protected_host

        i = t.index
        mac = f"52:54:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
        assert self.lab is not None
        gw = str(self.lab.traffic_host.address)
        return Nic(tap, mac, f"{t.address}/{t.prefixlen}", f"{protected_host()}/32", gw)

    def _spawn(self, name: str, boot: Boot, build: str, tick_ms: int, nic: Nic) -> None:
        f = self.files(name)
        f["relay"].parent.mkdir(parents=True, exist_ok=True)
        logs = ("console", "console_err", "bridge_log", "boot")
        made = [p for k, p in f.items() if k not in logs]
        self.state.record(*({"type": "file", "path": str(p), "target": name} for p in made))
        for k in ("relay", "control", "admin", "qemu_pid", "bridge_pid"):
            f[k].unlink(missing_ok=True)
        with open(f["console"], "wb"):
            pass
        # Both daemonize: init reaps them, and each pidfile exists once its parent returns.
        argv = qemu_argv(boot, f, MEMORY_MB, PORT_NAME, nic)
        netns = ["ip", "netns", "exec", self.network.switch_ns]
        self._daemon(name, "qemu", [*netns, *argv, "-daemonize"], f["console_err"])
        bridge = [
            sys.executable, "-m", "orchestrator.targets.relay", "--daemon",
            "--guest", str(f["relay"]), "--control", str(f["control"]),
            "--admin", str(f["admin"]), "--pidfile", str(f["bridge_pid"]),
            "--kernel", boot.release, "--build", build, "--tick-ms", str(tick_ms),
            "--meta", str(f["boot"]),
        ]  # fmt: skip
        self._daemon(name, "bridge", bridge, f["bridge_log"])

    def _daemon(self, name: str, what: str, argv: list[str], log: Path) -> None:
        """Start a self-daemonizing process and record it by the PID its pidfile names."""
        pidfile = self.files(name)[f"{what}_pid"]
        with open(log, "ab") as out:
            try:
                r = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=project_root(), timeout=60, env=self.spawn_env,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                r = None
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None:
            self._record_process(name, pid, what)
        if r is None or r.returncode != 0 or pid is None:
            raise InfraError(f"{what} did not start; {self._tail(name)}", name, "start")

    def _match(self, name: str, what: str) -> str:
        """A string only that process's command line holds (guards PID reuse)."""
        f = self.files(name)
        return str(f["qemu_pid"]) if what == "qemu" else str(f["admin"])

    def _record_process(self, name: str, pid: int, what: str) -> None:
        self.state.record(
            {"type": "process", "pid": pid, "match": self._match(name, what), "target": name}
        )
        self.state.set_target(name, **{f"{what}_pid": pid})

    def _wait_register(self, name: str, deadline: float) -> None:
        from orchestrator.pfkey.client import PfkeyClient

        f = self.files(name)
        last = "no control socket"
        while time.monotonic() < deadline:
            if self.cancel():
                raise KeyboardInterrupt
            for what in ("qemu", "bridge"):
                pid = self.state.targets[name].get(f"{what}_pid")
                if pid is None or not cleanup.process_matches(pid, self._match(name, what)):
                    raise InfraError(f"{what} exited; {self._tail(name)}", name, "start")
            if f["control"].exists() and f["admin"].exists():
                try:
                    with PfkeyClient(str(f["control"]), timeout=15.0, flavour="linux") as c:
                        c.register()
                    return
                except (SpdlabError, OSError) as e:
                    last = str(e)
            time.sleep(BOOT_POLL_S)
        raise InfraError(f"no REGISTER answer in {BOOT_TIMEOUT_S:.0f}s ({last}); "
                         f"{self._tail(name)}", name, "start")  # fmt: skip

    def _tail(self, name: str) -> str:
        f = self.files(name)
        lines: list[str] = []
        for k in ("console", "console_err", "bridge_log"):
            with contextlib.suppress(OSError):
                lines += f[k].read_text(errors="replace").strip().splitlines()[-2:]
        return " / ".join(lines) or "no output"

    # ------------------------------------------------------------ while up

    def pfkey_endpoint(self, name: str) -> UnixPfkeyEndpoint:
        return UnixPfkeyEndpoint(str(self.files(name)["control"]), "relay", "linux",
                                 ANSWER_TIMEOUT_S)  # fmt: skip

    def stats_endpoint(self, name: str) -> UnixStatsEndpoint:
        return UnixStatsEndpoint(str(self.files(name)["admin"]), name, ANSWER_TIMEOUT_S)

    def health(self, name: str) -> Health:
        rec = self.state.targets.get(name, {})
        h = Health(name, self.kind, rec.get("build", "?"), False, pid=rec.get("qemu_pid"))
        if h.pid is None:
            h.reason = "never started"
        elif not cleanup.process_matches(h.pid, self._match(name, "qemu")):
            h.reason = f"qemu (pid {h.pid}) is not running"
        else:
            self.stats_health(h, name, timeout=10.0)
        return h

    def collect(self, name: str, dest: Path) -> list[Path]:
        """Copy the console, the bridge's log and boot.json; version, stats and policies."""
        out_dir = dest / name
        out_dir.mkdir(parents=True, exist_ok=True)
        got = []
        f = self.files(name)
        for k in ("console", "console_err", "bridge_log", "boot"):
            if f[k].exists() and f[k].parent != out_dir:
                got.append(Path(shutil.copy2(f[k], out_dir / f[k].name)))
        return got + self.collect_answers(name, out_dir)

    # ------------------------------------------------------------ down

    def _mine(self) -> list[dict[str, Any]]:
        names = set(self.names())
        return [r for r in self.state.resources() if r.get("target") in names]

    def _record_from_pidfiles(self) -> None:
        """After a crash mid-start: pick up PIDs that were written but never recorded."""
        for name in self.names():
            for what, key in (("qemu", "qemu_pid"), ("bridge", "bridge_pid")):
                try:
                    pid = int(self.files(name)[key].read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                self.state.record(
                    {"type": "process", "pid": pid, "match": self._match(name, what),
                     "target": name}
                )  # fmt: skip

    def stop(self) -> None:
        """Stop every recorded VM and bridge (by PID, checked against its command line)."""
        self._record_from_pidfiles()
        for r in self._mine():
            if r["type"] == "process":
                cleanup.remove(r)

    def teardown(self) -> list[str]:
        """Kill the recorded VMs and bridges, remove their sockets; idempotent."""
        self._record_from_pidfiles()
        return cleanup.remove_all(self._mine())
