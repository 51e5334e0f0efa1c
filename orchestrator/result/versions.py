"""The versions header of a run: spdlab, the host, each build with its patch hashes."""

from __future__ import annotations

import hashlib
import platform
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator import __version__, buildsconf


class PatchVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str | None


class BuildVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tree: str
    patches: list[PatchVersion] = []
    netkeyd_sha256: str | None = None
    synthetic: bool = False


class Versions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spdlab: str
    kernel: str
    hostname: str
    python: str = ""
    builds: dict[str, BuildVersion] = {}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def build_version(build: str) -> BuildVersion:
    from orchestrator.lab.builds import binary_path, firmware_dir

    r = buildsconf.read().get(build)
    if r is None:
        return BuildVersion(tree="unknown")
    patches = firmware_dir() / "patches"
    return BuildVersion(
        tree=r.tree,
        patches=[PatchVersion(name=p, sha256=_sha256(patches / f"{p}.patch")) for p in r.patches],
        netkeyd_sha256=_sha256(binary_path(build)),
        synthetic=r.synthetic,
    )


def collect(builds: list[str]) -> Versions:
    """spdlab, the host, and each build with its patch series and hashes."""
    return Versions(
        spdlab=__version__,
        kernel=platform.release(),
        hostname=socket.gethostname(),
        python=platform.python_version(),
        builds={b: build_version(b) for b in sorted(set(builds))},
    )
