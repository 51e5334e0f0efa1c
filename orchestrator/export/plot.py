"""drain.png: dead-linked and allocated deleted policies against ticks, one line per target."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from orchestrator import atomic
from orchestrator.result.model import TargetResult


def plot(targets: Iterable[TargetResult], path: Path, logx: bool = False, title: str = "") -> None:
    """One figure, two panels; each target's first trial, ticks since its delete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for t in targets:
        if not t.trials:
            continue
        tr = t.trials[0]
        xs = [r.tick - tr.issue_tick for r in tr.records]
        dead = [r.linked for r in tr.records]
        alloc = [r.allocated for r in tr.records]
        label = f"{t.name} ({t.build}{', synthetic' if t.synthetic else ''})"
        ax1.step(xs, dead, where="post", label=label)
        ax2.step(xs, alloc, where="post", label=label)
    ax1.set_title("deleted policies still linked")
    ax2.set_title("deleted policies still allocated")
    for ax in (ax1, ax2):
        ax.set_xlabel("ticks since the delete was issued")
        ax.grid(True, alpha=0.3)
        if logx:
            ax.set_xscale("symlog", linthresh=1)
    ax1.set_ylabel("policies")
    if ax2.get_legend_handles_labels()[0]:  # no trial (a run that never started): no legend
        ax2.legend(fontsize="small", loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
