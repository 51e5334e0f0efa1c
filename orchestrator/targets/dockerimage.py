"""netkeyd container images: one FROM scratch image per firmware build, built once and kept.

The image holds nothing but a static netkeyd (`make -C firmware BUILD=<b> STATIC=1`); its
labels name the build, its tree, its patch series with their hashes, and the binary's hash,
which decides whether a cached image is still the build's.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestrator.errors import InfraError
from orchestrator.lab.builds import firmware_dir
from orchestrator.runs import project_root

DOCKERFILE = project_root() / "containers" / "netkeyd" / "Dockerfile"
LABEL = "org.spdlab"


def image_tag(build: str) -> str:
    """`spdlab/netkeyd:<build>`, with `+` spelled `-` as a tag allows (canary-nextsp)."""
    return f"spdlab/netkeyd:{build.replace('+', '-')}"


def static_binary(build: str) -> Path:
    return firmware_dir() / "build" / build / "netkeyd-static"


def make_static(builds: Sequence[str]) -> None:
    """Build every static netkeyd the lab needs, one make per core at a time.

    Raises:
        InfraError: a build failed (its last line of output says why).
    """

    def one(build: str) -> str | None:
        argv = ["make", "-s", "-C", str(firmware_dir()), f"BUILD={build}", "STATIC=1"]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0 or not static_binary(build).is_file():
            tail = (r.stderr.strip() or r.stdout.strip() or "no binary").splitlines()[-1]
            return f"{build}: {tail}"
        return None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        errors = [e for e in pool.map(one, sorted(set(builds))) if e]
    if errors:
        raise InfraError("static firmware build failed: " + "; ".join(errors), step="build")


def _series(build: str) -> tuple[str, list[str]]:
    """(tree, patches) of a build, from firmware/builds.conf."""
    for raw in (firmware_dir() / "builds.conf").read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if words and words[0] == build:
            return words[1], words[2:]
    return "unknown", []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_labels(build: str) -> dict[str, str]:
    """The labels of a build's image: build, tree, patch series and hashes, binary hash."""
    tree, patches = _series(build)
    pdir = firmware_dir() / "patches"
    return {
        f"{LABEL}.build": build,
        f"{LABEL}.tree": tree,
        f"{LABEL}.patches": " ".join(patches),
        f"{LABEL}.patches.sha256": " ".join(_sha256(pdir / f"{p}.patch") for p in patches),
        f"{LABEL}.netkeyd.sha256": _sha256(static_binary(build)),
    }


def _context(build: str) -> io.BytesIO:
    """The build context as a tar in memory: the Dockerfile and the static netkeyd."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(DOCKERFILE, arcname="Dockerfile")
        info = tar.gettarinfo(static_binary(build), arcname="netkeyd")
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "", ""
        with open(static_binary(build), "rb") as f:
            tar.addfile(info, f)
    buf.seek(0)
    return buf


def ensure_image(client: Any, build: str) -> str:
    """The build's image, built unless a cached one carries the same netkeyd.

    Args:
        client: a docker.DockerClient.
        build: a firmware build whose static netkeyd exists.

    Returns:
        The image tag.
    """
    import docker

    tag, labels = image_tag(build), image_labels(build)
    try:
        have = client.images.get(tag).labels or {}
        if all(have.get(k) == v for k, v in labels.items()):
            return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.build(
            fileobj=_context(build),
            custom_context=True,
            tag=tag,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
        )
    except docker.errors.DockerException as e:
        raise InfraError(f"image {tag}: {e}", step="build") from e
    return tag
