"""Remove recorded resources: processes, containers, namespaces, links, files. Idempotent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def process_matches(pid: int, match: str) -> bool:
    """True if `pid` is alive and its command line contains `match` (guards PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return match in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is as good as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids: Iterable[int], grace: float = 1.0) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns PIDs still alive."""
    pids = [p for p in pids if p > 1]
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    for p in pids:
        if _alive(p):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if _alive(p)]


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(w) for w in r.stdout.split() if w.isdigit()]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def remove(resource: dict[str, Any]) -> str | None:
    """Remove one resource if it is still there; returns a problem, or None."""
    kind = resource["type"]
    if kind == "process":
        pid = int(resource["pid"])
        if process_matches(pid, resource["match"]) and kill_pids([pid]):
            return f"process {pid} survived SIGKILL"
    elif kind == "container":
        from orchestrator.targets.dockerapi import remove_container

        return remove_container(resource)
    elif kind == "netns":
        name = resource["name"]
        if netns_exists(name):
            left = kill_pids(netns_pids(name), grace=0.5)
            if left:
                return f"netns {name}: processes {left} survived SIGKILL"
            r = _ip("netns", "del", name)
            if r.returncode != 0 and netns_exists(name):
                return f"netns {name}: {r.stderr.strip()}"
    elif kind == "link":
        ns, name = resource.get("netns"), resource["name"]
        prefix = ["-n", ns] if ns else []
        if (ns is None or netns_exists(ns)) and _ip(
            *prefix, "link", "show", "dev", name
        ).returncode == 0:
            r = _ip(*prefix, "link", "del", "dev", name)
            if r.returncode != 0 and _ip(*prefix, "link", "show", "dev", name).returncode == 0:
                return f"link {name}: {r.stderr.strip()}"
    elif kind == "file":
        try:
            Path(resource["path"]).unlink(missing_ok=True)
        except OSError as e:
            return f"{resource['path']}: {e.strerror}"
    return None


def remove_all(resources: list[dict[str, Any]]) -> list[str]:
    """Remove resources newest first: processes, containers, links, namespaces, files."""
    order = {"process": 0, "container": 1, "link": 2, "netns": 3, "file": 4}
    problems = []
    for r in sorted(reversed(resources), key=lambda r: order.get(r["type"], 9)):
        problem = remove(r)
        if problem:
            problems.append(problem)
    return problems


def still_there(resource: dict[str, Any]) -> bool:
    """Whether a recorded resource still exists (for tests and `status`)."""
    kind = resource["type"]
    if kind == "process":
        return process_matches(int(resource["pid"]), resource["match"])
    if kind == "container":
        from orchestrator.targets.dockerapi import container_exists

        return container_exists(resource)
    if kind == "netns":
        return netns_exists(resource["name"])
    if kind == "link":
        ns = resource.get("netns")
        if ns is not None and not netns_exists(ns):
            return False
        prefix = ["-n", ns] if ns else []
        return _ip(*prefix, "link", "show", "dev", resource["name"]).returncode == 0
    if kind == "file":
        return Path(resource["path"]).exists()
    return False
