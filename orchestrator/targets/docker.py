"""DockerDriver — runs gateways as containers of a FROM scratch netkeyd image.

Each container starts with no network (`network_mode="none"`) and the run's targets/<name>/
folder mounted at /spdlab, where netkeyd puts its control and admin sockets, pidfile and log,
so every PF_KEY and admin client talks to it as to a netns gateway. netkeyd binds --esp and
--natt to the target address before that address exists (ip_nonlocal_bind, set in the
container's namespace only); the driver then creates a veth from the lab's switch into the
container by its PID and gives it the address. The switch and the traffic host are the
LabNetwork every kind on the switch shares, so a lab may mix docker and netns targets, and a
docker-only lab still has its traffic host.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InfraError, SpdlabError
from orchestrator.targets import cleanup
from orchestrator.targets import preflight as pf
from orchestrator.targets.base import Health, TargetDriver
from orchestrator.targets.dockerapi import (
    LABEL,
    RUN_LABEL,
    container_logs,
    daemon_unmet,
    docker_client,
    ensure_image,
    image_tag,
    make_static,
)
from orchestrator.targets.endpoints import UnixPfkeyEndpoint, UnixStatsEndpoint
from orchestrator.targets.labnet import BRIDGE, OnTheSwitch
from orchestrator.targets.registry import register_kind
from orchestrator.wait import WaitTimeout, until

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab, TargetSpec

MOUNT = "/spdlab"  # the target's folder inside its container
READY_TIMEOUT = 20.0
MAX_UNIX_PATH = 107
# The target's files, in runs/<id>/targets/<name>/ on the host and in MOUNT inside.
FILES = {
    "control": "control.sock",
    "admin": "admin.sock",
    "pid": "netkeyd.pid",
    "log": "netkeyd.log",
}


@register_kind("docker")
class DockerDriver(OnTheSwitch, TargetDriver):
    """DockerDriver — runs gateways as containers of a FROM scratch netkeyd image."""

    def container_name(self, name: str) -> str:
        return f"spdlab-{self.run.short}-{name}"

    def veth(self, index: int) -> str:
        return f"s{self.run.short}d{index}"  # ≤ 15 characters up to index 999999

    def files(self, name: str) -> dict[str, Path]:
        d = self.run.target_dir(name)
        return {k: d / f for k, f in FILES.items()}

    # ------------------------------------------------------------ provision

    @classmethod
    def preconditions(cls, lab: ResolvedLab) -> list[pf.Unmet | None]:
        """The lab switch's needs, nsenter to plug each container in, a dockerd that answers."""
        return [*pf.gateways("containers on the lab switch"), pf.command("nsenter", "util-linux"),
                pf.module("docker", "make venv"), daemon_unmet()]  # fmt: skip

    def provision(self) -> None:
        """Static firmware, one image per build, the lab network, then one container each."""
        assert self.lab is not None
        for t in self.specs:
            if len(str(self.files(t.name)["control"]).encode()) > MAX_UNIX_PATH:
                raise InfraError("socket path too long for a Unix socket", t.name, "provision")
        self.state.set_targets(
            {
                t.name: {
                    "kind": self.kind,
                    "build": t.build,
                    "address": str(t.address),
                    "container": self.container_name(t.name),
                    "dir": str(self.run.target_dir(t.name)),
                }
                for t in self.specs
            }
        )
        builds = sorted({t.build for t in self.specs})
        self.progress.phase("build", len(builds) + 1)
        make_static(builds, self.spawn_env)
        self.progress.advance("build")
        client = docker_client("provision")
        for b in builds:
            self._checkpoint()
            ensure_image(client, b)
            self.progress.advance("build")
        for t in self.specs:
            self.state.set_target(t.name, image=image_tag(t.build))
        self.progress.phase("network", len(self.specs) + 1)
        self.state.record(*self.network.resources())
        self.network.up(self.lab, self.spawn_env)
        self.progress.advance("network")
        for t in self.specs:
            self._checkpoint()
            self._create(client, t)
            self.progress.advance("network")

    def _create(self, client: Any, t: TargetSpec) -> None:
        import docker

        name = self.container_name(t.name)
        self.state.record(
            {"type": "container", "name": name, "run": self.run.run_id, "target": t.name}
        )
        d = self.run.target_dir(t.name)
        d.mkdir(parents=True, exist_ok=True)
        argv = [
            *("--control", f"{MOUNT}/{FILES['control']}", "--admin", f"{MOUNT}/{FILES['admin']}"),
            *("--log", f"{MOUNT}/{FILES['log']}", "--pidfile", f"{MOUNT}/{FILES['pid']}"),
            *("--tick-ms", str(t.tick_ms), "--flow-idle-ticks", str(t.flow_idle_ticks)),
            *("--esp", str(t.address), "--natt", str(t.address)),
        ]
        try:
            c = client.containers.create(
                image_tag(t.build),
                argv,
                name=name,
                network_mode="none",
                sysctls={"net.ipv4.ip_nonlocal_bind": "1"},
                volumes={str(d): {"bind": MOUNT, "mode": "rw"}},
                labels={RUN_LABEL: self.run.run_id, f"{LABEL}.target": t.name},
            )
        except docker.errors.DockerException as e:
            raise InfraError(f"container {name}: {e}", t.name, "provision") from e
        self.state.set_target(t.name, container_id=c.id)

    # ------------------------------------------------------------ start

    def start(self) -> None:
        """Start every container, plug it into the switch, wait for PF_KEY REGISTER."""
        client = docker_client("start")
        self.progress.phase("start", len(self.specs))
        for t in self.specs:
            f = self.files(t.name)
            self.state.record(
                *({"type": "file", "path": str(f[k])} for k in ("control", "admin", "pid")),
                {"type": "link", "name": self.veth(t.index), "netns": self.network.switch_ns,
                 "what": "veth"},
            )  # fmt: skip
            for k in ("control", "admin", "pid"):
                f[k].unlink(missing_ok=True)
            self._checkpoint()
            c = self._container(client, t.name, "start")
            try:
                c.start()
                c.reload()
            except Exception as e:
                raise InfraError(f"container {c.name}: {e}", t.name, "start") from e
            pid = int(c.attrs["State"]["Pid"])
            if not pid:
                raise InfraError(f"container {c.name} exited: {container_logs(c)}", t.name, "start")
            self.state.set_target(t.name, pid=pid)
            self._plug(t, pid)
        for t in self.specs:
            self._wait_ready(client, t.name)
            self.progress.advance("start")

    def _plug(self, t: TargetSpec, pid: int) -> None:
        """A veth from the switch's bridge to eth0 in the container, with the target address."""
        sw, veth = self.network.switch_ns, self.veth(t.index)
        inside = ["nsenter", "-t", str(pid), "-n", "ip"]
        steps = [
            ["ip", "-n", sw, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
             "netns", str(pid)],
            ["ip", "-n", sw, "link", "set", "dev", veth, "master", BRIDGE, "up"],
            [*inside, "link", "set", "lo", "up"],
            [*inside, "addr", "replace", f"{t.address}/{t.prefixlen}", "dev", "eth0"],
            [*inside, "link", "set", "dev", "eth0", "up"],
        ]  # fmt: skip
        show = ["ip", "-n", sw, "link", "show", "dev", veth]
        if subprocess.run(show, capture_output=True).returncode == 0:
            steps.pop(0)  # plugged already
        for argv in steps:
            r = subprocess.run(argv, capture_output=True, text=True, env=self.spawn_env)
            if r.returncode != 0:
                raise InfraError(f"{' '.join(argv)}: {r.stderr.strip()}", t.name, "network")

    def _wait_ready(self, client: Any, name: str) -> None:
        from orchestrator.pfkey import messages
        from orchestrator.pfkey.client import PfkeyClient

        control = str(self.files(name)["control"])
        last = ["no answer"]

        def ready() -> bool:
            self._checkpoint()
            try:
                with PfkeyClient(control, timeout=1.0) as pk:
                    pk.request(messages.register())
                return True
            except (SpdlabError, OSError) as e:
                last[0] = str(e)
            c = self._container(client, name, "start")
            if c.status not in ("created", "running"):
                raise InfraError(f"container {c.name} {c.status}: {container_logs(c)}", name,
                                 "start")  # fmt: skip
            return False

        try:
            until(ready, f"{control} answers REGISTER", READY_TIMEOUT)
        except WaitTimeout:
            raise InfraError(f"{control}: not ready after {READY_TIMEOUT:g}s: {last[0]}", name,
                             "start") from None  # fmt: skip

    def _container(self, client: Any, name: str, step: str) -> Any:
        import docker

        try:
            return client.containers.get(self.container_name(name))
        except docker.errors.DockerException as e:
            raise InfraError(f"container {self.container_name(name)}: {e}", name, step) from e

    def _checkpoint(self) -> None:
        if self.cancel():
            raise KeyboardInterrupt

    # ------------------------------------------------------------ while up

    def pfkey_endpoint(self, name: str) -> UnixPfkeyEndpoint:
        return UnixPfkeyEndpoint(str(self.files(name)["control"]))

    def stats_endpoint(self, name: str) -> UnixStatsEndpoint:
        return UnixStatsEndpoint(str(self.files(name)["admin"]), target=name)

    def health(self, name: str) -> Health:
        rec = self.state.targets.get(name, {})
        h = Health(name, self.kind, rec.get("build", "?"), False, pid=rec.get("pid"))
        try:
            c = self._container(docker_client("status"), name, "status")
        except InfraError as e:
            h.reason = str(e)
            return h
        if c.status != "running":
            h.reason = f"container {c.name} is {c.status}"
            return h
        return self.stats_health(h, name)

    def collect(self, name: str, dest: Path) -> list[Path]:
        """Copy the log and the container's output; dump stats and policies if it answers."""
        out_dir = dest / name
        out_dir.mkdir(parents=True, exist_ok=True)
        got = []
        log = self.files(name)["log"]
        if log.exists():
            got.append(Path(shutil.copy2(log, out_dir / log.name)))
        with contextlib.suppress(InfraError):
            c = self._container(docker_client("collect"), name, "collect")
            path = out_dir / "container.log"
            path.write_text(container_logs(c, tail="all"))
            got.append(path)
        return got + self.collect_answers(name, out_dir)

    # ------------------------------------------------------------ down

    def stop(self) -> None:
        """Stop every recorded container (SIGTERM: netkeyd removes its sockets)."""
        resources = self.state.resources("container")
        if not resources:
            return
        with contextlib.suppress(InfraError):
            client = docker_client("stop")
            for r in resources:
                with contextlib.suppress(Exception):
                    c = client.containers.get(r["name"])
                    if (c.labels or {}).get(RUN_LABEL) == r["run"] and c.status == "running":
                        c.stop(timeout=2)

    def teardown(self) -> list[str]:
        """Stop and remove the containers, then whatever else state.json lists."""
        self.stop()
        self._record_labelled()
        return cleanup.remove_all(self.state.resources())

    def _record_labelled(self) -> None:
        """Record containers that carry this run's label but were never recorded by name.

        A create interrupted mid-request can still finish in the daemon after `down` ran.
        """
        if not self.state.resources("container"):
            return
        with contextlib.suppress(Exception):
            client = docker_client("down")
            mine = {"label": f"{RUN_LABEL}={self.run.run_id}"}
            for c in client.api.containers(all=True, filters=mine):  # no inspect: no race
                name = c["Names"][0].lstrip("/")
                target = (c.get("Labels") or {}).get(f"{LABEL}.target", "")
                self.state.record(
                    {"type": "container", "name": name, "run": self.run.run_id, "target": target}
                )
