"""NetnsDriver — runs gateways in network namespaces, set up by ansible.

On this machine, or on the lab hosts of a multi-host lab (`host:`): one playbook run
provisions every host over its SSH connection (strategy: free), and each remote gateway
is reached through a relay bridge whose ssh also forwards its admin socket
(targets/sshbridge.py), so control.sock and admin.sock sit in the same place here for
every gateway. A lab host that fails makes its own gateways INFRA-ERROR (`failed`); the
others run.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator import atomic
from orchestrator.errors import InfraError
from orchestrator.lab.builds import firmware_dir
from orchestrator.runs import project_root
from orchestrator.targets import cleanup, sshbridge, sshconn
from orchestrator.targets import preflight as pf
from orchestrator.targets.ansible import PlaybookResult, default_forks, run_playbook
from orchestrator.targets.base import Health, TargetDriver, TrafficHost
from orchestrator.targets.endpoints import UnixPfkeyEndpoint, UnixStatsEndpoint
from orchestrator.targets.labhost import GATEWAY_LIST, LabHost, entry
from orchestrator.targets.labnet import BRIDGE, OnTheSwitch
from orchestrator.targets.registry import register_kind
from orchestrator.targets.sshbridge import SshBridge

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
class NetnsDriver(OnTheSwitch, TargetDriver):
    """NetnsDriver — runs gateways in network namespaces on this machine."""

    # ---------------------------------------------------------------- names

    @property
    def switch_ns(self) -> str:
        return self.network.switch_ns

    @property
    def traffic_ns(self) -> str:
        return self.network.traffic_ns

    def netns(self, name: str) -> str:
        return f"spdlab-{self.run.short}-{name}"

    def veth(self, index: int) -> str:
        return f"s{self.run.short}g{index}"  # ≤ 15 characters up to index 999999

    def lab_host(self, host: str) -> LabHost:
        assert self.lab is not None, "a lab host needs the run's lab.json"
        return LabHost(self.run, self.lab.hosts[host])

    def lab_hosts(self) -> dict[str, LabHost]:
        """The lab hosts this run's gateways are placed on."""
        return {h: self.lab_host(h) for h in sorted({t.host for t in self.specs if t.host})}

    def remote(self) -> list[str]:
        """Gateways on lab hosts, as state.json records them."""
        return [n for n in self.names() if self.state.targets[n].get("host")]

    def bridge(self, name: str) -> SshBridge:
        return SshBridge(self, name, Path(self.state.targets[name]["config"]))

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
        lab, places = self.lab, self.lab_hosts()
        hosts = {
            t.name: {
                "spdlab_ns": self.netns(t.name),
                "spdlab_veth": self.veth(t.index),
                "spdlab_build": t.build,
                "spdlab_address": str(t.address),
                "spdlab_tick_ms": t.tick_ms,
                "spdlab_flow_idle_ticks": t.flow_idle_ticks,
                "spdlab_target_dir": str(self.run.target_dir(t.name)),
                **(self._remote_vars(places[t.host], t.name) if t.host else {}),
            }
            for t in self.specs
        }
        network: dict[str, Any] = {CONTROLLER: {}} if any(not t.host for t in self.specs) else {}
        for h, place in places.items():
            spaces = [place.network.switch_ns, place.network.traffic_ns]
            spaces += [self.netns(t.name) for t in self.specs if t.host == h]
            network[entry(h)] = place.host_vars(spaces)
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
                    "lab_network": {"hosts": network},
                    "netns_gateway": {"hosts": hosts},
                },
            }
        }

    @staticmethod
    def _remote_vars(place: LabHost, name: str) -> dict[str, Any]:
        return {**place.connection_vars(), "spdlab_target_dir": place.target_dir(name)}

    def write_inventory(self) -> Path:
        """runs/<id>/inventory.yml, usable by ansible-playbook on its own, and next to it
        the gateway list the batched tasks read (a template task would cost a module run):
        this machine's, and one per lab host, which travels in its tools' tar (pack)."""
        inv = self.inventory()
        hosts = inv["all"]["children"]["netns_gateway"]["hosts"]
        places = self.lab_hosts()
        atomic.write_text(self.gateway_list, self._gateway_rows(hosts, ""))
        for h, place in places.items():
            place.local.mkdir(parents=True, exist_ok=True)
            atomic.write_text(place.local / GATEWAY_LIST, self._gateway_rows(hosts, h))
            inv["all"]["children"]["lab_network"]["hosts"][entry(h)]["spdlab_gateway_list"] = (
                f"{place.dir}/{GATEWAY_LIST}"
            )
        inv["all"]["vars"]["spdlab_gateway_list"] = str(self.gateway_list)
        atomic.write_text(self.run.inventory, yaml.safe_dump(inv, sort_keys=False))
        return self.run.inventory

    @staticmethod
    def _gateway_rows(hosts: dict[str, dict[str, Any]], host: str) -> str:
        """The list of the gateways on `host` ("": this machine), paths as seen there."""
        fw = firmware_dir()
        rows = [
            (name, h["spdlab_ns"], h["spdlab_veth"], h["spdlab_address"],
             h["spdlab_target_dir"],
             f"{h.get('spdlab_firmware_dir', fw)}/build/{h['spdlab_build']}/netkeyd",
             str(h["spdlab_tick_ms"]), str(h["spdlab_flow_idle_ticks"]))
            for name, h in hosts.items() if h.get("spdlab_host", "") == host
        ]  # fmt: skip
        return "".join("\t".join(r) + "\n" for r in rows)

    @property
    def gateway_list(self) -> Path:
        """gateways.sh's list: a gateway a line, NAME NS VETH ADDR TDIR BIN TICK_MS IDLE."""
        return self.run.path / "netns_gateways.tsv"

    def _record_network(self) -> None:
        sw = self.switch_ns
        local = [t for t in self.specs if not t.host]
        res: list[dict[str, Any]] = self.network.resources() if local else []
        for t in local:
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
        self._record_hosts()
        self.write_inventory()
        self._pack_hosts()
        self._record_network()
        n = len(self.specs)
        self.progress.phase("build", 1)
        self.progress.phase("network", n + max(1, len(self.lab_hosts()) + 1))
        try:
            self._playbook("up.yml", "up-provision", ["provision"], "provision")
        finally:
            for place in self.lab_hosts().values():
                place.clean_local()

    def _record_hosts(self) -> None:
        """Each lab host (its ssh_config, its tools' tar) and its gateways' files here."""
        places = self.lab_hosts()
        for place in places.values():
            self.state.record(place.resource())
            place.write_config()
        for t in self.specs:
            if t.host:
                place = places[t.host]
                self.state.set_target(t.name, host=t.host, host_dir=place.target_dir(t.name),
                                      config=str(place.config), alias=place.alias)  # fmt: skip
                self.run.target_dir(t.name).mkdir(parents=True, exist_ok=True)
                f = self.bridge(t.name).files
                keys = ("control", "admin", "bridge_pid", "ssh_pid")
                self.state.record(
                    *({"type": "file", "path": str(f[k]), "target": t.name} for k in keys)
                )

    def _pack_hosts(self) -> None:
        """Each lab host's tools' tar, with its gateway list (write_inventory)."""
        places = self.lab_hosts()
        if places:
            sshbridge.build_static({t.build for t in self.specs if t.host}, self.spawn_env)
            for h, place in places.items():
                place.pack(sorted({t.build for t in self.specs if t.host == h}))

    def start(self) -> None:
        """Start netkeyd in every gateway; returns when each answers PF_KEY REGISTER."""
        live = [t for t in self.specs if t.name not in self.failed]
        # one record for all: each save rewrites state.json, so one per target is O(N^2)
        self.state.record(*(
            {"type": "file", "path": str(self.files(t.name)[k])}
            for t in live if not t.host for k in ("control", "admin", "pid")
        ))  # fmt: skip
        self.progress.phase("start", len(live))
        try:
            if live:
                self._playbook("up.yml", "up-start", ["start"], "start", self._entries(live))
        finally:
            self._record_processes()
        self._bridges([t for t in live if t.host and t.name not in self.failed])

    def _bridges(self, specs: list) -> None:
        """One relay bridge per remote gateway: PF_KEY over ssh, admin.sock forwarded."""
        for t in specs:
            rec = self.state.targets[t.name]
            relay = f"{self.lab_host(t.host).dir}/pfkey_relay"
            ssh = sshconn.relay_argv(Path(rec["config"]), rec["alias"], rec["host_dir"],
                                     self.files(t.name)["admin"], relay)  # fmt: skip
            b = self.bridge(t.name)
            self._on_host(t.name, lambda b=b, ssh=ssh: b.spawn(b.argv([], ssh)))
        deadline = time.monotonic() + sshbridge.START_TIMEOUT_S
        for t in specs:
            if t.name not in self.failed:
                ep, b = self.pfkey_endpoint(t.name), self.bridge(t.name)
                self._on_host(t.name, lambda b=b, ep=ep: b.wait_register(ep, deadline, self.cancel))

    @staticmethod
    def _entries(specs: Iterable[Any]) -> list[str]:
        """The lab_network entries whose batched steps run these gateways."""
        return sorted({entry(t.host) if t.host else CONTROLLER for t in specs})

    def _on_host(self, name: str, step: Any) -> None:
        """A remote gateway's step: when it fails, that gateway is INFRA-ERROR, not the lab."""
        try:
            step()
        except InfraError as e:
            host = self.state.targets[name]["host"]
            self.failed[name] = f"lab host {host}: {e}"

    def _record_processes(self) -> None:
        """Record every started netkeyd by PID (read back from its pidfile), in one save;
        the remote gateways' bridges too."""
        for name in self.remote():
            self.bridge(name).record()
        found = self._pids(t.name for t in self.specs if not t.host)
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

    def _playbook(self, playbook: str, ident: str, tags: Sequence[str], step: str,
                  limit: Sequence[str] = ()) -> None:  # fmt: skip
        def on_task(host: str, task: str, status: str) -> None:
            phase = PHASE_OF_TASK.get(task)
            if phase is not None and status in ("ok", "failed", "unreachable"):
                self.progress.advance(phase, batch.get(host, 0) if task in BATCH_TASKS else 1)

        # a batched task does one step for every gateway of its host
        batch = Counter(entry(t.host) if t.host else CONTROLLER for t in self.specs)

        result = run_playbook(
            playbook,
            inventory=self.run.inventory,
            private_data_dir=self.run.ansible_dir,
            ident=ident,
            forks=default_forks(len(self.specs) + len(self.lab_hosts()) + 1),
            tags=tags,
            on_task=on_task,
            cancel=self.cancel,
            env=self.marker_env,
            limit=limit,
        )
        for place in self.lab_hosts().values():
            place.close_mux()
        self._check_result(self._host_failures(result), step)

    def _host_failures(self, result: PlaybookResult) -> PlaybookResult:
        """Failures on lab hosts become their gateways' own; the rest stays the lab's."""
        hosts = {t.name: t.host for t in self.specs if t.host}
        down = {h: result.failures.get(entry(h), "failed") for h in self.lab_hosts()
                if entry(h) in result.failed_hosts()}  # fmt: skip
        for name, h in hosts.items():
            if h in down:
                self.failed.setdefault(name, f"lab host {h}: {self._reason(down[h])}")
            elif name in result.failed_hosts():
                why = self._reason(result.failures.get(name, "failed"))
                self.failed.setdefault(name, f"lab host {h}: {why}")
        mine = {*hosts, *(entry(h) for h in self.lab_hosts())}
        left = {h: m for h, m in result.failures.items() if h not in mine}
        stats = {k: {h: n for h, n in v.items() if h not in mine} for k, v in result.stats.items()}
        status = result.status if left or result.status == "canceled" else "successful"
        return PlaybookResult(status, result.rc, stats, left, result.artifacts)

    @staticmethod
    def _reason(message: str) -> str:
        why = sshconn.host_key_problem(message, "lab host")
        return f"{why}: refusing to connect ({message.strip()[-200:]})" if why else message

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
        if rec.get("host"):
            b = self.bridge(name)
            if b.running("bridge") and b.running("ssh"):
                return self.stats_health(h, name, timeout=10.0)
            h.reason = f"the relay's ssh to lab host {rec['host']} is not running"
        elif h.pid is None:
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
        rec = self.state.targets.get(name, {})
        if rec.get("host"):
            argv = [
                "ssh",
                "-F",
                rec["config"],
                "-T",
                rec["alias"],
                f"cat {rec['host_dir']}/netkeyd.log",
            ]
            rc, out, _ = sshconn.run_argv(argv, None, 30.0)
            if rc == 0:
                (out_dir / log.name).write_text(out)
                got.append(out_dir / log.name)
        elif log.exists():
            got.append(Path(shutil.copy2(log, out_dir / log.name)))
        return got + self.collect_answers(name, out_dir)

    def traffic_host(self, name: str) -> TrafficHost:
        rec = self.state.targets.get(name, {})
        if not rec.get("host"):
            return TrafficHost("", self.traffic_ns)
        place = self.lab_host(rec["host"])
        return TrafficHost(place.name, place.network.traffic_ns, place)

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
        for name in self.remote():
            self.bridge(name).record()
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
                    forks=default_forks(
                        len(self.names()) + len(self.state.resources("lab_host")) + 1
                    ),
                    on_task=on_task,
                    env=self.marker_env,
                )
            if self.lab is not None:
                for place in self.lab_hosts().values():
                    place.close_mux()
        return cleanup.remove_all(self.state.resources())
