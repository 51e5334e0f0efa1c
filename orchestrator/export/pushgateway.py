"""Per-run summaries on a Pushgateway: drain ticks and seconds and verdicts, grouped by run."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway

from orchestrator.errors import InfraError
from orchestrator.export.collectors import DrainCollector
from orchestrator.targets.preflight import url_why

JOB = "spdlab"


def grouping_key(run_id: str) -> dict[str, str]:
    return {"run": run_id}


def push_run_summary(url: str, run_dir: Path | str, timeout: float = 10.0) -> None:
    """Replace the run's group on the Pushgateway with what result.json says now.

    Args:
        url: the Pushgateway, e.g. http://127.0.0.1:9091.
        run_dir: runs/<id>/; the run id is its name.

    Raises:
        InfraError: the Pushgateway refused or could not be reached.
    """
    run_dir = Path(run_dir)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DrainCollector(run_dir / "result.json"))
    try:
        push_to_gateway(url, JOB, registry, grouping_key(run_dir.name), timeout=timeout)
    except OSError as e:
        raise InfraError(f"--pushgateway {url}: {url_why(e)}", step="push") from e


def delete_run_summary(url: str, run_id: str, timeout: float = 10.0) -> None:
    """Remove the run's group from the Pushgateway (on `down`).

    Raises:
        InfraError: the Pushgateway refused or could not be reached.
    """
    try:
        delete_from_gateway(url, JOB, grouping_key(run_id), timeout=timeout)
    except OSError as e:
        raise InfraError(f"--pushgateway {url}: {url_why(e)}: the group run={run_id} stays; "
                         f"spdlab down {run_id} again once it answers") from e  # fmt: skip
