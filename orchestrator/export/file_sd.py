"""The run's Prometheus file_sd target list: runs/<id>/prometheus-targets.json."""

from __future__ import annotations

from pathlib import Path

from orchestrator.targets.state import write_json_atomic

FILE_SD_NAME = "prometheus-targets.json"


def write_file_sd(run_dir: Path | str, metrics_addr: str, lab: str = "") -> Path:
    """Point Prometheus (file_sd_configs) at the run's exporter.

    Args:
        run_dir: runs/<id>/.
        metrics_addr: the exporter's bound "host:port".
        lab: the lab's name, as a `lab` target label (optional). No run id label: series
            stay the same from one run to the next.

    Returns:
        The file written (atomically: Prometheus may read it at any time).
    """
    run_dir = Path(run_dir)
    labels = {"lab": lab} if lab else {}
    path = run_dir / FILE_SD_NAME
    write_json_atomic(path, [{"targets": [metrics_addr], "labels": labels}])
    return path


def remove_file_sd(run_dir: Path | str) -> None:
    """Stop Prometheus scraping the run (the file disappearing drops its targets)."""
    (Path(run_dir) / FILE_SD_NAME).unlink(missing_ok=True)
