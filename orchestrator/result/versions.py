"""The versions header of a run: spdlab, the host, each build with its patch hashes."""

from __future__ import annotations

import hashlib
import platform
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def build_version(build: str, firmware: Mapping[str, Any] | None = None) -> BuildVersion:
    """A firmware build's tree, series and hashes; `firmware`: the lab file's own builds."""
    from orchestrator.lab.builds import binary_path

    own = (firmware or {}).get(build)
    r = buildsconf.read().get(build)
    if own is not None:
        tree, series, synthetic = own.tree, own.patches, own.synthetic
    elif r is not None:
        tree, series, synthetic = r.tree, r.patches, r.synthetic
    else:
        return BuildVersion(tree="unknown")
    patches = [PatchVersion(name=buildsconf.patch_name(p),
                            sha256=_sha256(buildsconf.patch_file(p))) for p in series]  # fmt: skip
    return BuildVersion(tree=tree, patches=patches, netkeyd_sha256=_sha256(binary_path(build)),
                        synthetic=synthetic)  # fmt: skip


def recipes(v: Versions) -> dict[str, buildsconf.Recipe]:
    """The firmware builds a run recorded, as comparisons pair them."""
    return {b: buildsconf.Recipe(b, bv.tree, tuple(p.name for p in bv.patches), bv.synthetic)
            for b, bv in v.builds.items() if bv.tree != "unknown"}  # fmt: skip


def collect(builds: list[str], firmware: Mapping[str, Any] | None = None) -> Versions:
    """spdlab, the host, and each build with its patch series and hashes."""
    return Versions(
        spdlab=__version__,
        kernel=platform.release(),
        hostname=socket.gethostname(),
        python=platform.python_version(),
        builds={b: build_version(b, firmware) for b in sorted(set(builds))},
    )
