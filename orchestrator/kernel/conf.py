"""kernels/builds.conf: kernel builds by name, and builds of a lab file's own patches."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.buildsconf import Recipe
from orchestrator.errors import ConfigError
from orchestrator.runs import project_root

ARCHES = ("x86_64", "arm64")
SYNTHETIC = "@synthetic"


@dataclass(frozen=True)
class Patch:
    """One unified diff of a series."""

    name: str
    path: Path

    def sha256(self) -> str:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as e:
            raise ConfigError(f"patch {self.name}: {self.path}: {e.strerror}") from None


@dataclass(frozen=True)
class KernelBuild:
    """A kernel build: a source package, a config and an ordered patch series."""

    name: str
    source: str = "linux-source-6.1"
    config: str = "spdlab"
    patches: tuple[Patch, ...] = field(default_factory=tuple)
    synthetic: bool = False

    def recipe(self) -> Recipe:
        """The build as results and comparisons name it: tree = the source package."""
        return Recipe(self.name, self.source, tuple(p.name for p in self.patches),
                      self.synthetic, self.config)  # fmt: skip


def kernels_dir() -> Path:
    return project_root() / "kernels"


def parse_line(words: list[str], where: str) -> KernelBuild:
    """`name source config patch... [@synthetic]` → KernelBuild (patches from kernels/patches/)."""
    if len(words) < 3:
        raise ConfigError(f"{where}: want: name source config [patch...] [{SYNTHETIC}]")
    synthetic = SYNTHETIC in words
    names = [w for w in words[3:] if w != SYNTHETIC]
    pdir = kernels_dir() / "patches"
    patches = tuple(Patch(p, pdir / f"{p}.patch") for p in names)
    return KernelBuild(words[0], words[1], words[2], patches, synthetic)


def load(conf: Path | None = None) -> dict[str, KernelBuild]:
    """Every build of kernels/builds.conf, in file order; {} when there is no file."""
    conf = conf or kernels_dir() / "builds.conf"
    try:
        text = conf.read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, KernelBuild] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if words:
            b = parse_line(words, f"{conf.name}:{n}")
            out[b.name] = b
    return out


def known_names() -> tuple[str, ...]:
    return tuple(load())


def get(name: str) -> KernelBuild:
    """The build of that name in kernels/builds.conf.

    Raises:
        ConfigError: no such build, listing the known ones.
    """
    builds = load()
    if name not in builds:
        raise ConfigError(f"unknown kernel build '{name}'. Known builds are: {', '.join(builds)}")
    return builds[name]


def with_patches(
    name: str, files: list[str], base_dir: Path, base: str | None = None, synthetic: bool = False
) -> KernelBuild:
    """A build of the user's own patch files (relative to base_dir), after base's series."""
    first = get(base) if base else KernelBuild(name)
    own = []
    for f in files:
        p = (base_dir / f).resolve()
        own.append(Patch(p.name.removesuffix(".patch").removesuffix(".diff"), p))
    return KernelBuild(
        name, first.source, first.config, (*first.patches, *own), synthetic or first.synthetic
    )


def recipes(lab: Mapping[str, Any] | None = None) -> dict[str, Recipe]:
    """Every kernel build as a Recipe: kernels/builds.conf's, then the lab's own.

    Args:
        lab: the resolved lab's `kernels` (name → base, absolute patch paths, synthetic),
            as models or as lab.json's dicts.

    A kernel build's tree is its source package and it has a config: two kernel builds
    pair in comparisons when one's series extends the other's on the same source and
    config, like firmware builds on one tree.
    """
    builds = dict(load())
    for name, k in (lab or {}).items():
        k = k if isinstance(k, Mapping) else k.model_dump()
        if k.get("base") is None or k["base"] in builds:
            builds[name] = with_patches(name, list(k["patches"]), Path("/"), k.get("base"),
                                        bool(k.get("synthetic")))  # fmt: skip
    return {b.name: b.recipe() for b in builds.values()}
