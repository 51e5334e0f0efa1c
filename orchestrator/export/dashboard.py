"""The Grafana dashboard, generated with grafana-foundation-sdk; never edit the JSON by hand.

    python -m orchestrator.export.dashboard [--out FILE] [--check]

writes monitoring/grafana/dashboards/spdlab-drain.json (`make dashboards`); `--check`
exits 1 when the committed file differs from what this module generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.runs import project_root

# The SDK release is pinned to this Grafana version (pyproject.toml); the JSON model
# (schemaVersion) is what Grafana 11.6 writes.
GRAFANA_VERSION = "11.6.0"
UID = "spdlab-drain"
DATASOURCE_UID = "spdlab-prometheus"
OUT = project_root() / "monitoring" / "grafana" / "dashboards" / "spdlab-drain.json"

SEL = 'target=~"$target", build=~"$build"'
# hardware is a label of spdlab_build_info only: live series join on it.
HW = (
    " * on (target, build) group_left () group by (target, build) "
    '(spdlab_build_info{hardware=~"$hardware"})'
)

# The same, carrying the hardware label over: a bar per build and hardware.
HW_LABEL = (
    " * on (target, build) group_left (hardware) group by (target, build, hardware) "
    '(spdlab_build_info{hardware=~"$hardware"})'
)
BY_HW = "{{build}} on {{hardware}}"


def _q(expr: str, legend: str, ref: str = "A", instant: bool = False, table: bool = False):
    from grafana_foundation_sdk.builders import prometheus
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
    if instant:
        q = q.instant()
    if table:
        q = q.format(PromQueryFormat.TABLE)
    return q


def _variable(name: str, query: str, ds: Any):
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

    return (
        dashboard.QueryVariable(name)
        .label(name)
        .datasource(ds)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def _timeseries(pid: int, title: str, desc: str, unit: str, *targets: Any):
    from grafana_foundation_sdk.builders import timeseries

    p = timeseries.Panel().id(pid).title(title).description(desc).unit(unit)
    p = p.height(8).span(12).line_width(1).fill_opacity(10)
    for t in targets:
        p = p.with_target(t)
    return p


def _bars(pid: int, title: str, desc: str, unit: str, expr: str, legend: str = "{{build}}"):
    from grafana_foundation_sdk.builders import bargauge
    from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, VizOrientation

    return (
        bargauge.Panel().id(pid).title(title).description(desc).unit(unit).height(8).span(12)
        .display_mode(BarGaugeDisplayMode.BASIC).orientation(VizOrientation.HORIZONTAL)
        .with_target(_q(expr, legend, instant=True))
    )  # fmt: skip


def build() -> dict[str, Any]:
    """The dashboard's JSON model, as a dict."""
    from grafana_foundation_sdk.builders import dashboard, statetimeline, table
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, DataTransformerConfig

    ds = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
    panels = [
        statetimeline.Panel().id(1).title("Targets up")
        .description("1 while the target's admin socket answers the exporter")
        .height(5).span(24)
        .with_target(_q(f"spdlab_target_up{{{SEL}}}", "{{target}}")),
        _timeseries(
            2, "Linked policies: dead and alive",
            "Policies in the SPD table per target; after a mass delete the dead ones "
            "should leave within a tick", "short",
            _q(f"sum by (target, build, state) (spdlab_spd_policies{{{SEL}}}){HW}",
               "{{target}} {{state}}"),
        ),
        _timeseries(
            3, "Deleted policies still allocated",
            "Allocated but no longer alive: deleted, kept by a reference until freed", "short",
            _q(f"target:spdlab_spd_policies_deleted_allocated:sum{{{SEL}}}{HW}", "{{target}}"),
        ),
        _timeseries(
            4, "Unlinked and freed per tick",
            "increase(unlinked) / increase(timer ticks) over 1m: the drain's pace per tick",
            "short",
            _q(f"target:spdlab_spd_unlinked_per_tick:ratio_increase1m{{{SEL}}}{HW}",
               "{{target}} unlinked"),
            _q(f"target:spdlab_spd_freed_per_tick:ratio_increase1m{{{SEL}}}{HW}",
               "{{target}} freed", "B"),
        ),
        _timeseries(
            5, "Premature frees and use after free",
            "Policies freed while a flow held them, and packets that touched one afterwards",
            "short",
            _q(f"spdlab_spd_premature_frees_total{{{SEL}}}{HW}", "{{target}} premature frees"),
            _q(f"spdlab_spd_use_after_free_total{{{SEL}}}{HW}", "{{target}} use after free", "B"),
        ),
        _timeseries(
            6, "Entries walked per lookup",
            "SPD table entries a lookup walks on average: dead entries left linked cost here",
            "short",
            _q(f"target:spdlab_spd_lookup_entries_walked_per_lookup:ratio_increase1m"
               f"{{{SEL}}}{HW}", "{{target}}"),
        ),
        _timeseries(
            7, "ESP packets: accepted and dropped by reason",
            "ESP input per second; drops carry the firmware's reason counter", "pps",
            _q(f"sum by (target, build, result, reason) "
               f"(target:spdlab_esp_packets:rate1m{{{SEL}}}){HW}",
               "{{target}} {{result}} {{reason}}"),
        ),
        _bars(8, "Last drain (ticks) per build and hardware",
              "Timer ticks the last completed drain took (result.json, median over trials); "
              "one bar per hardware label: the same build should drain alike on each",
              "short", f"max by (build, hardware) (spdlab_drain_ticks{{{SEL}}}{HW_LABEL})",
              BY_HW),
        _bars(9, "Last drain (seconds) per build and hardware",
              "The last completed drain at each target's tick length: timings may differ "
              "between hardware labels", "s",
              f"max by (build, hardware) (spdlab_drain_seconds{{{SEL}}}{HW_LABEL})", BY_HW),
        table.Panel().id(10).title("Verdicts")
        .description("Each target's verdict from the run's result.json; synthetic: the "
                     "build is a synthetic positive control")
        .height(8).span(12)
        .with_target(_q(f"spdlab_verdict{{{SEL}}} == 1", "", instant=True, table=True))
        .with_transformation(DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": {"Time": True, "Value": True, "__name__": True,
                                       "job": True, "instance": True, "lab": True},
                     "indexByName": {"target": 0, "build": 1, "synthetic": 2, "verdict": 3}},
        )),
        table.Panel().id(11).title("Builds")
        .description("What each target runs, named alike for netkeyd and kernel builds: the "
                     "tree (a kernel's source package), the patch series, synthetic or not")
        .height(8).span(12)
        .with_target(_q(f'spdlab_build_info{{{SEL}, hardware=~"$hardware"}}', "",
                        instant=True, table=True))
        .with_transformation(DataTransformerConfig(
            id_val="organize",
            options={"excludeByName": {"Time": True, "Value": True, "__name__": True,
                                       "job": True, "instance": True, "lab": True},
                     "indexByName": {"target": 0, "build": 1, "tree": 2, "patches": 3,
                                     "synthetic": 4, "kind": 5, "hardware": 6}},
        )),
    ]  # fmt: skip
    d = (
        dashboard.Dashboard("spdlab: SPD drain")
        .uid(UID)
        .description("Dead and alive policies, the drain's pace, and each build's verdict")
        .tags(["spdlab", "ipsec", "spd"])
        .refresh("5s")
        .time("now-30m", "now")
        .with_variable(_variable("hardware", "label_values(spdlab_build_info, hardware)", ds))
        .with_variable(
            _variable("build", 'label_values(spdlab_build_info{hardware=~"$hardware"}, build)', ds)
        )
        .with_variable(
            _variable("target", 'label_values(spdlab_target_up{build=~"$build"}, target)', ds)
        )
    )
    for p in panels:
        d = d.with_panel(p.datasource(ds))
    doc = json.loads(JSONEncoder(sort_keys=True).encode(d.build()))
    doc["id"] = None  # Grafana assigns ids on import; uid is what identifies it
    return doc


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    p.add_argument("--check", action="store_true", help="exit 1 if --out is not up to date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run make dashboards", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
