"""How spdlab reaches a board over SSH: one ssh_config per target, used by ansible and the relay.

The config pins the board's host key: StrictHostKeyChecking yes against the lab's
known_hosts file, and nothing else. A changed or unknown key stops ssh with its own
message, which spdlab passes on.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.errors import InfraError
from orchestrator.lab.ssh import SshSpec

# ssh's messages for a host key it will not accept, and what spdlab says instead.
HOST_KEY_ERRORS = {
    "REMOTE HOST IDENTIFICATION HAS CHANGED": "the {what}'s SSH host key changed",
    "Host key verification failed": "the {what}'s SSH host key is not in known_hosts",
}
# OS (uname -s) → sockaddr flavour of its PF_KEY. The BSDs agree on AF_INET (2); their
# AF_INET6 differs (NetBSD and OpenBSD 24, FreeBSD and DragonFly 28).
FLAVOURS = {"Linux": "linux", "NetBSD": "bsd", "FreeBSD": "freebsd", "OpenBSD": "bsd",
            "DragonFly": "freebsd"}  # fmt: skip


def alias(target: str) -> str:
    """The Host name in a target's ssh_config."""
    return f"spdlab-{target}"


def inventory_host(spec: SshSpec) -> dict[str, Any]:
    """The inventory host's variables, as ansible-inventory resolves them.

    Raises:
        InfraError: the inventory does not load, or has no such host.
    """
    exe = Path(sys.executable).with_name("ansible-inventory")
    argv = [str(exe), "-i", str(spec.inventory), "--host", str(spec.host)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        tail = (r.stderr.strip() or "failed").splitlines()[-1]
        raise InfraError(f"inventory {spec.inventory}: host {spec.host}: {tail}", step="provision")
    return json.loads(r.stdout)


def connection(spec: SshSpec) -> dict[str, str]:
    """HostName, Port, User and IdentityFile: the lab's, else the inventory host's."""
    inv = inventory_host(spec) if spec.inventory else {}
    got = {
        "HostName": spec.address or inv.get("ansible_host") or spec.host,
        "Port": spec.port or inv.get("ansible_port") or inv.get("ansible_ssh_port"),
        "User": spec.user or inv.get("ansible_user") or inv.get("ansible_ssh_user"),
        "IdentityFile": spec.key or inv.get("ansible_ssh_private_key_file"),
    }
    return {k: str(v) for k, v in got.items() if v}


def ssh_config(target: str, spec: SshSpec) -> str:
    """The target's ssh_config: the board, its pinned host key, no agent, no prompts."""
    lines = [f"Host {alias(target)}"]
    lines += [f"  {k} {v}" for k, v in connection(spec).items()]
    lines += [
        f"  UserKnownHostsFile {spec.known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        "  ConnectTimeout 15",
        "  ServerAliveInterval 5",
        "  ServerAliveCountMax 6",
        "  ExitOnForwardFailure yes",
        "  StreamLocalBindUnlink yes",
        "  StreamLocalBindMask 0177",
        "  ControlMaster no",
        "  ControlPath none",
        "  LogLevel ERROR",
    ]
    return "\n".join(lines) + "\n"


def host_key_problem(text: str, what: str = "board") -> str | None:
    """spdlab's one-line reason when ssh refused the host key of `what`, else None."""
    why = next((why for key, why in HOST_KEY_ERRORS.items() if key in text), None)
    return why.format(what=what) if why else None


def relay_argv(config: Path, host: str, board_dir: str, local_admin: Path | None,
               relay: str | None = None) -> list[str]:  # fmt: skip
    """ssh running pfkey_relay on the channel's stdio; netkeyd boards also forward admin.sock.

    Args:
        config: the target's ssh_config.
        host: its Host alias there.
        board_dir: the target's folder on the board.
        local_admin: for a netkeyd board, where its admin socket appears on this host.
        relay: the relay binary there (default: in board_dir).
    """
    relay = shlex.quote(relay or f"{board_dir}/pfkey_relay")
    argv = ["ssh", "-F", str(config), "-T"]
    remote = f"exec {relay} -"
    if local_admin is not None:
        argv += ["-L", f"{local_admin}:{board_dir}/admin.sock"]
        remote = f"exec {relay} -u {shlex.quote(board_dir + '/control.sock')} -"
    return [*argv, host, remote]


def run(config: Path, target: str, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """One command on the board over the target's ssh_config: status, stdout, stderr."""
    return run_argv(["ssh", "-F", str(config), "-T", alias(target), command], None, timeout)


def run_argv(argv: list[str], stdin: str | None, timeout: float) -> tuple[int, str, str]:
    """One ssh command line, `stdin` its input: status, stdout, stderr."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin,
                           stdin=None if stdin is not None else subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        return 255, "", f"ssh: no answer in {timeout:g}s"
    return r.returncode, r.stdout, r.stderr


def close_mux(config: Path, target: str, mux: Path) -> None:
    """Ask a connection master to exit (`ssh -O exit`); quiet when none runs."""
    argv = ["ssh", "-F", str(config), "-o", f"ControlPath={mux}", "-O", "exit", alias(target)]
    subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
