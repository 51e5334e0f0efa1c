"""The run's Prometheus file_sd target list.

Written twice: runs/<id>/prometheus-targets.json, the run's own record, and
runs/prometheus-sd/<id>.json, which Prometheus reads: file_sd allows a wildcard only
in a path's last element, so `runs/*/prometheus-targets.json` is not a valid pattern
and every run's list must sit in one folder (`runs/prometheus-sd/*.json`).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator import atomic
from orchestrator.errors import WriteError

FILE_SD_NAME = "prometheus-targets.json"
SD_DIR = "prometheus-sd"


def sd_paths(run_dir: Path | str) -> tuple[Path, Path]:
    """(the run's own copy, the one in the shared folder Prometheus watches)."""
    run_dir = Path(run_dir)
    return run_dir / FILE_SD_NAME, run_dir.parent / SD_DIR / f"{run_dir.name}.json"


def write_file_sd(run_dir: Path | str, metrics_addr: str, lab: str = "") -> Path:
    """Point Prometheus (file_sd_configs) at the run's exporter.

    Args:
        run_dir: runs/<id>/.
        metrics_addr: the exporter's bound "host:port".
        lab: the lab's name, as a `lab` target label (optional). No run id label: series
            stay the same from one run to the next.

    Returns:
        The run's own copy (both are written atomically: Prometheus may read at any time).
    """
    labels = {"lab": lab} if lab else {}
    doc = [{"targets": [metrics_addr], "labels": labels}]
    own, shared = sd_paths(run_dir)
    try:
        shared.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(shared.parent, e) from None
    atomic.write_json(own, doc)
    atomic.write_json(shared, doc)
    return own


def remove_file_sd(run_dir: Path | str) -> None:
    """Stop Prometheus scraping the run (its targets go when the file goes)."""
    for p in sd_paths(run_dir):
        p.unlink(missing_ok=True)
