"""LabHost — a lab host of a multi-host lab, as one run uses it.

A lab host is reached like a board (one ssh_config, its host key pinned) and runs netns
gateways, its own switch and traffic host, and a traffic sender. Everything of the run
lives in one folder there, `<dir>/spdlab-<short>-<host>/`: the tools the playbooks copy
(gateway.sh, gateways.sh and its list, lab.sh, host.sh, pfkey_ready.py, pfkey_relay, a
static netkeyd per build, the traffic sender's Python), each gateway's sockets and log,
and the list of namespaces the run made there. `host.sh down` removes exactly those and the folder.
"""

from __future__ import annotations

import platform
import shlex
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.lab.builds import firmware_dir
from orchestrator.runs import project_root
from orchestrator.targets import cleanup, sshconn
from orchestrator.targets.ansible import PLAYBOOKS
from orchestrator.targets.labnet import LabNetwork

if TYPE_CHECKING:
    from orchestrator.lab.hosts import HostSpec
    from orchestrator.runs import RunDir

HOST_SH = PLAYBOOKS / "roles" / "lab_host" / "files" / "host.sh"
GATEWAY_FILES = PLAYBOOKS / "roles" / "netns_gateway" / "files"
GATEWAY_LIST = "gateways.tsv"  # gateways.sh's list of the host's gateways, in its folder


def entry(host: str) -> str:
    """The host's own inventory name (target names have no underscore)."""
    return f"_lab_{host}"


class LabHost:
    """LabHost — names and files of one lab host for one run.

    Args:
        run: the run directory.
        spec: the host as the lab resolves it.
    """

    def __init__(self, run: RunDir, spec: HostSpec):
        self.run, self.spec, self.name = run, spec, spec.name
        self.local = run.path / "hosts" / spec.name
        self.dir = f"{spec.ssh.dir.rstrip('/')}/spdlab-{run.short}-{spec.name}"
        self.network = LabNetwork(run.short, spec.name)

    @property
    def config(self) -> Path:
        return self.local / "ssh_config"

    @property
    def alias(self) -> str:
        return sshconn.alias(f"host-{self.name}")

    @property
    def mux(self) -> Path:
        return self.local / "mux.sock"

    def target_dir(self, target: str) -> str:
        return f"{self.dir}/{target}"

    def resource(self) -> dict[str, Any]:
        """state.json's record of the host: `down` cleans it over SSH, after a crash too."""
        return {"type": "lab_host", "host": self.name, "dir": self.dir, "config": str(self.config),
                "alias": self.alias}  # fmt: skip

    def write_config(self) -> None:
        self.local.mkdir(parents=True, exist_ok=True)
        self.config.write_text(sshconn.ssh_config(f"host-{self.name}", self.spec.ssh))

    def connection_vars(self) -> dict[str, Any]:
        """Inventory variables of every entry that runs on this host: one ssh connection."""
        return {
            "ansible_connection": "ssh",
            "ansible_host": self.alias,
            "ansible_ssh_common_args": f"-F {self.config}",
            "ansible_ssh_args": f"-o ControlMaster=auto -o ControlPersist=30s "
            f"-o ControlPath={self.mux}",
            # ansible.py turns host key checking off for local hosts; a lab host's is pinned.
            "ansible_ssh_host_key_checking": True,
            "ansible_ssh_transfer_method": "piped",
            "ansible_python_interpreter": self.spec.python,
            "spdlab_host": self.name,
            "spdlab_host_dir": self.dir,
            "spdlab_scripts": self.dir,
            "spdlab_firmware_dir": f"{self.dir}/firmware",
            "spdlab_python": self.spec.python,
            "spdlab_switch_ns": self.network.switch_ns,
            "spdlab_traffic_ns": self.network.traffic_ns,
            "spdlab_lab_entry": entry(self.name),
        }

    def host_vars(self, namespaces: list[str]) -> dict[str, Any]:
        """The host's own entry: its tools' tar, and the namespaces it will hold."""
        return {
            **self.connection_vars(),
            "spdlab_host_tar": str(self.local / "host.tar"),
            "spdlab_host_namespaces": namespaces,
            "spdlab_controller_arch": platform.machine(),
        }

    def pack(self, builds: list[str]) -> Path:
        """The tar the lab_host role copies there: scripts, relay, netkeyd, the sender."""
        tar = self.local / "host.tar"
        fw = firmware_dir()
        with tarfile.open(tar, "w") as t:
            for f in ("gateway.sh", "gateways.sh", "lab.sh", "pfkey_ready.py"):
                t.add(GATEWAY_FILES / f, f)
            if (self.local / GATEWAY_LIST).exists():  # NetnsDriver.write_inventory's
                t.add(self.local / GATEWAY_LIST, GATEWAY_LIST)
            t.add(HOST_SH, "host.sh")
            t.add(fw / "build" / "relay" / "pfkey_relay", "pfkey_relay")
            for b in builds:
                t.add(fw / "build" / b / "netkeyd-static", f"firmware/build/{b}/netkeyd")
            t.add(project_root() / "orchestrator", "py/orchestrator",
                  filter=lambda i: None if "__pycache__" in i.name else i)  # fmt: skip
        return tar

    def sender_argv(self, workdir: str) -> list[str]:
        """ssh running the traffic sender there; it stops when this ssh's stdin closes."""
        py = shlex.quote(self.spec.python)
        remote = (f"cd {shlex.quote(self.dir)} && PYTHONPATH={shlex.quote(self.dir + '/py')} "
                  f"exec {py} -m orchestrator.traffic.remote {shlex.quote(workdir)}")  # fmt: skip
        return ["ssh", "-F", str(self.config), "-T", self.alias, remote]

    def close_mux(self) -> None:
        if self.mux.exists():
            sshconn.close_mux(self.config, f"host-{self.name}", self.mux)

    def clean_local(self) -> None:
        (self.local / "host.tar").unlink(missing_ok=True)


def host_down(r: dict[str, Any]) -> str | None:
    """`down`'s sweep of a lab host: host.sh down over SSH (sent on stdin, so it runs even
    when the folder is gone); what could not be reached is reported."""
    config = Path(r.get("config", ""))
    if not config.is_file():
        return None
    folder = shlex.quote(r["dir"])
    argv = ["ssh", "-F", str(config), "-T", r["alias"], f"sh -s down {folder}"]
    rc, out, err = sshconn.run_argv(argv, HOST_SH.read_text(), timeout=60.0)
    if rc != 0:
        why = sshconn.host_key_problem(err, "lab host") or (err.strip().splitlines() or
                                                             ["no answer"])[-1]  # fmt: skip
        return (f"lab host {r['host']}: not reached ({why}); its gateways, namespaces and "
                f"{r['dir']} may be left there")  # fmt: skip
    left = out.strip()
    return f"lab host {r['host']}: {left}" if left else None


cleanup.REMOVERS.setdefault("lab_host", host_down)
