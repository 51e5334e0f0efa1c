"""What a run left behind: namespaces, links, containers, VMs and other processes.

Found from the names spdlab gives things and from the runs folder, never from what a run
recorded: the check must see what state.json failed to list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from orchestrator.lab.load import load_lab
from orchestrator.runs import RunDir, list_runs
from orchestrator.targets import cleanup
from orchestrator.targets.session import LabRun
from orchestrator.teardown import down_all

DOCKER_SOCK = "/var/run/docker.sock"


def _shorts(runs: Path) -> list[str]:
    return [RunDir(r, runs).short for r in list_runs(runs)]


def namespaces(runs: Path) -> list[str]:
    """Network namespaces named after a run under `runs`."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    shorts = _shorts(runs)
    return [n for n in ns.split() if any(n.startswith(f"spdlab-{s}-") for s in shorts)]


def links(runs: Path) -> list[str]:
    """Links in this namespace named after a run (veths are `s<short>…`)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    shorts = _shorts(runs)
    return [f"link {n}" for n in names if any(n.startswith(f"s{s}") for s in shorts)]


def containers(runs: Path) -> list[str]:
    """Containers labelled with a run under `runs` (none when no docker daemon answers)."""
    if not os.path.exists(DOCKER_SOCK):
        return []
    import docker
    import requests

    from orchestrator.targets.dockerapi import RUN_LABEL

    try:
        client = docker.DockerClient(base_url=f"unix://{DOCKER_SOCK}", timeout=30)
        found = client.api.containers(all=True, filters={"label": RUN_LABEL})
    except (docker.errors.DockerException, requests.ConnectionError):
        return []  # no daemon: it runs no container
    ids = set(list_runs(runs))
    return [f"container {c['Names'][0]}" for c in found if c["Labels"].get(RUN_LABEL) in ids]


def _mentions(pid: str, text: bytes) -> bool:
    for name in ("cmdline", "environ"):
        try:
            if text in Path(f"/proc/{pid}/{name}").read_bytes():
                return True
        except OSError:
            pass
    return False


def processes(runs: Path) -> list[str]:
    """Processes (VMs included) whose command line or environment names `runs`."""
    me, text = str(os.getpid()), str(runs).encode()
    left = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or d.name == me or not _mentions(d.name, text):
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmd and "pytest" not in cmd:
            left.append(f"{d.name} {cmd}")
    return left


def leftovers(runs: Path) -> list[str]:
    """Everything any run under `runs` left behind."""
    return namespaces(runs) + links(runs) + containers(runs) + processes(runs)


def short_runs(prefix: str) -> Iterator[Path]:
    """A module's runs folder under /tmp (Unix socket paths stay under 108 bytes): every
    run in it taken down afterwards, and nothing left behind."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    yield d
    down_all(d)  # a run already down with nothing left over is not probed again
    assert leftovers(d) == []
    shutil.rmtree(d, ignore_errors=True)


def lab_up(lab_file: Path, runs: Path) -> Iterator[LabRun]:
    """A lab brought up for a module, torn down from state.json alone, as after a crash."""
    lr = LabRun.up(load_lab(lab_file), base=runs)
    try:
        yield lr
    finally:
        again = LabRun.open(lr.run_id, base=runs)
        assert again.down() == []
        assert not any(cleanup.still_there(r) for r in again.state.resources())
