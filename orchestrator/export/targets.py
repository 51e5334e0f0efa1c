"""Which targets the exporter reads: ExportTarget records, from a run directory or by hand."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import buildsconf


@dataclass(frozen=True)
class ExportTarget:
    """One gateway as the exporter labels it, and where its admin socket is."""

    name: str
    build: str
    tree: str = ""
    patches: tuple[str, ...] = ()
    kind: str = ""
    hardware: str = ""
    admin_path: str = ""
    synthetic: bool = False  # a synthetic control (`@synthetic` in either builds.conf)

    @property
    def labels(self) -> tuple[str, str]:
        """The (target, build) label values every per-target series carries."""
        return self.name, self.build


def build_recipes(kernels: Any = None) -> dict[str, buildsconf.Recipe]:
    """Every build by name: firmware/builds.conf, kernels/builds.conf and the lab's own
    kernels (lab.json's `kernels`); a file that cannot be read gives none."""
    return buildsconf.every(kernels if isinstance(kernels, dict) else None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _obj(doc: Any) -> dict[str, Any]:
    return doc if isinstance(doc, dict) else {}


def _admin_path(run_dir: Path, name: str, rec: dict[str, Any]) -> str:
    # Drivers record the target's folder ("dir"); netkeyd's admin socket is admin.sock in it.
    if rec.get("admin"):
        return str(rec["admin"])
    folder = Path(rec["dir"]) if rec.get("dir") else run_dir / "targets" / name
    return str(folder / "admin.sock")


def targets_from_run(run_dir: Path | str) -> list[ExportTarget]:
    """The targets a run recorded, sorted by name.

    Reads runs/<id>/state.json ("targets": {name: {kind, build, dir, ...}}) and, for labels,
    runs/<id>/lab.json (the resolved lab). Either may be missing: state.json alone gives
    no hardware label, lab.json alone is used when the run never recorded its targets.

    Args:
        run_dir: the run's folder.

    Returns:
        One ExportTarget per target; empty when neither file can be read.
    """
    run_dir = Path(run_dir)
    state = _obj(_read_json(run_dir / "state.json"))
    lab = _obj(_read_json(run_dir / "lab.json"))
    listed = lab.get("targets") if isinstance(lab.get("targets"), list) else []
    specs = {t["name"]: t for t in listed if isinstance(t, dict) and "name" in t}
    recs = _obj(state.get("targets")) or {n: {} for n in specs}
    recipes = build_recipes(lab.get("kernels"))
    out = []
    for name in sorted(recs):
        rec, spec = _obj(recs[name]), specs.get(name, {})
        build = rec.get("build") or spec.get("build") or ""
        r = recipes.get(build, buildsconf.Recipe(build, ""))
        labels = spec.get("labels") or rec.get("labels") or {}
        out.append(
            ExportTarget(
                name=name,
                build=build,
                tree=r.tree,
                patches=r.patches,
                kind=rec.get("kind") or spec.get("kind") or "",
                hardware=str(labels.get("hardware", "")),
                admin_path=_admin_path(run_dir, name, rec),
                synthetic=r.synthetic,
            )
        )
    return out


class RunTargets:
    """RunTargets — a run's target list, read again whenever state.json or lab.json changes.

    Called at scrape time, so targets recorded after the exporter started are exported too.
    """

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self._key: tuple[float, ...] | None = None
        self._targets: list[ExportTarget] = []

    def _stamp(self) -> tuple[float, ...]:
        out = []
        for f in ("state.json", "lab.json"):
            try:
                out.append(os.stat(self.run_dir / f).st_mtime)
            except OSError:
                out.append(0.0)
        return tuple(out)

    def __call__(self) -> list[ExportTarget]:
        key = self._stamp()
        if key != self._key:
            self._targets, self._key = targets_from_run(self.run_dir), key
        return self._targets
