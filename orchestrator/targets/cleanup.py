"""Remove recorded resources: processes, containers, namespaces, links, files. Idempotent."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import proc

NETNS_DIR = Path("/run/netns")


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def process_matches(pid: int, match: str) -> bool:
    """True if `pid` is alive and its command line contains `match` (guards PID reuse)."""
    cmd = proc.cmdline(pid)
    return cmd is not None and match in cmd


def in_netns(name: str) -> Callable[[int], bool]:
    """A check: is a process still in namespace `name` (guards PID reuse)."""
    try:
        st = os.stat(NETNS_DIR / name)
    except OSError:
        return lambda pid: False
    want = (st.st_dev, st.st_ino)

    def check(pid: int) -> bool:
        try:
            ns = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            return False
        return (ns.st_dev, ns.st_ino) == want

    return check


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(w) for w in r.stdout.split() if w.isdigit()]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def _remove_process(r: dict[str, Any]) -> str | None:
    pid, match = int(r["pid"]), r["match"]
    if proc.stop_pids([pid], lambda p: process_matches(p, match)):
        return f"process {pid} survived SIGKILL"
    return None


def _remove_processes(r: dict[str, Any]) -> str | None:
    left = proc.stop_marked(r["env"])
    return f"processes {left} of the run ({r['env']}) survived SIGKILL" if left else None


def _remove_container(r: dict[str, Any]) -> str | None:
    from orchestrator.targets.dockerapi import remove_container

    return remove_container(r)


def _remove_netns(r: dict[str, Any]) -> str | None:
    name = r["name"]
    if not netns_exists(name):
        return None
    left = proc.stop_pids(netns_pids(name), in_netns(name))
    if left:
        return f"netns {name}: processes {left} survived SIGKILL"
    res = _ip("netns", "del", name)
    if res.returncode != 0 and netns_exists(name):
        return f"netns {name}: {res.stderr.strip()}"
    return None


def _link_there(r: dict[str, Any]) -> bool:
    ns = r.get("netns")
    if ns is not None and not netns_exists(ns):
        return False
    prefix = ["-n", ns] if ns else []
    return _ip(*prefix, "link", "show", "dev", r["name"]).returncode == 0


def _remove_link(r: dict[str, Any]) -> str | None:
    if not _link_there(r):
        return None
    prefix = ["-n", r["netns"]] if r.get("netns") else []
    res = _ip(*prefix, "link", "del", "dev", r["name"])
    if res.returncode != 0 and _link_there(r):
        return f"link {r['name']}: {res.stderr.strip()}"
    return None


def _remove_file(r: dict[str, Any]) -> str | None:
    try:
        Path(r["path"]).unlink(missing_ok=True)
    except OSError as e:
        return f"{r['path']}: {e.strerror}"
    return None


REMOVERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "process": _remove_process,
    "processes": _remove_processes,
    "container": _remove_container,
    "link": _remove_link,
    "netns": _remove_netns,
    "file": _remove_file,
}


def remove(resource: dict[str, Any]) -> str | None:
    """Remove one resource if it is still there; returns a problem, or None."""
    remover = REMOVERS.get(resource["type"])
    return remover(resource) if remover else None


def remove_all(resources: list[dict[str, Any]]) -> list[str]:
    """Remove resources newest first: processes, containers, links, namespaces, files.

    Each process is awaited until it has exited, so nothing recreates or holds what
    is removed after it.
    """
    order = {"process": 0, "processes": 0, "container": 1, "link": 2, "netns": 3, "file": 4}
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
    if kind == "processes":
        return bool(proc.pids_with_env(resource["env"]))
    if kind == "container":
        from orchestrator.targets.dockerapi import container_exists

        return container_exists(resource)
    if kind == "netns":
        return netns_exists(resource["name"])
    if kind == "link":
        return _link_there(resource)
    if kind == "file":
        return Path(resource["path"]).exists()
    return False
