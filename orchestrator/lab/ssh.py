"""The `ssh:` block of a `kind: ssh` target, resolved: how to reach the board."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.lab.model import SshDef

DEFAULT_PORT = 22
DEFAULT_DIR = "/tmp"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


class SshSpec(BaseModel):
    """A board's SSH settings, paths absolute. Unset user/port/key come from the inventory
    host when there is one, else from ssh's own defaults (port 22, the current user)."""

    model_config = ConfigDict(frozen=True)

    address: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str
    inventory: str | None = None
    host: str | None = None
    dir: str = DEFAULT_DIR
    relay: str = "auto"


def merge(layers: list[SshDef | None]) -> dict:
    """Key by key, later layers win."""
    out: dict = {}
    for layer in layers:
        if layer is not None:
            out |= layer.model_dump(exclude_none=True)
    return out


def problems(merged: dict) -> Iterator[tuple[str, str]]:
    """(field, message) for each thing missing or in conflict."""
    if "address" in merged and "host" in merged:
        yield "host", "give either address or host (with inventory), not both"
    elif "host" in merged and "inventory" not in merged:
        yield "host", "an inventory host needs inventory: the inventory file"
    elif "inventory" in merged and "host" not in merged:
        yield "inventory", "give host: the board's name in the inventory"
    elif "address" not in merged and "host" not in merged:
        yield "address", "required: the board's address, or inventory and host"


def absolute(value: str, base: Path) -> str:
    """A path of the lab file: ~ expanded, relative to the lab file's folder."""
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _path(value: str | None, base: Path) -> str | None:
    return None if value is None else absolute(value, base)


def spec(merged: dict, base: Path) -> SshSpec:
    """The resolved block; relative paths are relative to the lab file's folder."""
    files = {k: _path(merged.get(k), base) for k in ("key", "inventory")}
    known = _path(merged.get("known_hosts", DEFAULT_KNOWN_HOSTS), base)
    return SshSpec(**{**merged, **files, "known_hosts": known})
