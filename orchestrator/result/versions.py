"""The versions header of a run: spdlab, the host, each build with its patch hashes.

A netkeyd build is its tree, its patches and the binary's sha256. A kernel build is named
the same way (its tree is the source package) and adds the source package's version, its
config and, per arch it ran on, the config's and the image's sha256: what the qemu driver
recorded from the build cache's meta.json (orchestrator.kernel.build).
"""

from __future__ import annotations

import hashlib
import platform
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator import __version__, buildsconf


class PatchVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str | None


class KernelImage(BaseModel):
    """A kernel build on one arch: its config's hash and the image booted."""

    model_config = ConfigDict(extra="forbid")

    config_sha256: str | None = None  # the fragments on top of tinyconfig (the cache key's)
    dot_config_sha256: str | None = None  # the .config make produced from them
    image: str = ""
    image_sha256: str | None = None


class BuildVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tree: str
    patches: list[PatchVersion] = []
    netkeyd_sha256: str | None = None
    synthetic: bool = False
    source_version: str | None = None  # a kernel build: the source package's version
    config: str | None = None  # a kernel build: its config (kernels/config/)
    arches: dict[str, KernelImage] = {}  # a kernel build: per arch it ran on


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


def build_version(build: str, kernels: Iterable[Mapping[str, Any]] = ()) -> BuildVersion:
    """A firmware build from builds.conf; a kernel build from its booted kernels' metas."""
    from orchestrator.lab.builds import binary_path, firmware_dir

    metas = [m for m in kernels if m.get("build") == build]
    if metas:
        return kernel_version(metas)
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


def kernel_version(metas: list[Mapping[str, Any]]) -> BuildVersion:
    """One kernel build from the meta.json of each arch it was booted on."""
    m = {"patches": [], **metas[0]}
    arches = {
        k["arch"]: KernelImage(config_sha256=k.get("config_sha256"),
                               dot_config_sha256=k.get("dot_config_sha256"),
                               image=k.get("image", ""), image_sha256=k.get("image_sha256"))
        for k in metas if k.get("arch")
    }  # fmt: skip
    return BuildVersion(
        tree=m.get("source", "unknown"),
        patches=[PatchVersion(name=p["name"], sha256=p.get("sha256")) for p in m["patches"]],
        synthetic=bool(m.get("synthetic")),
        source_version=m.get("source_version"),
        config=m.get("config"),
        arches=dict(sorted(arches.items())),
    )


def collect(builds: list[str], kernels: Iterable[Mapping[str, Any]] = ()) -> Versions:
    """spdlab, the host, and each build with its patch series and hashes.

    Args:
        builds: the builds the lab's targets run.
        kernels: the versions of every kernel a target booted (its build's meta.json,
            with `build` and `arch`), as the drivers recorded them in state.json.
    """
    kernels = list(kernels)
    return Versions(
        spdlab=__version__,
        kernel=platform.release(),
        hostname=socket.gethostname(),
        python=platform.python_version(),
        builds={b: build_version(b, kernels) for b in sorted(set(builds))},
    )
