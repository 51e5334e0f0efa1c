"""The one wrapper around ansible_runner.run: one args dict, a cheap event handler."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.runs import project_root

PLAYBOOKS = project_root() / "playbooks"
HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}

# (host, task name, "ok" | "failed" | "unreachable" | "skipped")
TaskEvent = Callable[[str, str, str], None]
# A task that works for many hosts at once names each one it failed for on its stderr.
FAILED_FOR = re.compile(r"^failed (\S+): (.*)$", re.M)


@dataclass
class PlaybookResult:
    """What one playbook run did, per host."""

    status: str  # successful | failed | canceled | timeout
    rc: int
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # host → ansible's message
    artifacts: str = ""
    batch_hosts: set[str] = field(default_factory=set)  # hosts whose failures name others

    @property
    def ok(self) -> bool:
        return self.status == "successful" and not self.failures

    def failed_hosts(self) -> list[str]:
        bad = set(self.failures)
        for key in ("failures", "dark"):
            bad |= {h for h, n in self.stats.get(key, {}).items() if n}
        return sorted(bad - (self.batch_hosts - set(self.failures)))


def default_forks(hosts: int) -> int:
    """Forks sized to the machine: gateways mostly wait on sockets, so a few per core."""
    return max(1, min(hosts, 16 * (os.cpu_count() or 1)))


def _message(res: dict[str, Any]) -> str:
    parts = [str(res.get("msg") or "").strip()]
    for key in ("stderr", "stdout"):
        text = str(res.get(key) or "").strip()
        if text:
            parts.append(text.splitlines()[-1])
            break
    return ": ".join(p for p in parts if p) or "failed"


def _handler(
    on_task: TaskEvent | None, failures: dict[str, str], batch_hosts: set[str]
) -> Callable[[dict], bool]:
    def handle(event: dict) -> bool:
        status = HOST_EVENTS.get(event.get("event", ""))
        if status is None:
            return True
        data = event.get("event_data", {})
        host, task = data.get("host", "?"), data.get("task", "")
        if status in ("failed", "unreachable") and not data.get("ignore_errors"):
            res = data.get("res") or {}
            named = FAILED_FOR.findall(str(res.get("stderr") or ""))
            for other, why in named:
                failures.setdefault(other, f"{task}: {why}")
            if named:
                batch_hosts.add(host)
            else:
                failures.setdefault(host, f"{task}: {_message(res)}")
        if on_task is not None:
            on_task(host, task, status)
        return True

    return handle


def run_playbook(
    playbook: str,
    *,
    inventory: Path,
    private_data_dir: Path,
    ident: str,
    forks: int,
    tags: Sequence[str] = (),
    on_task: TaskEvent | None = None,
    cancel: Callable[[], bool] | None = None,
    env: Mapping[str, str] | None = None,
    limit: Sequence[str] = (),
) -> PlaybookResult:
    """Run one playbook from playbooks/ with ansible_runner.

    Args:
        playbook: file name in playbooks/ (up.yml, down.yml).
        inventory: the run's inventory.yml.
        private_data_dir: runs/<id>/ansible; artifacts go to artifacts/<ident>/.
        ident: a name for this invocation (up-provision, down, ...).
        forks: parallel hosts.
        tags: run only these tags.
        on_task: called for every host's task result.
        cancel: polled; True stops the playbook (its process group is killed).
        env: variables set for ansible-playbook and every process it starts.
        limit: run only on these inventory hosts (default: all).

    Returns:
        Per-host stats and ansible's message for every failed host.
    """
    import ansible_runner

    failures: dict[str, str] = {}
    batch_hosts: set[str] = set()
    bindir = str(Path(sys.executable).parent)
    args: dict[str, Any] = {
        "private_data_dir": str(private_data_dir),
        "project_dir": str(PLAYBOOKS),
        "playbook": playbook,
        "inventory": str(inventory),
        "ident": ident,
        "forks": forks,
        "quiet": True,
        "event_handler": _handler(on_task, failures, batch_hosts),
        "cancel_callback": cancel or (lambda: False),
        "settings": {"pexpect_timeout": 0.2, "suppress_ansible_output": True},
        "envvars": {
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
            **(env or {}),
        },
    }
    if tags:
        args["tags"] = ",".join(tags)
    if limit:
        args["limit"] = ",".join(limit)
    private_data_dir.mkdir(parents=True, exist_ok=True)
    r = ansible_runner.run(**args)
    return PlaybookResult(
        status=r.status,
        rc=r.rc if r.rc is not None else -1,
        stats=r.stats or {},
        failures=failures,
        artifacts=str(r.config.artifact_dir),
        batch_hosts=batch_hosts,
    )
