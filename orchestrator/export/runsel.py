"""Which run a verb means: a run id, a runs/<id> path, or a lab file (its newest up run)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from orchestrator.errors import ConfigError
from orchestrator.runs import RunDir, list_runs, runs_dir


def _state(run_dir: Path) -> dict:
    try:
        doc = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _lab_name(path: Path) -> str | None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return doc.get("name") if isinstance(doc, dict) else None


def newest_up_run(lab_file: Path, base: Path | None = None) -> Path:
    """The newest run of `lab_file` whose phase is "up".

    A run belongs to the lab when state.json's `lab` is the same file, or, failing
    that, when its `lab_name` is the lab's `name:`.

    Raises:
        ConfigError: no such run.
    """
    base = base or runs_dir()
    want = lab_file.resolve()
    name = _lab_name(lab_file)
    for rid in reversed(list_runs(base)):
        st = _state(base / rid)
        if st.get("phase") != "up":
            continue
        same_file = bool(st.get("lab")) and Path(st["lab"]).resolve() == want
        if same_file or (name is not None and st.get("lab_name") == name):
            return base / rid
    raise ConfigError(f"no run of lab '{lab_file}' is up under {base}: run spdlab up first")


def resolve_run(spec: str | None, base: Path | None = None) -> Path:
    """LAB|RUN|None → the run folder.

    Args:
        spec: a lab file (.yaml/.yml), a run folder, a run id or unique prefix;
            None: the latest run.
        base: where runs live (default: runs_dir()).

    Raises:
        ConfigError: nothing matches.
    """
    if spec is not None:
        p = Path(spec)
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            return newest_up_run(p, base)
        if p.is_dir() and (p / "state.json").is_file():
            return p.resolve()
        if p.is_dir() and (p / "result.json").is_file():
            return p.resolve()
    return RunDir.find(spec, base).path
