"""drain.png: the drain of every target, and its memory findings, in one figure.

Ticks run on a symlog axis (linear up to 1, logarithmic beyond), so a drain of 0 to 3
ticks and one of 2000 both show; each line starts at the policies linked when the
delete was issued and ends with a mark where the drain ended.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator import atomic
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import TargetResult

STYLES = ("-", "--", "-.", ":")


def plot(targets: Iterable[TargetResult], path: Path, title: str = "", linear: bool = False,
         ) -> None:  # fmt: skip
    """Three panels: still linked, still allocated (each target's first trial, ticks since
    the delete was issued), and premature frees and use after free per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [t for t in targets if t.trials]
    # Constrained: each panel gets the margin its own labels need (the findings' long
    # target names would widen every gap under tight_layout).
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5), width_ratios=(1, 1, 0.8),
                                        layout="constrained")  # fmt: skip
    hardware = len({t.labels.get("hardware", "") for t in shown}) > 1
    for i, t in enumerate(shown):
        style = {"linestyle": STYLES[i % len(STYLES)], "color": f"C{i % 10}"}
        _lines(ax1, ax2, t, _label(t, hardware), style)
    for ax, what in ((ax1, "linked"), (ax2, "allocated")):
        ax.set_title(f"deleted policies still {what}")
        ax.set_xlabel("ticks since the delete was issued" + ("" if linear else " (symlog)"))
        ax.grid(True, which="both", alpha=0.3)
        if not linear:
            ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
    ax1.set_ylabel("policies")
    _findings(ax3, shown, hardware)
    if title:
        fig.suptitle(title)
    handles, labels = ax1.get_legend_handles_labels()
    if labels:  # no trial (a run that never started): no legend
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4),
                   fontsize="small")  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


def _label(t: TargetResult, hardware: bool) -> str:
    extra = [t.build] + (["synthetic"] if t.synthetic else [])
    extra += [t.labels.get("hardware", "")] if hardware else []
    return f"{t.name} ({', '.join(extra)})"


def _lines(ax1: Any, ax2: Any, t: TargetResult, label: str, style: dict[str, Any]) -> None:
    """One target's first trial, from the issue (everything linked) to its last record."""
    tr = t.trials[0]
    if not tr.records:
        return
    first = tr.records[0]
    n = first.linked + first.unlinked  # linked when the delete was issued
    xs = [0] + [r.tick - tr.issue_tick for r in tr.records]
    linked = [n] + [r.linked for r in tr.records]
    alloc = [n] + [r.allocated for r in tr.records]
    ax1.step(xs, linked, where="post", label=label, **style)
    ax2.step(xs, alloc, where="post", label=label, **style)
    end = tr.measures.drain_ticks_from_issue
    if isinstance(end, int):
        ax1.plot([end], [min(linked)], "o", color=style["color"])  # the drain's end


def _findings(ax: Any, targets: list[TargetResult], hardware: bool) -> None:
    """Premature frees and use after free per target: netipsec's finding."""
    names = [_label(t, hardware) for t in targets]
    ys = range(len(targets))
    top = 0
    for off, key, what in ((-0.2, "premature_frees", "premature frees"),
                           (0.2, "use_after_free", "use after free")):  # fmt: skip
        vals = [getattr(t.measures, key) for t in targets]
        nums = [0 if isinstance(v, NotObservable) else v for v in vals]
        top = max([top, *nums])
        bars = ax.barh([y + off for y in ys], nums, height=0.4, label=what)
        for b, v in zip(bars, vals, strict=True):
            text = "— not observable" if isinstance(v, NotObservable) else str(v)
            ax.annotate(text, (b.get_width(), b.get_y() + b.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize="small")  # fmt: skip
    ax.set_yticks(list(ys), names, fontsize="small")
    ax.invert_yaxis()
    ax.set_title("premature frees and use after free", pad=22)
    ax.set_xlabel("policies (frees) / flows' touches (use after free)")
    ax.set_xlim(0, max(1, top) * 1.35)
    # Above the bars, never on them: any row may hold the largest.
    ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
              frameon=False, borderaxespad=0.2)  # fmt: skip
