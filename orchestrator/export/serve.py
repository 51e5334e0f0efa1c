"""serve(): one run's exporter kept up until stopped, with file_sd and optional pushes."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import InfraError, SpdlabError, WriteError
from orchestrator.export.exporter import DEFAULT_ADDR, Exporter
from orchestrator.export.file_sd import FILE_SD_NAME, remove_file_sd, write_file_sd
from orchestrator.export.pushgateway import push_run_summary
from orchestrator.export.runsel import resolve_run

log = logging.getLogger(__name__)
POLL_S = 2.0


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def serve(
    spec: str | None,
    *,
    addr: str = DEFAULT_ADDR,
    scrape_timeout: float = 2.0,
    pushgateway: str | None = None,
    file_sd: bool = True,
    stop: threading.Event,
    on_start: Callable[[Path, str], None] | None = None,
) -> None:
    """Export the run `spec` names (see resolve_run) until `stop` is set.

    Writes runs/<id>/prometheus-targets.json with the bound address (and removes it on
    the way out if it is still ours); pushes the run summary to `pushgateway` whenever
    result.json changes.
    """
    run_dir = resolve_run(spec)
    if pushgateway:
        from orchestrator.run.preflight import PUSH_FIX
        from orchestrator.targets.preflight import reachable, require

        require([reachable(pushgateway, "--pushgateway", PUSH_FIX)])
    exporter = Exporter.for_run(run_dir, scrape_timeout=scrape_timeout)
    bound = exporter.start(addr)
    sd_path = run_dir / FILE_SD_NAME
    written: str | None = None
    try:
        if file_sd:
            try:
                write_file_sd(run_dir, bound, _lab_name(run_dir))
            except WriteError as e:  # a read-only runs folder: the list is all that needs it
                raise InfraError(f"{e}; fix: --no-file-sd serves without it") from None
            written = sd_path.read_text()
        if on_start:
            on_start(run_dir, exporter.url)
        pushed: float | None = None
        while True:
            now = _mtime(run_dir / "result.json")
            if pushgateway and now is not None and now != pushed:
                try:
                    push_run_summary(pushgateway, run_dir)
                    pushed = now
                except SpdlabError as e:
                    log.warning("%s", e)
            if stop.wait(POLL_S if pushgateway else 3600):
                break
    finally:
        exporter.stop()
        if written is not None and sd_path.exists() and sd_path.read_text() == written:
            remove_file_sd(run_dir)


def _lab_name(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "state.json").read_text()).get("lab_name") or "")
    except (OSError, ValueError):
        return ""
