"""`spdlab report RUN --html`: one self-contained HTML page of a run's results."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write a run's HTML report", description=__doc__)
    p.add_argument("run", metavar="RUN", nargs="?",
                   help="run id or prefix, or a runs/<id> folder (default: latest)")  # fmt: skip
    p.add_argument("--html", action="store_true", required=True,
                   help="write the HTML page (the only format so far)")  # fmt: skip
    p.add_argument(
        "--out", metavar="FILE", help="where to write it (default runs/<id>/report.html)"
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.export.report import write_html
    from orchestrator.export.runsel import resolve_run

    out = write_html(resolve_run(args.run), Path(args.out) if args.out else None)
    print(out)
    return 0
