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


def build_version(build: str, firmware: Mapping[str, Any] | None = None,
                  kernels: Iterable[Mapping[str, Any]] = ()) -> BuildVersion:  # fmt: skip
    """A firmware build from builds.conf or the lab file's own (`firmware`); a kernel build
    from its booted kernels' metas."""
    from orchestrator.lab.builds import binary_path

    metas = [m for m in kernels if m.get("build") == build]
    if metas:
        return kernel_version(metas)
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
    return {b: buildsconf.Recipe(b, bv.tree, tuple(p.name for p in bv.patches), bv.synthetic,
                              bv.config or "")
            for b, bv in v.builds.items() if bv.tree != "unknown"}  # fmt: skip


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


def collect(builds: list[str], firmware: Mapping[str, Any] | None = None,
            kernels: Iterable[Mapping[str, Any]] = ()) -> Versions:  # fmt: skip
    """spdlab, the host, and each build with its patch series and hashes.

    Args:
        builds: the builds the lab's targets run.
        firmware: the lab file's own netkeyd builds.
        kernels: the versions of every kernel a target booted (its build's meta.json,
            with `build` and `arch`), as the drivers recorded them in state.json.
    """
    kernels = list(kernels)
    return Versions(
        spdlab=__version__,
        kernel=platform.release(),
        hostname=socket.gethostname(),
        python=platform.python_version(),
        builds={b: build_version(b, firmware, kernels) for b in sorted(set(builds))},
    )
