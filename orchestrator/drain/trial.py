"""A finished Drain as the result model's Trial: every measure a value or not observable."""

from __future__ import annotations

import time
from collections.abc import Mapping

from orchestrator.drain.record import Drain
from orchestrator.result.measure import value_or
from orchestrator.result.model import Measures, TickRecord, Trial

NO_TIMER_COUNT = "this firmware does not count the timer's unlinks apart"


def measures(d: Drain, unobservable: Mapping[str, str]) -> Measures:
    """The trial's measures; those in `unobservable` (measure → why) are NotObservable."""
    tot = d.totals()
    if d.timer_unlinked_during_delete is None:
        unobservable = {"timer_unlinked_during_delete": NO_TIMER_COUNT, **unobservable}
    raw = {
        "removed_by_delete": d.removed_by_delete,
        "timer_unlinked_during_delete": d.timer_unlinked_during_delete,
        "delete_span_ticks": d.delete_span_ticks,
        "drain_ticks": d.drain_ticks,
        "drain_ticks_from_issue": d.drain_ticks_from_issue,
        "free_ticks": d.free_ticks,
        "premature_frees": d.premature_frees,
        "use_after_free": d.use_after_free,
        "walked_per_lookup": d.walked_per_lookup(),
        "esp_ok": tot["esp_ok"],
        "esp_drop": tot["esp_drop"],
    }
    return Measures(**{k: value_or(v, unobservable.get(k)) for k, v in raw.items()})


def trial(n: int, d: Drain, unobservable: Mapping[str, str]) -> Trial:
    return Trial(
        trial=n,
        issue_tick=d.issue_tick,
        delete_tick=d.delete_tick,
        linked_after_delete=d.linked_after_delete,
        allocated_after_delete=d.allocated_after_delete,
        timed_out=d.timed_out,
        completed_at=time.time() if d.complete else None,
        measures=measures(d, unobservable),
        series=d.series(),
        records=[TickRecord.model_validate(r) for r in d.records],
    )
