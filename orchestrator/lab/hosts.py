"""The `hosts:` of a multi-host lab, resolved: each lab host's SSH settings and python.

`hosts:` maps names to SSH settings (as a board's `ssh:` block, plus `python`), or names
an Ansible inventory file whose every host is a lab host, reached as the inventory says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.lab import ssh
from orchestrator.lab.issues import Loc
from orchestrator.lab.model import NAME_PATTERN, HostDef, LabDef
from orchestrator.lab.ssh import SshSpec

DEFAULT_PYTHON = "python3"


class HostSpec(BaseModel):
    """One lab host: how to reach it, and the interpreter its traffic sender runs on."""

    model_config = ConfigDict(frozen=True)

    name: str
    ssh: SshSpec
    python: str = DEFAULT_PYTHON


def inventory_hosts(path: Path) -> list[str]:
    """Every host of an Ansible inventory file, as ansible-inventory lists them.

    Raises:
        ValueError: the inventory does not load (ansible-inventory's last line).
    """
    exe = Path(sys.executable).with_name("ansible-inventory")
    r = subprocess.run([str(exe), "-i", str(path), "--list"], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    if r.returncode != 0 or not path.is_file():
        tail = (r.stderr.strip() or "not an inventory").splitlines()[-1]
        raise ValueError(f"inventory {path}: {tail}")
    return sorted(json.loads(r.stdout).get("_meta", {}).get("hostvars", {}))


def resolve_hosts(lab: LabDef, base: Path) -> Iterator[tuple[Loc, str] | HostSpec]:
    """Each lab host resolved, or (place, message) for each problem."""
    if isinstance(lab.hosts, str):
        inv = Path(ssh.absolute(lab.hosts, base))
        try:
            names = inventory_hosts(inv)
        except ValueError as e:
            yield ("hosts",), str(e)
            return
        for name in names:
            if re.fullmatch(NAME_PATTERN, name) is None:
                yield ("hosts",), f"inventory host '{name}' is not a valid lab host name"
                continue
            yield HostSpec(name=name, ssh=ssh.spec({"inventory": str(inv), "host": name}, base))
        return
    for name, h in lab.hosts.items():
        yield from _one(name, h, base)


def _one(name: str, h: HostDef, base: Path) -> Iterator[tuple[Loc, str] | HostSpec]:
    merged = ssh.merge([h])
    python = merged.pop("python", DEFAULT_PYTHON)
    found = list(ssh.problems(merged))
    for key, message in found:
        yield ("hosts", name, key), message
    if not found:
        yield HostSpec(name=name, ssh=ssh.spec(merged, base), python=python)
