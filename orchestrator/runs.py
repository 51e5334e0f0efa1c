"""Run directories: `runs/<run-id>/` holds everything one `spdlab up` made and recorded."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import ConfigError

RUN_ID_CHARS = "0123456789abcdef"


def project_root() -> Path:
    """The source tree spdlab runs from (firmware/, playbooks/, labs/)."""
    return Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """Where runs live: $SPDLAB_RUNS_DIR, else runs/ in the project."""
    env = os.environ.get("SPDLAB_RUNS_DIR")
    return Path(env).resolve() if env else project_root() / "runs"


def new_run_id(now: float | None = None) -> str:
    """A sortable run id: `20261127-061500-ab12` (UTC)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(2)}"


def run_short(run_id: str) -> str:
    """Four hex digits naming the run's namespaces and links (`spdlab-<short>-...`)."""
    return hashlib.sha1(run_id.encode()).hexdigest()[:4]


class RunDir:
    """One run's folder: state.json, inventory.yml, ansible/, targets/<name>/."""

    def __init__(self, run_id: str, base: Path | None = None):
        self.run_id = run_id
        self.short = run_short(run_id)
        self.path = (base or runs_dir()) / run_id

    @classmethod
    def create(cls, base: Path | None = None, free: Callable[[str], bool] | None = None) -> RunDir:
        """Allocate a fresh run id and its folder.

        Args:
            free: whether the names a run's short id gives (namespaces, links) are free here.
        """
        base = base or runs_dir()
        base.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            run = cls(new_run_id(), base)
            if free is not None and not free(run.short):
                continue
            try:
                run.path.mkdir()
            except FileExistsError:
                continue
            return run
        raise ConfigError(f"cannot allocate a run directory under {base}")

    @classmethod
    def find(cls, run_id: str | None = None, base: Path | None = None) -> RunDir:
        """An existing run by id (or unique prefix); None means the latest run.

        Raises:
            ConfigError: no such run.
        """
        ids = list_runs(base)
        if not ids:
            raise ConfigError(f"no runs recorded under {base or runs_dir()}")
        if run_id is None:
            return cls(ids[-1], base)
        matches = [i for i in ids if i == run_id] or [i for i in ids if i.startswith(run_id)]
        if len(matches) != 1:
            why = "no such run" if not matches else "ambiguous run id"
            raise ConfigError(f"{why} '{run_id}' under {base or runs_dir()}")
        return cls(matches[0], base)

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def inventory(self) -> Path:
        return self.path / "inventory.yml"

    @property
    def ansible_dir(self) -> Path:
        return self.path / "ansible"

    def target_dir(self, name: str) -> Path:
        return self.path / "targets" / name


def list_runs(base: Path | None = None) -> list[str]:
    """Run ids that have a state file, oldest first."""
    base = base or runs_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "state.json").is_file())
