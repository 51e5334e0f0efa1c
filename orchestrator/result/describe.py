"""What a run did, in words: titles say "in-use" only when traffic held the policies."""

from __future__ import annotations

from orchestrator.drain.stats import DETERMINISTIC
from orchestrator.lab.model import Scenario
from orchestrator.result.model import Baseline, Comparison

VERBS = {
    "flush": "SPDFLUSH",
    "delete": "SPDDELETE",
    "delete2": "SPDDELETE2",
    "expire": "expiry",
    "spdupdate": "SPDUPDATE",
}


def held(sc: Scenario) -> bool:
    """Did traffic hold every policy (a reference per flow) when the delete came?"""
    return sc.traffic != "none"


def title(sc: Scenario) -> str:
    """ "SPDDELETE of 2000 in-use policies" or "... of 2000 policies (no traffic)"."""
    what = f"{VERBS.get(sc.delete, sc.delete)} of {sc.policies}"
    return f"{what} in-use policies" if held(sc) else f"{what} policies (no traffic held them)"


def clock(sc: Scenario, tick_ms: int) -> str:
    """Who ran the ticks: "tick 15 ms (...)", or spdlab in a deterministic run."""
    if sc.deterministic:
        return f"deterministic: spdlab ran every tick, seed {sc.seed}"
    return f"tick {tick_ms} ms (the kernel's is 1000 ms)"


def senders(traffic: list[dict]) -> str:
    """Who sent the traffic, from result.json's `traffic` (each trial's sender stats)."""
    seen = []
    for st in traffic:
        who = st.get("sender", "python")
        n = st.get("procs", 1)
        words = "Python sender" if who == "python" else (
            f"native sender (espgen, {n} process{'es' if n != 1 else ''})")  # fmt: skip
        if words not in seen:
            seen.append(words)
    return "traffic from the " + " and the ".join(seen) if seen else "no traffic sent"


def ticks_at_1hz(ticks: object) -> str:
    """Ticks as the time they take at the kernel's 1 Hz timer."""
    if not isinstance(ticks, int):
        return "never" if ticks is None else "—"
    m, s = divmod(ticks, 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def stats_line(c: Comparison) -> str:
    """K, and each measure's p-value and interval of the difference of medians."""
    parts = [f"K={c.k[0]}/{c.k[1]}"]
    if c.method == DETERMINISTIC:  # compared exactly: no p-value or interval to show
        return f"{parts[0]}; compared exactly, no rank test"
    for t in c.tests:
        p = "—" if t.p_value is None else f"{t.p_value:.3g}"
        ci = "—" if t.interval is None else f"[{t.interval[0]:.3g}, {t.interval[1]:.3g}]"
        parts.append(f"{t.measure.replace('_', ' ')} p={p} Δ{ci}")
    return "; ".join(parts)


def baseline_changed(b: Baseline) -> str:
    """What changed from the baseline run, as `build@hardware` words, or "nothing"."""
    return ", ".join(b.changed) if b.changed else "nothing"


def baseline_shown(b: Baseline) -> list[Comparison]:
    """The baseline comparisons a reader needs: every one that is not "no effect"."""
    return [c for c in b.comparisons if c.verdict != "no effect"]
