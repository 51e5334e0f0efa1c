"""report.html: one self-contained page per run, for CI where no Grafana exists.

Rendered from templates/report.html.j2 (jinja2, autoescaped): the versions header,
the verdict table with a footnote for every measure the target cannot observe, the
comparisons, what changed from the baseline run (`--baseline`) and the drain plots
(runs/<id>/*.png embedded as base64). No external resources: the page renders from a CI
artifact store or a mail attachment as it is.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from orchestrator import atomic
from orchestrator.export import result as store
from orchestrator.result.describe import (
    baseline_changed,
    baseline_shown,
    clock,
    senders,
    stats_line,
    title,
)
from orchestrator.result.measure import Footnotes
from orchestrator.result.model import RunResult, TargetResult

REPORT_NAME = "report.html"
TEMPLATES = Path(__file__).with_name("templates")
VERDICT_CLASS = {"PASS": "pass", "FAIL": "fail", "INFRA-ERROR": "infra"}
HEAD = ("target", "build", "kind", "hardware", "removed", "drain ticks", "drain s",
        "free ticks", "premature frees", "use after free", "walked/lookup", "verdict",
        "reason")  # fmt: skip
MEASURES = ("removed_by_delete", "drain_ticks", None, "free_ticks", "premature_frees",
            "use_after_free", "walked_per_lookup")  # fmt: skip

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #555; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { border: 1px solid #d0d0d7; padding: 4px 8px; text-align: left; }
th { background: #f2f2f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { background: #dff5e1; } .fail { background: #fbdada; }
.infra, .other { background: #fff3c4; }
.synthetic { color: #8a5a00; font-size: 12px; }
img { max-width: 100%; border: 1px solid #d0d0d7; }
code { font-size: 12px; }
"""

# Marks the page once every image has decoded, so a headless browser can check it.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", ok.length + "/" + imgs.length);
});
"""


def _env() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              autoescape=True, keep_trailing_newline=True)  # fmt: skip


def _cells(t: TargetResult, notes: Footnotes) -> list[dict[str, Any]]:
    build = t.build + (" (synthetic)" if t.synthetic else "")
    out = [{"text": v} for v in (t.name, build, t.kind, t.labels.get("hardware", "—"))]
    for key in MEASURES:
        v = t.drain_seconds if key is None else getattr(t.measures, key)
        fmt = "{:.1f}" if key == "walked_per_lookup" else "{:g}" if key is None else "{}"
        out.append({"text": notes.cell(v, "—" if key != "drain_ticks" else "never", fmt),
                    "num": True})  # fmt: skip
    return out


def _row(t: TargetResult, notes: Footnotes) -> dict[str, Any]:
    cls = VERDICT_CLASS.get(t.verdict, "other")
    return {"cells": _cells(t, notes), "cls": cls, "verdict": t.verdict, "reason": t.reason}


def _plots(run_dir: Path) -> list[dict[str, str]]:
    pngs = sorted(run_dir.glob("*.png"), key=lambda p: (p.name != "drain.png", p.name))
    return [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in pngs]


def _baseline(res: RunResult) -> dict[str, Any] | None:
    """The "changed from baseline" section, as `spdlab compare --baseline` prints it."""
    b = res.baseline
    if b is None:
        return None
    return {"run_id": b.run_id, "changed": baseline_changed(b), "shown": baseline_shown(b),
            "undecided": ", ".join(b.undecided), "missing": ", ".join(b.missing)}  # fmt: skip


def render(res: RunResult, run_dir: Path) -> str:
    notes = Footnotes()
    rows = [_row(t, notes) for t in res.targets]
    state = "complete" if res.complete else f"incomplete ({res.phase.value})"
    return _env().get_template("report.html.j2").render(
        res=res, v=res.versions, builds=sorted(res.versions.builds.items()), head=HEAD,
        rows=rows, notes=notes.lines(), plots=_plots(run_dir), css=CSS, script=SCRIPT,
        title=title(res.scenario), clock=clock(res.scenario, res.tick_ms), state=state,
        stats_line=stats_line, senders=senders(res.traffic), baseline=_baseline(res),
    )  # fmt: skip


def render_html(run_dir: Path) -> str:
    """The report page for runs/<id>/ (result.json and its PNG plots).

    Raises:
        ResultError: result.json is missing, not JSON or not a valid result.
    """
    return render(store.load(run_dir / "result.json"), run_dir)


def write_html(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report (default runs/<id>/report.html); returns its path."""
    out = out or run_dir / REPORT_NAME
    atomic.write_text(out, render_html(run_dir))
    return out
