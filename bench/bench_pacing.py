"""Pacing benchmark: how close the sender's token bucket gets to the rate it is asked for.

The tests only check that a sender never outruns its rate (that holds on a loaded
machine); how near it comes to the rate is a measurement, made here. Packets go to a
sink in this process (encrypted by the fast path, not sent), so the figure is the pacing
itself, not a link's cost.

    python bench/bench_pacing.py [--seconds S] [--rates R,R,...] [--json FILE] [--out FILE]

prints a Markdown section (BENCHMARKS.md) and optionally writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import publish  # noqa: E402

from orchestrator.traffic import scenario, template  # noqa: E402
from orchestrator.traffic.sender import Pacing, Sender  # noqa: E402

FLOWS = 2000


class SinkLink:
    """Takes every packet and drops it: the sender's pacing without a socket."""

    kind = "sink"

    def frame(self, templates: list) -> list:
        return templates

    def sender(self, templates: list) -> tuple:
        return (lambda pkt: len(pkt)), None

    def close(self) -> None:
        pass


def measure(templates: list, pacing: Pacing) -> dict[str, Any]:
    stats = Sender(templates, SinkLink()).run(pacing)
    target = pacing.rate or 0.0
    return {
        "mode": pacing.mode,
        "target_pps": target,
        "sent": stats.sent,
        "elapsed": stats.elapsed,
        "pps": stats.rate_pps,
        "ratio": stats.rate_pps / target if target else None,
        "cpu_share": stats.cpu_s / stats.elapsed if stats.elapsed else None,
    }


def collect(seconds: float, rates: list[float]) -> dict[str, Any]:
    sc = scenario.generate(FLOWS, "10.97.0.2", "10.97.0.1")
    templates = template.build_all(sc.flows)
    runs = [measure(templates, Pacing("rate", rate=r, duration=seconds)) for r in rates]
    keep = Pacing.keepalive(FLOWS, keepalive_ticks=5, tick_ms=20)
    runs.append(measure(templates, Pacing("keepalive", rate=keep.rate, duration=seconds)))
    load = os.getloadavg()[0]
    return {"seconds": seconds, "flows": FLOWS, "runs": runs, "load": load,
            "cpus": os.cpu_count()}  # fmt: skip


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "## Sender pacing: achieved rate against the rate asked for",
        "",
        f"`python bench/bench_pacing.py`: {r['flows']} flows, AES-GCM-16, each rate for "
        f"{r['seconds']:g} s into an in-process sink (no socket). The baseline is the rate "
        "asked for; the tests only check that a sender never exceeds it.",
        "",
        "| pacing | asked (pps) | achieved (pps) | ratio | packets | sender CPU share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for x in r["runs"]:
        lines.append(
            f"| {x['mode']} | {x['target_pps']:,.0f} | {x['pps']:,.0f} | {x['ratio']:.3f} "
            f"| {x['sent']:,} | {x['cpu_share']:.2f} |"
        )
    lines += ["", f"Load average during the run: {r['load']:.1f} on {r['cpus']} CPUs.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rates", default="400,2000,20000", help="comma-separated pps")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--out", metavar="FILE", help="write the Markdown section here")
    args = p.parse_args(argv)
    res = collect(args.seconds, [float(x) for x in args.rates.split(",")])
    return publish(markdown(res), args.out, res, args.json)


if __name__ == "__main__":
    sys.exit(main())
