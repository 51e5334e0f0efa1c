"""NetnsDriver — runs gateways in network namespaces on this machine, set up by ansible."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator import atomic
from orchestrator.errors import InfraError
from orchestrator.lab.builds import firmware_dir
from orchestrator.runs import project_root
from orchestrator.targets import cleanup
from orchestrator.targets import preflight as pf
from orchestrator.targets.ansible import PlaybookResult, default_forks, run_playbook
from orchestrator.targets.base import Health, TargetDriver
from orchestrator.targets.endpoints import UnixPfkeyEndpoint, UnixStatsEndpoint
from orchestrator.targets.labnet import BRIDGE, LabNetwork
from orchestrator.targets.registry import register_kind

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab

CONTROLLER = "_controller"
RESERVED = ("sw", "th")
# Task name (see playbooks/roles) → progress phase.
PHASE_OF_TASK = {
    "Build the firmware builds the lab uses": "build",
    "Switch namespace, bridge and traffic host": "network",
    "Every gateway's namespace, veth and address": "network",
    "Start every netkeyd and wait for PF_KEY REGISTER": "start",
}
# The tasks that do one step for every gateway at once: progress by the gateway count.
BATCH_TASKS = {"Every gateway's namespace, veth and address",
               "Start every netkeyd and wait for PF_KEY REGISTER",
               "Stop every netkeyd, remove the gateway namespaces and their veths"}  # fmt: skip
MAX_UNIX_PATH = 107


@register_kind("netns")
class NetnsDriver(TargetDriver):
    """NetnsDriver — runs gateways in network namespaces on this machine."""

    # ---------------------------------------------------------------- names

    @property
    def network(self) -> LabNetwork:
        """The lab's switch and traffic host, shared with other kinds on the switch."""
        return LabNetwork(self.run.short)

    @property
    def switch_ns(self) -> str:
        return self.network.switch_ns

    @property
    def traffic_ns(self) -> str:
        return self.network.traffic_ns

    def traffic_netns(self) -> str:
        return self.traffic_ns

    def netns(self, name: str) -> str:
        return f"spdlab-{self.run.short}-{name}"

    def veth(self, index: int) -> str:
        return f"s{self.run.short}g{index}"  # ≤ 15 characters up to index 999999

    def files(self, name: str) -> dict[str, Path]:
        """The target's sockets, pidfile and log, all under runs/<id>/targets/<name>/."""
        d = self.run.target_dir(name)
        return {
            "control": d / "control.sock",
            "admin": d / "admin.sock",
            "pid": d / "netkeyd.pid",
            "log": d / "netkeyd.log",
        }

    # ------------------------------------------------------------ provision

    @classmethod
    def preconditions(cls, lab: ResolvedLab) -> list[pf.Unmet | None]:
        """Namespaces and veths (root), the firmware's toolchain, ansible-runner."""
        return [*pf.gateways("network namespaces"), pf.module("ansible_runner", "make venv")]

    def _check(self) -> None:
        for t in self.specs:
            if t.name in RESERVED:
                raise InfraError(f"target name '{t.name}' is reserved by the netns driver", t.name)
            longest = str(self.files(t.name)["control"])
            if len(longest.encode()) > MAX_UNIX_PATH:
                raise InfraError(f"socket path too long for a Unix socket: {longest}", t.name)

    def inventory(self) -> dict[str, Any]:
        """The ansible inventory for this run: a controller host and one host per gateway."""
        assert self.lab is not None
        lab = self.lab
        hosts = {
            t.name: {
                "spdlab_ns": self.netns(t.name),
                "spdlab_veth": self.veth(t.index),
                "spdlab_build": t.build,
                "spdlab_address": str(t.address),
                "spdlab_tick_ms": t.tick_ms,
                "spdlab_flow_idle_ticks": t.flow_idle_ticks,
                "spdlab_target_dir": str(self.run.target_dir(t.name)),
            }
            for t in self.specs
        }
        common = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "spdlab_root": str(project_root()),
            "spdlab_firmware_dir": str(firmware_dir()),
            "spdlab_run_id": self.run.run_id,
            "spdlab_run_dir": str(self.run.path),
            "spdlab_switch_ns": self.switch_ns,
            "spdlab_bridge": BRIDGE,
            "spdlab_prefixlen": lab.range.prefixlen,
            "spdlab_builds": sorted({t.build for t in self.specs}),
            "spdlab_traffic_ns": self.traffic_ns,
            "spdlab_traffic_veth": self.network.traffic_veth,
            "spdlab_traffic_address": str(lab.traffic_host.address),
        }
        return {
            "all": {
                "vars": common,
                "children": {
                    "controller": {"hosts": {CONTROLLER: {}}},
                    "netns_gateway": {"hosts": hosts},
                },
            }
        }

    def write_inventory(self) -> Path:
        """runs/<id>/inventory.yml, usable by ansible-playbook on its own, and next to it
        the gateway list the batched tasks read (a template task would cost a module run)."""
        inv = self.inventory()
        hosts = inv["all"]["children"]["netns_gateway"]["hosts"]
        fw = firmware_dir() / "build"
        rows = [
            (name, h["spdlab_ns"], h["spdlab_veth"], h["spdlab_address"],
             h["spdlab_target_dir"], str(fw / h["spdlab_build"] / "netkeyd"),
             str(h["spdlab_tick_ms"]), str(h["spdlab_flow_idle_ticks"]))
            for name, h in hosts.items()
        ]  # fmt: skip
        atomic.write_text(self.gateway_list, "".join("\t".join(r) + "\n" for r in rows))
        inv["all"]["vars"]["spdlab_gateway_list"] = str(self.gateway_list)
        atomic.write_text(self.run.inventory, yaml.safe_dump(inv, sort_keys=False))
        return self.run.inventory

    @property
    def gateway_list(self) -> Path:
        """gateways.sh's list: a gateway a line, NAME NS VETH ADDR TDIR BIN TICK_MS IDLE."""
        return self.run.path / "netns_gateways.tsv"

    def _record_network(self) -> None:
        sw = self.switch_ns
        res: list[dict[str, Any]] = self.network.resources()
        for t in self.specs:
            res.append({"type": "netns", "name": self.netns(t.name), "target": t.name})
            res.append({"type": "link", "name": self.veth(t.index), "netns": sw, "what": "veth"})
        self.state.record(*res)

    def provision(self) -> None:
        """Build firmware, create the switch, the traffic host and every gateway namespace."""
        self._check()
        self.state.set_targets(
            {
                t.name: {
                    "kind": self.kind,
                    "build": t.build,
                    "address": str(t.address),
                    "netns": self.netns(t.name),
                    "dir": str(self.run.target_dir(t.name)),
                }
                for t in self.specs
            }
        )
        self.write_inventory()
        self._record_network()
        n = len(self.specs)
        self.progress.phase("build", 1)
        self.progress.phase("network", n + 1)
        self._playbook("up.yml", "up-provision", ["provision"], "provision")

    def start(self) -> None:
        """Start netkeyd in every gateway; returns when each answers PF_KEY REGISTER."""
        # one record for all: each save rewrites state.json, so one per target is O(N^2)
        self.state.record(*(
            {"type": "file", "path": str(self.files(t.name)[k])}
            for t in self.specs for k in ("control", "admin", "pid")
        ))  # fmt: skip
        self.progress.phase("start", len(self.specs))
        try:
            self._playbook("up.yml", "up-start", ["start"], "start")
        finally:
            self._record_processes()

    def _record_processes(self) -> None:
        """Record every started netkeyd by PID (read back from its pidfile), in one save."""
        found = self._pids(t.name for t in self.specs)
        self.state.record(*(
            {"type": "process", "pid": pid, "match": str(self.files(name)["control"]),
             "target": name}
            for name, pid in found.items()
        ))  # fmt: skip
        self.state.set_targets({name: {"pid": pid} for name, pid in found.items()})

    def _pids(self, names: Iterable[str]) -> dict[str, int]:
        """Target name → the PID its pidfile names, for the targets that have one."""
        out = {}
        for name in names:
            try:
                out[name] = int(self.files(name)["pid"].read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return out

    def _playbook(self, playbook: str, ident: str, tags: Sequence[str], step: str) -> None:
        def on_task(host: str, task: str, status: str) -> None:
            phase = PHASE_OF_TASK.get(task)
            if phase is not None and status in ("ok", "failed", "unreachable"):
                self.progress.advance(phase, len(self.specs) if task in BATCH_TASKS else 1)

        result = run_playbook(
            playbook,
            inventory=self.run.inventory,
            private_data_dir=self.run.ansible_dir,
            ident=ident,
            forks=default_forks(len(self.specs) + 1),
            tags=tags,
            on_task=on_task,
            cancel=self.cancel,
            env=self.marker_env,
        )
        self._check_result(result, step)

    def _check_result(self, result: PlaybookResult, step: str) -> None:
        if result.status == "canceled":
            raise KeyboardInterrupt
        bad = result.failed_hosts()
        if not bad and result.status == "successful":
            return
        if not bad:
            msg = f"ansible-playbook ended {result.status} (rc {result.rc}); see {result.artifacts}"
            raise InfraError(msg, step=step)
        lines = [f"{h}: {result.failures.get(h, 'failed')}" for h in bad]
        first = bad[0] if bad[0] != CONTROLLER else None
        raise InfraError("; ".join(lines), target=first if len(bad) == 1 else None, step=step)

    # ------------------------------------------------------------ while up

    def pfkey_endpoint(self, name: str) -> UnixPfkeyEndpoint:
        return UnixPfkeyEndpoint(str(self.run.target_dir(name) / "control.sock"))

    def stats_endpoint(self, name: str) -> UnixStatsEndpoint:
        return UnixStatsEndpoint(str(self.run.target_dir(name) / "admin.sock"), target=name)

    def health(self, name: str) -> Health:
        rec = self.state.targets.get(name, {})
        h = Health(name, self.kind, rec.get("build", "?"), False, pid=rec.get("pid"))
        control = str(self.run.target_dir(name) / "control.sock")
        if h.pid is None:
            h.reason = "never started"
        elif not cleanup.process_matches(h.pid, control):
            h.reason = f"netkeyd (pid {h.pid}) is not running"
        else:
            self.stats_health(h, name)
        return h

    def collect(self, name: str, dest: Path) -> list[Path]:
        """Copy the log, and dump stats and policies if netkeyd answers."""
        out_dir = dest / name
        out_dir.mkdir(parents=True, exist_ok=True)
        got = []
        log = self.run.target_dir(name) / "netkeyd.log"
        if log.exists():
            got.append(Path(shutil.copy2(log, out_dir / log.name)))
        return got + self.collect_answers(name, out_dir)

    # ------------------------------------------------------------ down

    def stop(self) -> None:
        """Stop every recorded netkeyd (by PID, checked against its command line)."""
        self._record_processes_from_state()
        for r in self.state.resources("process"):
            cleanup.remove(r)

    def _record_processes_from_state(self) -> None:
        """After a crash mid-start: pick up PIDs from pidfiles that were never recorded."""
        self.state.record(*(
            {"type": "process", "pid": pid, "match": str(self.files(name)["control"]),
             "target": name}
            for name, pid in self._pids(self.names()).items()
        ))  # fmt: skip

    def teardown(self) -> list[str]:
        """down.yml through ansible, then remove whatever state.json still lists."""
        self._record_processes_from_state()
        if self.state.phase != "down" and self.run.inventory.exists() and self.names():
            self.progress.phase("down", len(self.names()) + 1)
            ident = f"down-{len(list(self.run.ansible_dir.glob('artifacts/down*')))}"

            def on_task(host: str, task: str, status: str) -> None:
                self.progress.advance("down", len(self.names()) if task in BATCH_TASKS else 1)

            # the sweep below removes whatever the playbook did not
            with contextlib.suppress(Exception):
                run_playbook(
                    "down.yml",
                    inventory=self.run.inventory,
                    private_data_dir=self.run.ansible_dir,
                    ident=ident,
                    forks=default_forks(len(self.names()) + 1),
                    on_task=on_task,
                    env=self.marker_env,
                )
        return cleanup.remove_all(self.state.resources())
