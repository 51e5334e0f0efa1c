"""Session checks: spdlab's tests run real namespaces, sockets and compilers.

A missing requirement stops the session with an error naming it; nothing is
skipped. `make test` installs what is missing before pytest starts.
"""

from __future__ import annotations

import os
import shutil

import pytest

NEEDS = ("ip", "cc", "make", "patch", "dockerd", "clang", "qemu-system-x86_64", "busybox",
         "qemu-system-aarch64", "aarch64-linux-gnu-gcc", "bison", "flex", "bc")  # fmt: skip


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [t for t in NEEDS if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.insert(0, "root")
    if missing:
        pytest.exit(
            f"spdlab tests need {', '.join(missing)}: run them with `make test` as root",
            returncode=2,
        )
