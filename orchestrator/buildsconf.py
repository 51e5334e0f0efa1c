"""firmware/builds.conf read once: each build's tree, patch series and declared flags.

A line is `name tree [patch...] [@flag...]`. `@synthetic` declares a synthetic
control (a build that exists to prove the testbed can see a slow drain); code asks
`recipe.synthetic`, never the build's name. `every()` adds the kernel builds
(kernels/builds.conf and a lab file's own), so a result, a report and a metric name a
kernel build as they name a netkeyd one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = ("synthetic",)


@dataclass(frozen=True)
class Recipe:
    """One build of builds.conf; a kernel build's tree is its source package."""

    name: str
    tree: str
    patches: tuple[str, ...] = ()
    synthetic: bool = False
    config: str = ""  # a kernel build's config (kernels/config/); firmware has none


def parse_line(raw: str) -> Recipe | None:
    words = raw.split("#", 1)[0].split()
    if len(words) < 2:
        return None
    flags = {w[1:] for w in words[2:] if w.startswith("@")}
    unknown = flags - set(FLAGS)
    if unknown:
        raise ValueError(f"builds.conf: {words[0]}: unknown flag @{sorted(unknown)[0]}")
    patches = tuple(w for w in words[2:] if not w.startswith("@"))
    return Recipe(words[0], words[1], patches, "synthetic" in flags)


def read(conf: Path | None = None) -> dict[str, Recipe]:
    """build → Recipe, in file order; empty if the file cannot be read."""
    if conf is None:
        from orchestrator.lab.builds import firmware_dir

        conf = firmware_dir() / "builds.conf"
    try:
        text = conf.read_text(encoding="utf-8")
    except OSError:
        return {}
    recipes = (parse_line(raw) for raw in text.splitlines())
    return {r.name: r for r in recipes if r is not None}


def every(kernels: Mapping[str, Any] | None = None) -> dict[str, Recipe]:
    """Firmware builds, kernels/builds.conf's and the lab's own `kernels:` (resolved)."""
    from orchestrator.kernel.conf import recipes

    return {**read(), **recipes(kernels)}


def is_synthetic(build: str, extra: Mapping[str, Recipe] | None = None) -> bool:
    """`extra`: builds beyond the builds.conf files (a lab file's own)."""
    r = {**every(), **(extra or {})}.get(build)
    return bool(r and r.synthetic)


def patch_name(p: str) -> str:
    """A series word as a patch name: a path's file name without .patch."""
    return Path(p).name.removesuffix(".patch") if "/" in p else p


def patch_file(p: str) -> Path:
    """A series word as a file: a path as is, a name from firmware/patches/."""
    if "/" in p:
        return Path(p)
    from orchestrator.lab.builds import firmware_dir

    return firmware_dir() / "patches" / f"{p}.patch"


def lab_recipes(firmware: Mapping[str, Any]) -> dict[str, Recipe]:
    """A lab file's netkeyd builds (ResolvedLab.firmware) as recipes, patches by name."""
    return {n: Recipe(n, f.tree, tuple(map(patch_name, f.patches)), f.synthetic)
            for n, f in firmware.items()}  # fmt: skip


def conf_text(firmware: Mapping[str, Any]) -> str:
    """The lab's builds as builds.conf lines (patches as paths) for firmware/mkbuild.sh,
    which reads them from $SPDLAB_BUILDS_CONF, else from $SPDLAB_RUN/builds.conf."""
    lines = ["# netkeyd builds of the lab file, for firmware/mkbuild.sh"]
    for n, f in firmware.items():
        words = [n, f.tree, *map(str, map(patch_file, f.patches))]
        lines.append(" ".join(words + (["@synthetic"] if f.synthetic else [])))
    return "\n".join(lines) + "\n"
