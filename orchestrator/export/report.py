"""report.html: one self-contained page per run, for CI where no Grafana exists.

The versions header, the verdict table, the comparison table and the drain plots
(runs/<id>/*.png embedded as base64), from result.json. No external resources: the
page renders from a CI artifact store or a mail attachment as it is.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

REPORT_NAME = "report.html"
VERDICT_CLASS = {"PASS": "pass", "FAIL": "fail", "INFRA-ERROR": "infra"}

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


def _cell(v: Any, num: bool = False) -> str:
    text = "—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    return f'<td class="num">{escape(text)}</td>' if num else f"<td>{escape(text)}</td>"


def _table(head: list[str], rows: list[str], ident: str) -> str:
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "\n".join(rows) or f'<tr><td colspan="{len(head)}">none</td></tr>'
    return f'<table id="{ident}">\n<thead><tr>{ths}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _header(doc: dict[str, Any]) -> str:
    v = doc.get("versions") or {}
    lab = (doc.get("lab") or {}).get("name", "")
    sc = doc.get("scenario") or {}
    state = "complete" if doc.get("complete") else f"incomplete ({doc.get('phase', '?')})"
    what = ""
    if sc:
        what = f"{sc.get('delete', '?')} of {sc.get('policies', '?')} in-use policies, "
    meta = [
        f"{what}tick {doc.get('tick_ms', '?')} ms; {state}",
        f"started {doc.get('started', '?')}, finished {doc.get('finished') or '—'}",
        f"spdlab {v.get('spdlab', '?')}, kernel {v.get('kernel', '?')}, "
        f"host {v.get('hostname', '?')}, Python {v.get('python', '?')}",
    ]
    out = [f"<h1>spdlab run {escape(str(doc.get('run_id', '?')))}: {escape(lab)}</h1>"]
    out += [f'<p class="meta">{escape(m)}</p>' for m in meta]
    if doc.get("error"):
        out.append(f'<p class="meta fail">error: {escape(str(doc["error"]))}</p>')
    rows = []
    for name, b in sorted((v.get("builds") or {}).items()):
        patches = ", ".join(
            f"{p.get('name')} ({str(p.get('sha256', ''))[:12]})" for p in b.get("patches", [])
        )
        sha = str(b.get("netkeyd_sha256") or "")[:12]
        rows.append(f"<tr>{_cell(name)}{_cell(b.get('tree'))}{_cell(patches or '—')}"
                    f"<td><code>{escape(sha or '—')}</code></td></tr>")  # fmt: skip
    out.append(_table(["build", "tree", "patches (sha256)", "netkeyd sha256"], rows, "versions"))
    return "\n".join(out)


def _verdicts(doc: dict[str, Any]) -> str:
    head = ["target", "build", "kind", "hardware", "removed", "drain ticks", "drain s",
            "free ticks", "premature frees", "use after free", "walked/lookup", "verdict",
            "reason"]  # fmt: skip
    rows = []
    for t in doc.get("targets", []):
        build = escape(str(t.get("build", "")))
        if build.startswith("canary"):
            build += ' <span class="synthetic">(synthetic)</span>'
        verdict = str(t.get("verdict", "?"))
        cls = VERDICT_CLASS.get(verdict, "other")
        wpl = t.get("walked_per_lookup")
        rows.append(
            f'<tr class="target">{_cell(t.get("name"))}<td>{build}</td>{_cell(t.get("kind"))}'
            f"{_cell((t.get('labels') or {}).get('hardware'))}"
            f"{_cell(t.get('removed_by_delete'), True)}{_cell(t.get('drain_ticks'), True)}"
            f"{_cell(t.get('drain_seconds'), True)}{_cell(t.get('free_ticks'), True)}"
            f"{_cell(t.get('premature_frees'), True)}{_cell(t.get('use_after_free'), True)}"
            f"{_cell(None if wpl is None else round(wpl, 1), True)}"
            f'<td class="{cls}">{escape(verdict)}</td>{_cell(t.get("reason") or "")}</tr>'
        )
    return _table(head, rows, "verdicts")


def _comparisons(doc: dict[str, Any]) -> str:
    rows = [
        f'<tr class="comparison">{_cell(c.get("patched"))}{_cell(c.get("base"))}'
        f"{_cell(c.get('verdict'))}{_cell(c.get('detail'))}</tr>"
        for c in doc.get("comparisons", [])
    ]
    return _table(["patched", "base", "verdict", "detail"], rows, "comparisons")


def _plots(run_dir: Path) -> str:
    pngs = sorted(run_dir.glob("*.png"), key=lambda p: (p.name != "drain.png", p.name))
    if not pngs:
        return '<p class="meta">no plot in the run folder</p>'
    out = []
    for p in pngs:
        data = base64.b64encode(p.read_bytes()).decode()
        out.append(f'<figure><img alt="{escape(p.name)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{escape(p.name)}</figcaption></figure>")  # fmt: skip
    return "\n".join(out)


def render_html(run_dir: Path) -> str:
    """The report page for runs/<id>/ (result.json and its PNG plots).

    Raises:
        ConfigError: result.json is missing or not JSON.
    """
    try:
        doc = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run_dir / 'result.json'}: {e}") from e
    title = f"spdlab run {doc.get('run_id', run_dir.name)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style>",
        f"<script>{SCRIPT}</script></head><body>",
        _header(doc),
        "<h2>Verdicts</h2>",
        _verdicts(doc),
        "<h2>Comparisons</h2>",
        _comparisons(doc),
        "<h2>Drain</h2>",
        _plots(run_dir),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report (default runs/<id>/report.html); returns its path."""
    out = out or run_dir / REPORT_NAME
    out.write_text(render_html(run_dir), encoding="utf-8")
    return out
