"""The docker SDK calls of the docker kind: the client, netkeyd images, container removal.

One FROM scratch image per firmware build, built once and kept: it holds nothing but a
static netkeyd (`make -C firmware BUILD=<b> STATIC=1`), and its labels name the build, its
tree, its patch series with their hashes, and the binary's hash, which decides whether a
cached image is still the build's. Every SDK import is inside the function that uses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import InfraError
from orchestrator.lab.builds import firmware_dir
from orchestrator.runs import project_root

DOCKERFILE = project_root() / "containers" / "netkeyd" / "Dockerfile"
LABEL = "org.spdlab"
RUN_LABEL = f"{LABEL}.run"  # on every container: the run it belongs to
DEFAULT_HOST = "unix:///var/run/docker.sock"


def image_tag(build: str) -> str:
    """`spdlab/netkeyd:<build>-<netkeyd sha256[:12]>`, `+` spelled `-` as a tag allows.

    The binary's hash is in the tag so that two checkouts with different firmware never
    replace each other's image while one of them runs.
    """
    return f"spdlab/netkeyd:{build.replace('+', '-')}-{_sha256(static_binary(build))[:12]}"


def static_binary(build: str) -> Path:
    return firmware_dir() / "build" / build / "netkeyd-static"


def make_static(builds: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Build every static netkeyd the lab needs, one make per core at a time.

    Args:
        builds: firmware builds.
        env: make's environment (default: this process's).

    Raises:
        InfraError: a build failed (its last line of output says why).
    """

    def one(build: str) -> str | None:
        argv = ["make", "-s", "-C", str(firmware_dir()), f"BUILD={build}", "STATIC=1"]
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
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
    from orchestrator import buildsconf

    r = buildsconf.read().get(build)
    return (r.tree, list(r.patches)) if r else ("unknown", [])


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
        if all((client.images.get(tag).labels or {}).get(k) == v for k, v in labels.items()):
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
    _prune(client, build, tag)
    return tag


def _prune(client: Any, build: str, keep: str) -> None:
    """Remove the build's superseded images: a day old, and used by no container (docker
    refuses to remove those), so that a checkout that just built one still finds it."""
    import docker

    cutoff = time.time() - 86400
    with contextlib.suppress(docker.errors.DockerException):
        for image in client.images.list(filters={"label": f"{LABEL}.build={build}"}):
            if keep in image.tags or _created(image) > cutoff:
                continue
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(image.id)


def _created(image: Any) -> float:
    """An image's creation time (epoch seconds), from its RFC 3339 `Created`."""
    stamp = str(image.attrs.get("Created", ""))[:19]
    try:
        return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return time.time()


def daemon_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _why(e: BaseException) -> str | None:
    """The system error under the SDK's wrapped ones ("Connection refused"), if any."""
    seen, todo = set(), [e]
    while todo:
        x = todo.pop(0)
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno is not None:
            return x.strerror or str(x)
        todo += [a for a in x.args if isinstance(a, BaseException)]
        todo += [c for c in (x.__cause__, x.__context__) if c is not None]
    return None


def unreachable(e: BaseException) -> InfraError:
    why = _why(e) or str(e).splitlines()[0]
    return InfraError(f"dockerd not reachable at {daemon_address()} ({why})")


def daemon_unmet(timeout: float = 5.0) -> Any:
    """The precondition "dockerd answers at DOCKER_HOST": an Unmet naming the fix, or None."""
    from orchestrator.targets.preflight import Unmet

    try:
        import docker

        docker.from_env(timeout=timeout).ping()
        return None
    except ImportError:
        return None  # the SDK's own precondition reports it
    except docker.errors.DockerException as e:
        addr = daemon_address()
        if addr != DEFAULT_HOST:
            fix = f"start a dockerd listening there (dockerd -H {addr}), or unset DOCKER_HOST"
        elif shutil.which("dockerd") is None:
            fix = "apt-get install docker.io"
        else:
            fix = "systemctl start docker"
        return Unmet(str(unreachable(e)), fix)


def docker_client(step: str) -> Any:
    """A docker.DockerClient for the daemon at DOCKER_HOST (default /var/run/docker.sock).

    Raises:
        InfraError: the SDK is missing or the daemon does not answer.
    """
    try:
        import docker
    except ImportError as e:
        raise InfraError("the docker SDK is not installed (make venv)", step=step) from e
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as e:
        raise InfraError(str(unreachable(e)), step=step) from e
    return client


def remove_container(resource: dict[str, Any]) -> str | None:
    """Remove a recorded container if it is still there and carries our run's label."""
    name = resource["name"]
    try:
        import docker

        c = docker.from_env(timeout=30).containers.get(name)
        if (c.labels or {}).get(RUN_LABEL) == resource["run"]:
            c.remove(force=True)
    except ImportError:
        return f"container {name}: the docker SDK is not installed"
    except docker.errors.NotFound:
        return None
    except docker.errors.DockerException as e:
        return f"container {name}: {unreachable(e) if _why(e) else e}"
    return None


def container_exists(resource: dict[str, Any]) -> bool:
    """Whether a recorded container of our run is still there (False if docker is gone)."""
    try:
        import docker

        c = docker.from_env(timeout=30).containers.get(resource["name"])
    except Exception:
        return False
    return (c.labels or {}).get(RUN_LABEL) == resource["run"]


def container_logs(container: Any, tail: int | str = 5) -> str:
    """The container's last output lines (netkeyd's fatal message goes to stderr)."""
    try:
        return container.logs(tail=tail).decode(errors="replace").strip() or "no output"
    except Exception as e:
        return f"no logs: {e}"
