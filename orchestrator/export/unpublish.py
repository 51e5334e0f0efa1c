"""What a run published for monitoring, withdrawn when it goes down."""

from __future__ import annotations

from typing import Any

from orchestrator.errors import InfraError
from orchestrator.export.file_sd import remove_file_sd


def unpublish(lr: Any) -> list[str]:
    """Remove the run's Prometheus file_sd list and its Pushgateway group; returns problems."""
    remove_file_sd(lr.run.path)  # nothing left for Prometheus to scrape
    url = lr.state.doc.get("pushgateway")
    if not url:
        return []
    from orchestrator.export.pushgateway import delete_run_summary

    try:
        delete_run_summary(url, lr.run_id)
    except InfraError as e:
        return [str(e)]
    lr.state.doc.pop("pushgateway")
    lr.state.set()
    return []
