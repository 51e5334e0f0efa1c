"""The firmware build matrix as the lab file sees it: names from firmware/builds.conf."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.runs import project_root

# Spec §4, used only until firmware/builds.conf exists.
DEFAULT_BUILDS = (
    "netkey",
    "netkey+nextsp",
    "netipsec",
    "netipsec+split",
    "canary",
    "canary+nextsp",
)


def known_builds(conf: Path | None = None) -> tuple[str, ...]:
    """Build names, in file order.

    Args:
        conf: a builds.conf (`name tree patch...` per line, `#` comments);
            default: firmware/builds.conf in the project.
    """
    conf = conf or firmware_dir() / "builds.conf"
    try:
        text = conf.read_text(encoding="utf-8")
    except OSError:
        return DEFAULT_BUILDS
    names = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words:
            names.append(words[0])
    return tuple(names) or DEFAULT_BUILDS


def firmware_dir() -> Path:
    """The firmware tree: $SPDLAB_FIRMWARE_DIR, else firmware/ in the project."""
    env = os.environ.get("SPDLAB_FIRMWARE_DIR")
    return Path(env).resolve() if env else project_root() / "firmware"


def binary_path(build: str) -> Path:
    """Where `make -C firmware BUILD=<build>` puts netkeyd."""
    return firmware_dir() / "build" / build / "netkeyd"
