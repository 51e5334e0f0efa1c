"""Monitoring against a real Prometheus (Debian's package) scraping a live drain.

Two netkeyd targets, `canary` and `canary+nextsp`, 300 policies each held by a flow, are
deleted at once and drain at 50 ms ticks. Prometheus scrapes the exporter every second and
evaluates the rules every second; the dashboard's queries, the recording rules and the
stalled-drain alert are then checked through its HTTP API. Two drivers:
- direct: netkeyd processes, flows opened over the admin socket, ticks driven by the test,
  so the first tick after the delete is known exactly and result.json is written from
  the measured tick records;
- spdlab-run: `spdlab run` on a lab file (network namespaces, ESP keepalive traffic, the
  firmware's own timer, the run's exporter and result.json); queries are evaluated at the
  run's last scrape with every target up and result.json's series present.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.delete.bare import install, mass_delete, open_flows
from orchestrator.export import dashboard
from orchestrator.export.exporter import Exporter
from orchestrator.export.file_sd import write_file_sd
from orchestrator.export.monitor import TEMPLATE, Prometheus, render_config, tool
from orchestrator.export.snapshot import read_stats
from orchestrator.netkeyd import Netkeyd
from orchestrator.targets.admin import AdminClient
from orchestrator.wait import until

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[1]
MON = REPO / "monitoring"
RULES = MON / "prometheus" / "rules" / "spdlab.rules.yml"
N = 300
TICK_S = 0.05
KEEPALIVE = 5  # ticks between a flow's packets
STALL_FOR = "5s"  # the test copy's K; the shipped rule waits 10m
TARGETS = {"gw-canary": "canary", "gw-canary-nextsp": "canary+nextsp"}
RUN_ID = "20260101-000000-beef"
VARS = {"$target": ".*", "$build": ".*", "$hardware": ".*", "$__rate_interval": "1m"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool("promtool")), *args], capture_output=True, text=True)


# ------------------------------------------------------------------ static checks


def test_dashboard_json_is_the_generated_one() -> None:
    committed = (MON / "grafana" / "dashboards" / "spdlab-drain.json").read_text()
    assert committed == dashboard.render(), "stale dashboard: run make dashboards"
    doc = json.loads(committed)
    assert doc["id"] is None and doc["uid"] == dashboard.UID
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["hardware", "build", "target"]
    uids = {p["datasource"]["uid"] for p in doc["panels"]}
    uids |= {v["datasource"]["uid"] for v in doc["templating"]["list"]}
    assert uids == {"spdlab-prometheus"}
    types = {p["title"]: p["type"] for p in doc["panels"]}
    assert types["Verdicts"] == "table"
    assert types["Last drain (ticks) per build and hardware"] == "bargauge"
    assert types["Last drain (seconds) per build and hardware"] == "bargauge"
    assert types["Targets up"] == "state-timeline"


def test_rules_and_config_pass_promtool(tmp_path: Path) -> None:
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("check", "config", str(TEMPLATE))
    assert r.returncode == 0, r.stdout + r.stderr
    rendered = render_config(tmp_path, runs=tmp_path / "runs", scrape_interval="1s")
    r = promtool("check", "config", str(rendered))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = yaml.safe_load(rendered.read_text())
    assert doc["scrape_configs"][0]["file_sd_configs"][0]["files"] == [
        str((tmp_path / "runs").resolve() / "prometheus-sd" / "*.json")
    ]
    assert doc["rule_files"] == [str(RULES.resolve())]


def test_provisioning_and_compose_agree() -> None:
    ds = yaml.safe_load((MON / "grafana/provisioning/datasources/spdlab.yaml").read_text())
    assert [d["uid"] for d in ds["datasources"]] == [dashboard.DATASOURCE_UID]
    prov = yaml.safe_load((MON / "grafana/provisioning/dashboards/spdlab.yaml").read_text())
    compose = yaml.safe_load((MON / "docker-compose.yml").read_text())
    graf = compose["services"]["grafana"]
    assert graf["image"] == f"grafana/grafana:{dashboard.GRAFANA_VERSION}"
    mounts = dict(v.split(":")[:2] for v in graf["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == prov["providers"][0]["options"]["path"]
    for host in mounts:
        assert (MON / host).is_dir(), host
    prom = compose["services"]["prometheus"]
    assert "--config.file=/spdlab/monitoring/prometheus/prometheus.yml" in prom["command"]


def test_spdlab_monitor_starts_prometheus(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "orchestrator.cli.main", "monitor", "--listen",
            f"127.0.0.1:{port}", "--data", str(tmp_path), "--scrape-interval", "1s"]  # fmt: skip
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == f"http://127.0.0.1:{port}"
        prom = Prometheus(tmp_path / "prometheus.yml", tmp_path / "data", f"127.0.0.1:{port}")
        assert prom.api("status/config")["yaml"]
        assert prom.query("vector(1)")[0]["value"][1] == "1"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        if p.stdout is not None:
            p.stdout.close()


# ------------------------------------------------------------------ the live demo


@dataclass
class Demo:
    """What a live fixture measured, and the Prometheus that watched it."""

    kind: str
    prom: Prometheus
    result: dict[str, Any] = field(default_factory=dict)
    at: float | None = None  # evaluate queries then (None: now)
    first_tick_unlinked: dict[str, int] = field(default_factory=dict)

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prom.query(expr, self.at)

    def values(self, expr: str) -> dict[str, float]:
        return {g["metric"]["target"]: float(g["value"][1]) for g in self.query(expr)}


class Ticker(threading.Thread):
    """Runs `tick 1` on every target every TICK_S while `running` is set; keeps the records.

    Every KEEPALIVE ticks each flow sends a packet (`flow sendall`), as the lab's keepalive
    traffic does: the lookups it makes walk the table, dead entries included.
    """

    def __init__(self, gws: dict[str, Netkeyd]):
        super().__init__(daemon=True)
        self.clients = {n: AdminClient(str(nk.admin_path), target=n) for n, nk in gws.items()}
        self.records: dict[str, list[dict[str, Any]]] = {n: [] for n in gws}
        self.running = threading.Event()
        self.done = threading.Event()

    def tick(self) -> None:
        for name, c in self.clients.items():
            self.records[name] += c.request("tick 1")["ticks"]
            if len(self.records[name]) % KEEPALIVE == 0:
                c.request("flow sendall")

    def run(self) -> None:
        while not self.done.is_set():
            if self.running.wait(0.1):
                self.tick()
                time.sleep(TICK_S)
        for c in self.clients.values():
            c.close()


Series = dict[str, dict[float, float]]  # target → scrape timestamp → value


def scrapes(prom: Prometheus, selector: str, window: str = "15m") -> Series:
    """The raw samples of `selector` (summed per target and scrape), as Prometheus stored them.

    Every sample of one scrape carries that scrape's timestamp, so series can be joined
    on it exactly: the values a single `stats` read returned together.
    """
    out: Series = {}
    for series in prom.query(f"{selector}[{window}]"):
        per = out.setdefault(series["metric"].get("target", ""), {})
        for ts, v in series["values"]:
            per[float(ts)] = per.get(float(ts), 0.0) + float(v)
    return out


def stored_for_all(prom: Prometheus, selector: str, value: float, n: int) -> bool:
    """Prometheus holds at least `n` samples of `selector` at `value` for every target."""
    got = scrapes(prom, selector)
    return all(list(got.get(t, {}).values()).count(value) >= n for t in TARGETS)


def final_scrape(prom: Prometheus) -> float | None:
    """The newest scrape with every target up and result.json's drain_ticks exported."""
    up, ticks = scrapes(prom, "spdlab_target_up"), scrapes(prom, "spdlab_drain_ticks")
    both = [
        {ts for ts, v in up.get(t, {}).items() if v == 1} & set(ticks.get(t, {})) for t in TARGETS
    ]
    common = set.intersection(*both)
    return max(common) if common else None


def drained(rec: dict[str, Any]) -> bool:
    return rec["dead_in"] + rec["dead_out"] == 0


def synthesize_result(drain_ticks: dict[str, int], now: float) -> dict[str, Any]:
    """result.json as `spdlab run` writes it (the fields the exporter reads), as measured."""
    targets = []
    for name, build in TARGETS.items():
        ticks = drain_ticks[name]
        targets.append({
            "name": name, "build": build, "kind": "direct", "labels": {"hardware": "x86-vm"},
            "tick_ms": int(TICK_S * 1000), "verdict": "PASS", "reason": "measured directly",
            "measures": {"drain_ticks": ticks}, "drain_seconds": round(ticks * TICK_S, 3),
            "completed_at": now, "trials": [],
        })  # fmt: skip
    return {"schema": "spdlab.result/2", "run_id": RUN_ID, "complete": True,
            "started": "2026-01-01T00:00:00Z", "lab": {"name": "monitoring"}, "scenario": {},
            "tick_ms": int(TICK_S * 1000), "targets": targets, "comparisons": [],
            "versions": {"spdlab": "0.1.0", "kernel": "", "hostname": ""}}  # fmt: skip


def start_prometheus(tmp: Path, runs: Path) -> Prometheus:
    """Our config at 1 s intervals, with the stalled-drain alert's K cut to STALL_FOR."""
    rules = yaml.safe_load(RULES.read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            if r.get("alert") == "SpdlabDrainStalled":
                r["for"] = STALL_FOR
    test_rules = tmp / "rules.yml"
    test_rules.write_text(yaml.safe_dump(rules))
    config = render_config(
        tmp / "prom", runs=runs, scrape_interval="1s", evaluation_interval="1s",
        rule_files=[test_rules],
    )  # fmt: skip
    return Prometheus(config, tmp / "prom" / "data", f"127.0.0.1:{free_port()}").start()


def direct_demo(tmp: Path) -> Iterator[Demo]:
    runs = tmp / "runs"
    run = runs / RUN_ID
    gws: dict[str, Netkeyd] = {}
    exp = ticker = prom = None
    try:
        for name, build in TARGETS.items():
            nk = Netkeyd(build, run / "targets" / name, tick_ms=0, flow_idle_ticks=100_000)
            gws[name] = nk.start()
            install(nk, N)
            open_flows(nk, N)
        state = {"phase": "up", "lab_name": "montest", "targets": {
            n: {"kind": "direct", "build": b, "dir": str(run / "targets" / n)}
            for n, b in TARGETS.items()}}  # fmt: skip
        (run / "state.json").write_text(json.dumps(state))
        lab = {"targets": [{"name": n, "build": b, "labels": {"hardware": "x86-vm"}}
                           for n, b in TARGETS.items()]}  # fmt: skip
        (run / "lab.json").write_text(json.dumps(lab))

        exp = Exporter.for_run(run, scrape_timeout=0.8)
        gate = threading.Lock()

        def gated(t, timeout):  # a scrape never sees the instant between delete and tick 1
            with gate:
                return read_stats(t, timeout)

        exp.snapshot.reader = gated
        write_file_sd(run, exp.start("127.0.0.1:0"), lab="montest")
        prom = start_prometheus(tmp, runs)
        d = Demo("direct", prom)
        # Two scrapes before the delete: the per-tick rules need a baseline.
        until(lambda: stored_for_all(prom, "spdlab_target_up", 1, 2), "two scrapes", 60)

        ticker = Ticker(gws)
        with gate:
            for nk in gws.values():
                mass_delete(nk, "delete", [], N)
            ticker.tick()
        for name, recs in ticker.records.items():
            d.first_tick_unlinked[name] = recs[0]["unlinked"]
        # Prometheus stores the level after the first tick, and the rules record it.
        level = N - d.first_tick_unlinked["gw-canary"]

        def after_one() -> bool:
            dead = scrapes(prom, "target:spdlab_spd_policies_dead:sum").get("gw-canary", {})
            return stored_for_all(prom, "spdlab_spd_timer_ticks_total", 1, 2) and (
                level in dead.values()
            )

        until(after_one, "the level after tick 1 scraped and recorded", 60)
        ticker.start()
        ticker.running.set()
        done = lambda: all(any(map(drained, r)) for r in ticker.records.values())  # noqa: E731
        until(done, "every target drained", 300, alive=ticker.is_alive)
        ticks = {
            name: next(i for i, r in enumerate(recs, 1) if drained(r))
            for name, recs in ticker.records.items()
        }
        d.result = synthesize_result(ticks, time.time())
        (run / "result.json").write_text(json.dumps(d.result))
        # the per-tick rules need the timer running: it keeps ticking while we query
        d.at = until(lambda: final_scrape(prom), "a scrape of result.json's series", 60)
        yield d
    finally:
        if ticker is not None:
            ticker.done.set()
            ticker.running.set()
            ticker.join(5)
        if exp is not None:
            exp.stop()
        if prom is not None:
            prom.stop()
        for nk in gws.values():
            nk.stop()


LAB = f"""\
name: montest
range: 10.79.0.0/16
defaults:
  kind: netns
  tick_ms: {int(TICK_S * 1000)}
  flow_idle_ticks: 30
  labels:
    hardware: x86-vm
targets:
  - name: gw
    builds: [canary, canary+nextsp]
scenario:
  policies: {N}
  delete: delete
  traffic: keepalive
  keepalive_ticks: {KEEPALIVE}
  timeout_ticks: 1000
expect:
  canary:
    drain_ticks_min: {N - 10}
  canary+nextsp:
    drain_ticks_max: 1
"""


def run_demo(tmp: Path) -> Iterator[Demo]:
    runs = tmp / "runs"
    lab = tmp / "montest.yaml"
    lab.write_text(LAB)
    port = free_port()
    # `spdlab run` serves the lab's metrics there and lists it in runs/prometheus-sd/.
    (runs / "prometheus-sd").mkdir(parents=True)
    prom = start_prometheus(tmp, runs)
    try:
        env = dict(os.environ, SPDLAB_RUNS_DIR=str(runs))
        p = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", "run", str(lab), "--json",
             "--metrics-addr", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        run_id = json.loads(p.stdout)["run_id"]
        d = Demo("spdlab-run", prom)
        d.result = json.loads((runs / run_id / "result.json").read_text())
        # The run's exporter lingered until Prometheus scraped its final state.
        what = "Prometheus to store result.json's series with every target up"
        d.at = until(lambda: final_scrape(prom), what, 30)
        yield d
    finally:
        prom.stop()


@pytest.fixture(
    scope="module", params=["direct", pytest.param("spdlab-run", marks=pytest.mark.netns)]
)
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp(request.param)
    yield from (direct_demo if request.param == "direct" else run_demo)(tmp)


def panel_queries() -> list[tuple[str, str]]:
    doc = json.loads((MON / "grafana" / "dashboards" / "spdlab-drain.json").read_text())
    out = []
    for p in doc["panels"]:
        for t in p["targets"]:
            expr = t["expr"]
            for var, val in VARS.items():
                expr = expr.replace(var, val)
            assert "$" not in expr, expr
            out.append((f"{p['title']} [{t['refId']}]", expr))
    return out


def recording_rules() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]


@pytest.mark.parametrize(("panel", "expr"), panel_queries(), ids=[p for p, _ in panel_queries()])
def test_every_panel_query_has_data(demo: Demo, panel: str, expr: str) -> None:
    got = demo.query(expr)
    assert got, f"{panel}: empty result for {expr}"


@pytest.mark.parametrize("record", recording_rules())
def test_every_recording_rule_has_data(demo: Demo, record: str) -> None:
    got = demo.query(record)
    assert {g["metric"].get("target") for g in got} == set(TARGETS), got


def test_template_variables_list_the_lab(demo: Demo) -> None:
    doc = json.loads((MON / "grafana" / "dashboards" / "spdlab-drain.json").read_text())
    for v in doc["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"])
        assert m, v["query"]
        match = m.group(1)
        for var, val in VARS.items():
            match = match.replace(var, val)
        values = demo.prom.api(f"label/{m.group(2)}/values", **{"match[]": match})
        want = {"hardware": {"x86-vm"}, "build": set(TARGETS.values()), "target": set(TARGETS)}
        assert set(values) == want[v["name"]]


def canary_drain(demo: Demo) -> list[tuple[float, float, float, float]]:
    """(scrape time, dead, unlinked, ticks) of gw-canary's scrapes after the delete, in order.

    After the delete (no policy alive) and until the drain ends (none dead)."""
    get = {name: scrapes(demo.prom, sel, "15m").get("gw-canary", {}) for name, sel in (
        ("alive", 'spdlab_spd_policies{state="alive"}'),
        ("dead", 'spdlab_spd_policies{state="dead"}'),
        ("unlinked", "spdlab_spd_unlinked_total"),
        ("ticks", "spdlab_spd_timer_ticks_total"),
    )}  # fmt: skip
    at = demo.at if demo.at is not None else math.inf
    return [
        (ts, get["dead"][ts], get["unlinked"][ts], get["ticks"][ts])
        for ts in sorted(get["dead"])
        if ts <= at
        and get["alive"].get(ts) == 0
        and get["dead"][ts] > 0
        and ts in get["unlinked"]
        and ts in get["ticks"]
    ]


def test_values_match_the_run(demo: Demo) -> None:
    by_name = {t["name"]: t for t in demo.result["targets"]}
    peak = demo.values("max_over_time(target:spdlab_spd_policies_dead:sum[15m])")
    if demo.kind == "direct":
        assert demo.first_tick_unlinked == {"gw-canary": 1, "gw-canary-nextsp": N}
        for name in TARGETS:
            assert peak[name] == N - demo.first_tick_unlinked[name]
    drains = {n: t["measures"]["drain_ticks"] for n, t in by_name.items()}
    assert demo.values("spdlab_drain_ticks") == drains
    assert drains["gw-canary-nextsp"] <= 1  # spec §4: within one tick
    assert drains["gw-canary"] >= N - 10  # one policy per tick
    assert demo.values("spdlab_target_up") == dict.fromkeys(TARGETS, 1.0)
    verdicts = demo.query("spdlab_verdict == 1")
    assert {(g["metric"]["target"], g["metric"]["verdict"]) for g in verdicts} == {
        (n, t["verdict"]) for n, t in by_name.items()
    }


def test_canary_unlinks_one_dead_policy_per_tick_in_every_scrape(demo: Demo) -> None:
    """Each scrape is one `stats` read: the values in it are consistent with each other.

    After the delete every deleted policy is dead or unlinked, and between two scrapes of
    the drain canary's timer unlinked exactly one policy per tick it ran (spec §4).
    """
    drain = canary_drain(demo)
    assert len(drain) >= 2, f"Prometheus stored {len(drain)} scrapes of canary's drain"
    assert {dead + unlinked for _, dead, unlinked, _ in drain} == {N}
    steps = [(u2 - u1, t2 - t1) for (_, _, u1, t1), (_, _, u2, t2) in itertools.pairwise(drain)]
    assert all(unlinked == ticks for unlinked, ticks in steps), steps
    assert sum(ticks for _, ticks in steps) > 0
    # The recording rule sums what some scrape held: each value it recorded was scraped.
    recorded = scrapes(demo.prom, "target:spdlab_spd_policies_dead:sum")["gw-canary"]
    scraped = scrapes(demo.prom, 'spdlab_spd_policies{state="dead"}')["gw-canary"]
    assert set(recorded.values()) <= set(scraped.values())
    assert max(recorded.values()) > 0


def test_stalled_drain_alert_fires_on_canary_only(demo: Demo) -> None:
    stalled = 'ALERTS{alertname="SpdlabDrainStalled"'
    fired = demo.values(f'max_over_time({stalled}, alertstate="firing"}}[15m])')
    assert set(fired) == {"gw-canary"}
    pending = scrapes(demo.prom, f'{stalled}, alertstate="pending"}}')["gw-canary"]
    firing = scrapes(demo.prom, f'{stalled}, alertstate="firing"}}')["gw-canary"]
    assert min(pending) < min(firing)  # pending for STALL_FOR first
    if demo.kind == "direct":
        # No scrape falls between the delete and tick 1: canary+nextsp never had a dead entry.
        ever = demo.values(f"max_over_time({stalled}}}[15m])")  # pending or firing
        assert "gw-canary-nextsp" not in ever
    # With a free-running timer a scrape may catch nextsp's dead entries before its one tick:
    # pending then, but never for STALL_FOR.
