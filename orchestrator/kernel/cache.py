"""Where kernel builds live: a cache outside the clone, shared by runs, clones and CI.

$SPDLAB_KERNEL_CACHE (default /var/cache/spdlab/kernels)
  src/<version>/              Debian's linux-source tarball, unpacked once, never patched
  work/<version>/<arch>/src/  a hard-linked copy, patched in place (patch breaks the links)
  work/<version>/<arch>/obj/  the one O= directory per arch: each series rebuilds incrementally
  work/<version>/<arch>/applied.json   the series the work tree carries now
  out/<key>/                  the kernel image, its .config and meta.json, per cache key
  initramfs/<arch>-<hash>.cpio
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import InfraError

DEFAULT = "/var/cache/spdlab/kernels"


def root() -> Path:
    return Path(os.environ.get("SPDLAB_KERNEL_CACHE", DEFAULT))


def source_version(package: str) -> str:
    """The installed version of the source package (`6.1.192-3`).

    Raises:
        InfraError: the package is not installed.
    """
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    if r.returncode != 0 or not r.stdout.strip():
        raise InfraError(f"{package} is not installed: scripts/deps.sh kernel", step="kernel")
    return r.stdout.strip()


def tarball(package: str) -> Path:
    """/usr/src/linux-source-6.1.tar.xz for linux-source-6.1."""
    return Path("/usr/src") / f"{package}.tar.xz"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on path (created): one build per work tree at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
