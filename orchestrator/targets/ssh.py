"""SshDriver — a board reached over SSH: its own kernel's PF_KEY, or netkeyd running on it.

Provisioning is the ssh_board role (playbooks/roles/ssh_board) over SSH: it reads the
board's `uname`, installs firmware/relay/pfkey_relay (the static build for Linux boards of
this machine's architecture, else built from source with the board's cc), checks that
the kernel opens a PF_KEY socket, or copies a static netkeyd and starts it.

PF_KEY travels inside the SSH connection: a relay bridge on this host
(orchestrator.targets.relay) runs `ssh board pfkey_relay -`, whose stdio is the relay's
framed stream, and serves control.sock. Nothing listens on the board's network.
- build `kernel`: the bridge also serves admin.sock by SPDDUMP polling
  (orchestrator.targets.spdpoll, "resolution": "spddump-poll"), in the sockaddr flavour
  of the board's OS.
- a firmware build: the relay connects each channel to netkeyd's control socket
  (`pfkey_relay -u`), and the same ssh forwards netkeyd's admin socket
  (`-L admin.sock:<board>/admin.sock`): the stats are netkeyd's own tick ring.
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.errors import InfraError
from orchestrator.lab.builds import firmware_dir
from orchestrator.targets import cleanup, sshbridge, sshconn
from orchestrator.targets import preflight as pf
from orchestrator.targets.ansible import PlaybookResult, default_forks, run_playbook
from orchestrator.targets.base import Health, TargetDriver
from orchestrator.targets.endpoints import UnixPfkeyEndpoint, UnixStatsEndpoint
from orchestrator.targets.registry import register_kind
from orchestrator.targets.sshbridge import SshBridge

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab, TargetSpec

KERNEL = "kernel"
MAX_UNIX_PATH = 107


def board_left(r: dict[str, Any]) -> str | None:
    """After down.yml: is the target's folder gone from the board? One ssh to ask."""
    config = Path(r.get("config", ""))
    if not config.is_file():
        return None  # recorded by an older spdlab, or the run's folder is gone
    folder = shlex.quote(r["dir"])
    rc, out, err = sshconn.run(config, r["target"], f"test -e {folder} && echo left || echo gone")
    if rc != 0 or out.strip() not in ("left", "gone"):
        why = sshconn.host_key_problem(err) or (err.strip().splitlines() or ["no answer"])[-1]
        return f"board {r['target']}: not reached ({why}); {r['dir']} may be left there"
    return f"board {r['target']}: {r['dir']} is still there" if out.strip() == "left" else None


# The final sweep of `down` asks each board, as it checks every other resource.
cleanup.REMOVERS.setdefault("board", board_left)


@register_kind("ssh")
class SshDriver(TargetDriver):
    """SshDriver — a board over SSH, PF_KEY relayed through the connection."""

    @classmethod
    def preconditions(cls, lab: ResolvedLab) -> list[pf.Unmet | None]:
        """ssh and ansible-runner here; each board's key and known_hosts file."""
        out = [pf.command("ssh", "openssh-client"), pf.module("ansible_runner", "make venv")]
        for t in cls.lab_specs(lab):
            if t.ssh is None:
                continue
            out.append(
                pf.path(
                    Path(t.ssh.known_hosts),
                    f"{t.name}: known_hosts",
                    "add the board's host key there (ssh-keyscan, then check it)",
                )
            )
            if t.ssh.key:
                out.append(
                    pf.path(
                        Path(t.ssh.key),
                        f"{t.name}: SSH key",
                        "ssh-keygen -t ed25519 -f KEY, then put KEY.pub on the board",
                    )
                )
        return out  # fmt: skip

    def files(self, name: str) -> dict[str, Path]:
        """The target's files on this host, under runs/<id>/targets/<name>/."""
        d = self.run.target_dir(name)
        names = {"config": "ssh_config", "board": "board.json", "mux": "mux.sock",
                 "tar": "board.tar"}  # fmt: skip
        return {**sshbridge.files(d), **{k: d / v for k, v in names.items()}}

    def bridge(self, name: str) -> SshBridge:
        return SshBridge(self, name, self.files(name)["config"])

    @property
    def inventory_path(self) -> Path:
        return self.run.path / "ssh-inventory.yml"

    def board_dir(self, name: str, base: str) -> str:
        return f"{base.rstrip('/')}/spdlab-{self.run.short}-{name}"

    # ------------------------------------------------------------ provision

    def provision(self) -> None:
        """Write each board's ssh_config, build what goes there, run the role's provision."""
        for t in self.specs:
            longest = str(self.files(t.name)["control"])
            if len(longest.encode()) > MAX_UNIX_PATH:
                raise InfraError(f"socket path too long for a Unix socket: {longest}", t.name)
        for t in self.specs:
            self._record(t)
        self._build_local()
        self.inventory_path.write_text(yaml.safe_dump(self.inventory(), sort_keys=False))
        self.progress.phase("board", len(self.specs))
        self._playbook("up.yml", "ssh-provision", ["provision"], "provision", self.specs)
        for t in self.specs:
            self.files(t.name)["tar"].unlink(missing_ok=True)
        for t in self._live():
            self._on_board(t.name, lambda name=t.name: self._read_board(name))
        self._require_one("provision")

    def _live(self) -> list[TargetSpec]:
        """The boards nothing has failed yet: the others are INFRA-ERROR, the run goes on."""
        return [t for t in self.specs if t.name not in self.failed]

    def _on_board(self, name: str, step: Callable[[], None]) -> None:
        """One board's step: when it fails, that board is INFRA-ERROR, not the lab."""
        try:
            step()
        except InfraError as e:
            self.failed[name] = str(e).removeprefix(f"{name}:")  # "step: why", as below

    def _require_one(self, step: str) -> None:
        """When every board failed, `up` fails as a whole, with each board's reason."""
        if not self.specs or self._live():
            return
        if len(self.specs) == 1:
            one = self.specs[0].name
            raise InfraError(self.failed[one], one)
        raise InfraError("; ".join(f"{n}: {why}" for n, why in sorted(self.failed.items())))

    def _record(self, t: TargetSpec) -> None:
        assert t.ssh is not None
        d = self.run.target_dir(t.name)
        d.mkdir(parents=True, exist_ok=True)
        board = self.board_dir(t.name, t.ssh.dir)
        mode = "kernel" if t.build == KERNEL else "netkeyd"
        self.state.set_target(t.name, kind=self.kind, build=t.build, address=str(t.address),
                              dir=str(d), board_dir=board, mode=mode)  # fmt: skip
        f = self.files(t.name)
        self.state.record(
            {"type": "board", "target": t.name, "dir": board, "config": str(f["config"])},
            *({"type": "file", "path": str(f[k]), "target": t.name}
              for k in ("control", "admin", "bridge_pid", "ssh_pid", "mux")),
        )  # fmt: skip
        f["config"].write_text(sshconn.ssh_config(t.name, t.ssh))

    def _build_local(self) -> None:
        """The static relay, and a static netkeyd for each firmware build boards run."""
        sshbridge.build_static({t.build for t in self.specs if t.build != KERNEL}, self.spawn_env)

    def inventory(self) -> dict[str, Any]:
        """One host per target; ssh reads everything about the connection from its config."""
        hosts = {
            t.name: {
                "ansible_host": sshconn.alias(t.name),
                "ansible_ssh_common_args": f"-F {self.files(t.name)['config']}",
                # one connection per board for all its tasks; closed after each playbook
                "ansible_ssh_args": f"-o ControlMaster=auto -o ControlPersist=30s "
                f"-o ControlPath={self.files(t.name)['mux']}",
                "spdlab_board_dir": self.state.targets[t.name]["board_dir"],
                "spdlab_board_mode": self.state.targets[t.name]["mode"],
                "spdlab_relay_build": t.ssh.relay == "build",
                "spdlab_build": t.build,
                "spdlab_tick_ms": t.tick_ms,
                "spdlab_flow_idle_ticks": t.flow_idle_ticks,
                "spdlab_target_dir": str(self.run.target_dir(t.name)),
            }
            for t in self.specs
        }
        common = {
            # ansible.py turns host key checking off for local hosts; a board's is pinned.
            "ansible_ssh_host_key_checking": True,
            # files go through `dd` on the board: no sftp-server or scp needed there
            "ansible_ssh_transfer_method": "piped",
            "spdlab_firmware_dir": str(firmware_dir()),
            "spdlab_controller_arch": platform.machine(),
        }
        return {"all": {"children": {"ssh_board": {"hosts": hosts, "vars": common}}}}

    def _playbook(self, playbook: str, ident: str, tags: list[str], step: str,
                  specs: list[TargetSpec]) -> PlaybookResult:  # fmt: skip
        """The role's step on these boards; a board it failed for is INFRA-ERROR."""

        def on_task(host: str, task: str, status: str) -> None:
            if task.startswith("Tell spdlab") and status == "ok":
                self.progress.advance("board")

        names = [t.name for t in specs]
        result = run_playbook(
            playbook, inventory=self.inventory_path, private_data_dir=self.run.ansible_dir,
            ident=ident, forks=default_forks(len(names)), tags=tags, on_task=on_task,
            cancel=self.cancel, env=self.marker_env,
            limit=names if len(names) < len(self.specs) else (),
        )  # fmt: skip
        self._close_mux()
        if result.status == "canceled":
            raise KeyboardInterrupt
        bad = result.failed_hosts()
        if not bad and result.status != "successful":
            raise InfraError(f"ansible-playbook ended {result.status} (rc {result.rc})",
                             step=step)  # fmt: skip
        for h in bad:
            self.failed[h] = f"{step}: {self._reason(result.failures.get(h, 'failed'))}"
        self._require_one(step)
        return result

    @staticmethod
    def _reason(message: str) -> str:
        why = sshconn.host_key_problem(message)
        return f"{why}: refusing to connect ({message.strip()[-200:]})" if why else message

    def _read_board(self, name: str) -> None:
        try:
            board = json.loads(self.files(name)["board"].read_text())
        except (OSError, ValueError) as e:
            raise InfraError(f"the role wrote no board.json: {e}", name, "provision") from None
        mode = self.state.targets[name]["mode"]
        flavour = sshconn.FLAVOURS.get(board["os"]) if mode == "kernel" else "bsd"
        if flavour is None:
            known = ", ".join(sshconn.FLAVOURS)
            raise InfraError(f"no PF_KEY flavour for {board['os']} (known: {known})", name)
        self.state.set_target(name, board=board, flavour=flavour)

    # ------------------------------------------------------------ start

    def start(self) -> None:
        """Start netkeyd on netkeyd boards, then one bridge per target; wait for REGISTER."""
        daemons = [t for t in self._live() if t.build != KERNEL]
        if daemons:
            self._playbook("up.yml", "ssh-start", ["start"], "start", daemons)
        live = self._live()
        self.progress.phase("relay", len(live))
        for t in live:
            self.bridge(t.name).spawn(self._bridge_argv(t.name, t.tick_ms))
        deadline = time.monotonic() + sshbridge.START_TIMEOUT_S
        for t in live:
            self._on_board(t.name, lambda t=t: self._registered(t, deadline))
            self.progress.advance("relay")
        self._require_one("start")

    def _registered(self, t: TargetSpec, deadline: float) -> None:
        self.bridge(t.name).wait_register(self.pfkey_endpoint(t.name), deadline, self.cancel)
        if t.build == KERNEL:
            self._check_empty(t.name)

    def _check_empty(self, name: str) -> None:
        """A board's kernel keeps its SPD between runs; a drain is measured down to empty."""
        with self.pfkey_endpoint(name).connect(timeout=15.0) as c:
            left = len(c.spddump())
        if left:
            raise InfraError(f"the board's SPD holds {left} policies before the run; flush it "
                             "(spdlab setkey --target NAME -FP) or use a board of its own",
                             name, "start")  # fmt: skip

    def _bridge_argv(self, name: str, tick_ms: int) -> list[str]:
        rec, f = self.state.targets[name], self.files(name)
        options = []
        if rec["mode"] == "kernel":
            board = rec["board"]
            options = ["--admin", str(f["admin"]), "--build", KERNEL, "--tick-ms", str(tick_ms),
                       "--kernel", board["release"], "--flavour", rec["flavour"],
                       "--tree", board["os"].lower()]  # fmt: skip
        forward = f["admin"] if rec["mode"] == "netkeyd" else None
        ssh = sshconn.relay_argv(f["config"], sshconn.alias(name), rec["board_dir"], forward)
        return self.bridge(name).argv(options, ssh)

    # ------------------------------------------------------------ while up

    def pfkey_endpoint(self, name: str) -> UnixPfkeyEndpoint:
        flavour = self.state.targets.get(name, {}).get("flavour", "bsd")
        return UnixPfkeyEndpoint(str(self.files(name)["control"]), "ssh", flavour)

    def stats_endpoint(self, name: str) -> UnixStatsEndpoint:
        return UnixStatsEndpoint(str(self.files(name)["admin"]), target=name)

    def health(self, name: str) -> Health:
        rec = self.state.targets.get(name, {})
        h = Health(name, self.kind, rec.get("build", "?"), False, pid=rec.get("ssh_pid"))
        b = self.bridge(name)
        if not b.running("bridge") or not b.running("ssh"):
            h.reason = "the relay's ssh connection is not running"
            return h
        return self.stats_health(h, name, timeout=10.0)

    def collect(self, name: str, dest: Path) -> list[Path]:
        """The bridge's log, board.json, netkeyd's log from the board; version, stats, policies."""
        out_dir = dest / name
        out_dir.mkdir(parents=True, exist_ok=True)
        f = self.files(name)
        got = [Path(shutil.copy2(f[k], out_dir / f[k].name))
               for k in ("log", "board") if f[k].exists() and f[k].parent != out_dir]  # fmt: skip
        rec = self.state.targets.get(name, {})
        if rec.get("mode") == "netkeyd":
            rc, out, _ = sshconn.run(f["config"], name, f"cat {rec['board_dir']}/netkeyd.log")
            if rc == 0:
                (out_dir / "netkeyd.log").write_text(out)
                got.append(out_dir / "netkeyd.log")
        return got + self.collect_answers(name, out_dir)

    # ------------------------------------------------------------ down

    def _mine(self, rtype: str | None = None) -> list[dict[str, Any]]:
        names = set(self.names())
        return [r for r in self.state.resources(rtype) if r.get("target") in names]

    def stop(self) -> None:
        """Stop every bridge and its ssh: the board's relay ends with the channel."""
        for name in self.names():
            self.bridge(name).record()
        for r in self._mine("process"):
            cleanup.remove(r)

    def teardown(self) -> list[str]:
        """Bridges and ssh here, then down.yml on every board; returns what it could not do."""
        self.stop()
        problems = self._boards_down() if self._mine("board") else []
        return problems + cleanup.remove_all(self._mine())

    def _close_mux(self) -> None:
        """End ansible's shared connection to each board (it would linger for 30 s)."""
        for name in self.names():
            f = self.files(name)
            if f["mux"].exists():
                sshconn.close_mux(f["config"], name, f["mux"])

    def _boards_down(self) -> list[str]:
        if not self.inventory_path.exists():
            return []
        ident = f"ssh-down-{len(list(self.run.ansible_dir.glob('artifacts/ssh-down*')))}"
        try:
            result = run_playbook(
                "down.yml", inventory=self.inventory_path, private_data_dir=self.run.ansible_dir,
                ident=ident, forks=default_forks(len(self.names())), env=self.marker_env,
            )  # fmt: skip
        except Exception as e:  # down reports, never raises
            return [f"ssh boards: down.yml: {e}"]
        finally:
            self._close_mux()
        return [f"board {h}: {self._reason(result.failures.get(h, 'failed'))}"
                for h in result.failed_hosts()]  # fmt: skip
