"""Session checks: spdlab's tests run real namespaces, sockets and compilers.

A missing requirement of a selected test stops the session with an error naming it;
nothing is skipped. `make test` installs what is missing before pytest starts; with
`-m "not qemu and not docker"` only what the rest needs is checked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = ("root", "ip", "cc", "make", "patch")
# per marker (pyproject.toml): commands on PATH, or files deps.sh unpacks into .cache/
NEEDS: dict[str, tuple[str, ...]] = {
    "docker": ("dockerd",),
    "qemu": ("qemu-system-x86_64", "busybox"),
    "chromium": ("chromium",),
    "fuzz": ("clang",),
    "ssh": ("sshd", "ssh", "dropbear"),
    "kernel": ("qemu-system-aarch64", "aarch64-linux-gnu-gcc", "bison", "flex", "bc"),
    "prometheus": (
        ".cache/prometheus/usr/bin/prometheus",
        ".cache/prometheus/usr/bin/promtool",
        ".cache/pushgateway/usr/bin/prometheus-pushgateway",
    ),
}


KINDS = ("netns", "docker", "qemu")


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test parametrized over target kinds carries its kind's marker too."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("kind") if callspec else None
        if kind in KINDS:
            item.add_marker(kind)


def needed(items: list[pytest.Item]) -> list[str]:
    """What the selected tests need, base first, each once."""
    want = dict.fromkeys(BASE)
    for item in items:
        for mark in item.iter_markers():
            want.update(dict.fromkeys(NEEDS.get(mark.name, ())))
    return list(want)


def present(need: str) -> bool:
    if need == "root":
        return os.geteuid() == 0
    if "/" in need:
        return os.access(ROOT / need, os.X_OK)
    return shutil.which(need) is not None


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not session.items:
        return
    missing = [n for n in needed(session.items) if not present(n)]
    if missing:
        pytest.exit(
            f"spdlab tests need {', '.join(missing)}: run them with `make test` as root",
            returncode=2,
        )
