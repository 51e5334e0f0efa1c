"""The firmware build matrix as the lab file sees it: names from firmware/builds.conf."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import ConfigError
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
    """The firmware tree: $SPDLAB_FIRMWARE_DIR, else firmware/ in the project.

    Raises:
        ConfigError: $SPDLAB_FIRMWARE_DIR is not a directory holding a builds.conf.
    """
    env = os.environ.get("SPDLAB_FIRMWARE_DIR")
    if not env:
        return project_root() / "firmware"
    path = Path(env).resolve()
    # Without this check every build name would be unknown, or the defaults, silently.
    if not path.is_dir():
        raise ConfigError(f"SPDLAB_FIRMWARE_DIR: {env} is not a directory")
    if not (path / "builds.conf").is_file():
        raise ConfigError(f"SPDLAB_FIRMWARE_DIR: {env} holds no builds.conf: not a firmware tree")
    return path


def binary_path(build: str) -> Path:
    """Where `make -C firmware BUILD=<build>` puts netkeyd."""
    return firmware_dir() / "build" / build / "netkeyd"
