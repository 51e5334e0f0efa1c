"""The Prometheus exporter against real netkeyd processes: values, failures, exposition.

Set SPDLAB_UPDATE_GOLDEN=1 to rewrite tests/test_export_golden.prom from this run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.delete.bare import install, mass_delete, open_flows
from orchestrator.export.collectors import EspCollector, SpdCollector, TargetCollector
from orchestrator.export.exporter import Exporter, parse_addr
from orchestrator.export.file_sd import remove_file_sd, write_file_sd
from orchestrator.export.pushgateway import delete_run_summary, push_run_summary
from orchestrator.export.runsel import resolve_run
from orchestrator.export.scrape import ScrapeCollector
from orchestrator.export.scrapelog import ScrapeLog
from orchestrator.export.snapshot import Snapshot, read_stats
from orchestrator.export.targets import ExportTarget, RunTargets, build_recipes, targets_from_run
from orchestrator.netkeyd import Netkeyd
from orchestrator.pfkey import messages
from orchestrator.wait import until

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parents[1]
PROMTOOL = REPO / ".cache/prometheus/usr/bin/promtool"
GOLDEN = Path(__file__).with_name("test_export_golden.prom")
BUILDS = {"gw-canary": "canary", "gw-netkey": "netkey", "gw-netipsec": "netipsec"}
N = 12


def export_target(name: str, nk: Netkeyd, hardware: str = "x86-vm") -> ExportTarget:
    r = build_recipes()[nk.build]
    return ExportTarget(name, nk.build, r.tree, r.patches, "direct", hardware,
                        str(nk.admin_path), r.synthetic)  # fmt: skip


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[dict[str, Netkeyd]]:
    """Three netkeyd processes with N policies each, every policy held by a flow."""
    started: dict[str, Netkeyd] = {}
    try:
        for name, build in BUILDS.items():
            nk = Netkeyd(build, tmp_path / name, tick_ms=0, flow_idle_ticks=10_000).start()
            started[name] = nk
            install(nk, N)
            open_flows(nk, N)
        yield started
    finally:
        for nk in started.values():
            nk.stop()


def make_exporter(gws: dict[str, Netkeyd], run_dir: Path | None = None, **kw) -> Exporter:
    targets = [export_target(n, nk) for n, nk in gws.items()]
    files = {}
    if run_dir is not None:
        files = {"result_path": run_dir / "result.json", "traffic_path": run_dir / "traffic.json"}
    return Exporter(targets, **files, **kw)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value, from an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text_or_samples, name: str, **labels: str) -> float | None:
    got = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    return got.get((name, frozenset(labels.items())))


def promtool_check(text: str) -> None:
    assert PROMTOOL.exists(), f"{PROMTOOL} missing: run scripts/deps.sh prometheus"
    p = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr


# ------------------------------------------------------------------ live values


def test_scraped_values_match_admin_stats(gateways: dict[str, Netkeyd]) -> None:
    with make_exporter(gateways) as exp:
        exp.start("127.0.0.1:0")
        text = scrape(exp.url)
        stats = {n: nk.admin.stats() for n, nk in gateways.items()}
    got = samples(text)
    for name, st in stats.items():
        lab = {"target": name, "build": BUILDS[name]}
        assert value(got, "spdlab_target_up", **lab) == 1
        for state in ("alive", "dead"):
            for d in ("in", "out"):
                want = st["spd"][state][d]
                assert value(got, "spdlab_spd_policies", **lab, state=state, dir=d) == want
        assert value(got, "spdlab_spd_policies", **lab, state="alive", dir="out") == N
        assert value(got, "spdlab_spd_policies_allocated", **lab) == st["spd"]["allocated"]
        assert value(got, "spdlab_spd_lookups_total", **lab) == st["spd"]["lookups"]
        walked = st["spd"]["lookup_walked"]
        assert value(got, "spdlab_spd_lookup_entries_walked_total", **lab) == walked
        assert value(got, "spdlab_spd_timer_ticks_total", **lab) == st["ticks"]
        assert value(got, "spdlab_esp_packets_total", **lab, result="ok", reason="") == 0
        assert value(got, "spdlab_esp_packets_total", **lab, result="drop", reason="no_sa") == 0
        r = build_recipes()[BUILDS[name]]
        info = dict(lab, tree=st and r.tree, kind="direct", synthetic=str(r.synthetic).lower())
        info |= {"patches": ",".join(r.patches), "hardware": "x86-vm"}
        assert value(got, "spdlab_build_info", **info) == 1
    for c in ("admin", "target", "spd", "esp", "traffic", "drain"):
        assert value(got, "spdlab_scrape_collector_success", collector=c) == 1
        assert value(got, "spdlab_scrape_duration_seconds", collector=c) is not None
    promtool_check(text)


def test_canary_drain_one_dead_policy_per_tick(gateways: dict[str, Netkeyd]) -> None:
    """After a mass SPDDELETE on canary, dead falls by exactly 1 per `tick 1`."""
    canary = gateways["gw-canary"]
    exp = make_exporter(gateways)
    reg = exp.registry
    lab = {"target": "gw-canary", "build": "canary"}
    mass_delete(canary, "delete", [], N)
    # Referenced deleted policies stay linked and dead: canary leaves them to the timer.
    dead = reg.get_sample_value("spdlab_spd_policies", dict(lab, state="dead", dir="out"))
    assert dead == N
    assert reg.get_sample_value("spdlab_spd_policies", dict(lab, state="alive", dir="out")) == 0
    assert reg.get_sample_value("spdlab_spd_unlinked_total", lab) == 0
    for k in range(1, 4):
        canary.admin.request("tick 1")  # every scrape reads the targets afresh
        got = reg.get_sample_value("spdlab_spd_policies", dict(lab, state="dead", dir="out"))
        assert got == N - k
        assert reg.get_sample_value("spdlab_spd_timer_ticks_total", lab) == k
        assert reg.get_sample_value("spdlab_spd_unlinked_total", lab) == k
        assert reg.get_sample_value("spdlab_spd_policies_allocated", lab) == N
    # the other builds did not move
    other = {"target": "gw-netkey", "build": "netkey"}
    assert reg.get_sample_value("spdlab_spd_policies", dict(other, state="alive", dir="out")) == N
    exp.stop()


def test_netipsec_premature_frees_and_use_after_free(gateways: dict[str, Netkeyd]) -> None:
    nk = gateways["gw-netipsec"]
    with nk.pfkey() as c:
        c.request(messages.spdflush())
    nk.admin.request("tick 2")  # refcnt 2 → freed on tick 2 while the flows still hold them
    nk.admin.request("flow sendall")  # ...and the flows' next packets touch freed policies
    exp = make_exporter(gateways)
    lab = {"target": "gw-netipsec", "build": "netipsec"}
    assert exp.registry.get_sample_value("spdlab_spd_premature_frees_total", lab) == N
    assert exp.registry.get_sample_value("spdlab_spd_use_after_free_total", lab) == N
    assert exp.registry.get_sample_value("spdlab_spd_freed_total", lab) == N
    assert exp.registry.get_sample_value("spdlab_spd_policies_allocated", lab) == 0
    exp.stop()


def test_killed_target_is_down_and_others_still_export(gateways: dict[str, Netkeyd]) -> None:
    gateways["gw-netkey"].stop()
    with make_exporter(gateways) as exp:
        exp.start("127.0.0.1:0")
        text = scrape(exp.url)
    got = samples(text)
    assert value(got, "spdlab_target_up", target="gw-netkey", build="netkey") == 0
    assert not [k for k in got if ("target", "gw-netkey") in k[1] and k[0] != "spdlab_target_up"]
    for name in ("gw-canary", "gw-netipsec"):
        assert value(got, "spdlab_target_up", target=name, build=BUILDS[name]) == 1
        lab = {"target": name, "build": BUILDS[name], "state": "alive", "dir": "out"}
        assert value(got, "spdlab_spd_policies", **lab) == N
    assert value(got, "spdlab_scrape_collector_success", collector="admin") == 1
    promtool_check(text)


def test_stuck_target_times_out_within_the_scrape_budget(
    gateways: dict[str, Netkeyd], tmp_path: Path
) -> None:
    """An admin socket that accepts and never answers gets no more than the scrape timeout.

    Every read is handed what is left of the budget; the stuck one is down, the rest up.
    """
    path = tmp_path / "stuck.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    stuck = ExportTarget("gw-stuck", "netkey", admin_path=str(path))
    targets = [export_target(n, nk) for n, nk in gateways.items()] + [stuck]
    given: list[float] = []

    def reader(t: ExportTarget, timeout: float) -> dict:
        given.append(timeout)
        return read_stats(t, timeout)

    try:
        exp = Exporter(targets, scrape_timeout=0.5)
        exp.snapshot.reader = reader
        up = exp.registry.get_sample_value(
            "spdlab_target_up", {"target": "gw-stuck", "build": "netkey"}
        )
        assert len(given) == len(targets) and max(given) <= 0.5
        assert up == 0
        canary = {"target": "gw-canary", "build": "canary"}
        assert exp.registry.get_sample_value("spdlab_target_up", canary) == 1
        exp.stop()
    finally:
        listener.close()


def test_no_targets_and_missing_sockets_never_crash(tmp_path: Path) -> None:
    ghost = ExportTarget("ghost", "canary", admin_path=str(tmp_path / "nope.sock"))
    for targets in ([], [ghost]):
        exp = Exporter(targets, result_path=tmp_path / "none.json")
        reg = exp.registry
        want = 0 if targets else None
        assert (
            reg.get_sample_value("spdlab_target_up", {"target": "ghost", "build": "canary"}) == want
        )
        assert reg.get_sample_value("spdlab_scrape_collector_success", {"collector": "drain"}) == 1
        exp.stop()


# ------------------------------------------------------------------ one read per scrape


def test_one_stats_read_per_target_per_scrape() -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def reader(t: ExportTarget, timeout: float) -> dict:
        with lock:
            calls.append(t.name)
        return {"ticks": 3, "spd": {"alive": {"in": 0, "out": 1}, "dead": {"in": 0, "out": 0}}}

    targets = [ExportTarget(f"t{i:02d}", "netkey") for i in range(64)]
    snap = Snapshot(targets, ttl=0.0, reader=reader)
    reg = CollectorRegistry()
    collectors = [TargetCollector(snap), SpdCollector(snap), EspCollector(snap)]
    reg.register(ScrapeCollector(snap, collectors))
    for scrapes in (1, 2):
        fams = list(reg.collect())
        assert sorted(calls) == sorted([t.name for t in targets] * scrapes)
    up = next(f for f in fams if f.name == "spdlab_target_up")
    assert len(up.samples) == 64


def test_a_broken_target_list_is_admin_success_0_not_a_crash() -> None:
    def broken() -> list[ExportTarget]:
        raise KeyError("targets")

    exp = Exporter(broken)
    reg = exp.registry
    assert reg.get_sample_value("spdlab_scrape_collector_success", {"collector": "admin"}) == 0
    assert reg.get_sample_value("spdlab_scrape_collector_success", {"collector": "spd"}) == 1
    exp.stop()


def test_a_failing_collector_reports_success_0_and_others_still_export() -> None:
    snap = Snapshot([], reader=lambda t, timeout: {})

    class Broken:
        name = "broken"

        def collect(self):
            yield from ()
            raise RuntimeError("boom")

    reg = CollectorRegistry()
    reg.register(ScrapeCollector(snap, [Broken(), TargetCollector(snap)]))
    assert reg.get_sample_value("spdlab_scrape_collector_success", {"collector": "broken"}) == 0
    assert reg.get_sample_value("spdlab_scrape_collector_success", {"collector": "target"}) == 1


# ------------------------------------------------------------------ lingering for a scraper


def test_linger_returns_at_once_without_a_scraper(tmp_path: Path) -> None:
    with Exporter([], result_path=tmp_path / "result.json") as exp:
        assert exp.linger() is False  # not serving
        exp.start("127.0.0.1:0")
        scrape(exp.url)  # one scrape is not yet a scraper
        assert exp.linger() is False


def test_linger_waits_for_a_scrape_that_begins_after_it(tmp_path: Path) -> None:
    """The final state is scraped: a scrape begun later, answered in full."""
    (tmp_path / "result.json").write_text(json.dumps(result_doc()))
    with Exporter([], result_path=tmp_path / "result.json") as exp:
        exp.start("127.0.0.1:0")
        for _ in range(2):
            scrape(exp.url)
        assert exp.scrapes.wait_next(timeout=0) is False  # the earlier scrapes do not count
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(exp.linger(timeout=120)))
        waiter.start()

        def satisfied() -> bool:  # else scrape again: one of these begins after linger()
            if got:
                return True
            scrape(exp.url)
            return False

        until(satisfied, "linger() to return", 60)
        waiter.join()
    assert got == [True] and exp.scrapes.answered >= 3


def test_scrape_log_counts_a_scrape_once_its_answer_is_sent() -> None:
    log = ScrapeLog()
    release = threading.Event()

    def slow(environ: dict, start_response) -> list[bytes]:
        start_response("200 OK", [])
        release.wait(60)
        return [b"x"]

    app = log.wrap(slow)
    first = threading.Thread(target=lambda: list(app({"PATH_INFO": "/metrics"}, lambda *a: 0)))
    first.start()
    until(lambda: log.begun == 1, "the first scrape to begin", 10)
    release.set()
    first.join()
    assert log.answered == 0  # the body was not closed: the server has not finished sending
    body = app({"PATH_INFO": "/metrics"}, lambda *a: None)
    assert log.answered == 0 and list(body) == [b"x"]
    body.close()  # type: ignore[attr-defined]
    assert log.answered == 2 and log.interval() is not None
    assert log.wait_next(timeout=0) is False


# ------------------------------------------------------------------ run files


def result_doc(now: float = 1_750_000_000.0) -> dict:
    def tgt(name: str, build: str, verdict: str, ticks: int | None, completed: float | None):
        return {
            "name": name, "build": build, "kind": "netns", "labels": {"hardware": "x86-vm"},
            "tick_ms": 50, "verdict": verdict, "reason": "", "measures": {"drain_ticks": ticks},
            "drain_seconds": None if ticks is None else ticks * 0.05,
            "completed_at": completed, "trials": [], "synthetic": build == "canary",
        }  # fmt: skip

    doc = {
        "schema": "spdlab.result/2",
        "run_id": "20260101-000000-abcd",
        "complete": False,
        "started": "2026-01-01T00:00:00Z",
        "tick_ms": 50,
        "lab": {"name": "export"},
        "scenario": {},
        "targets": [
            tgt("gw-canary", "canary", "FAIL", 11, now),
            tgt("gw-netkey", "netkey", "PASS", 0, now + 1),
            tgt("gw-netipsec", "netipsec", "INFRA-ERROR", None, None),
            tgt("gw-later", "netkey+nextsp", "PENDING", None, None),
            tgt("gw-vm", "linux-af_key", "PASS", 0, now + 2),
        ],
        "comparisons": [],
        "versions": {"spdlab": "0.1.0", "kernel": "6.1", "hostname": "ci"},
    }
    # A real kernel cannot show frees: free ticks are not observable, never 0.
    doc["targets"][-1] |= {"kind": "qemu"}
    doc["targets"][-1]["measures"]["free_ticks"] = {"not_observable": "SPDDUMP polling"}
    return doc


def test_result_json_drives_the_per_run_series(tmp_path: Path) -> None:
    exp = Exporter([], result_path=tmp_path / "result.json")
    reg = exp.registry
    canary = {"target": "gw-canary", "build": "canary"}
    assert reg.get_sample_value("spdlab_drain_ticks", canary) is None  # no file: no data
    (tmp_path / "result.json").write_text(json.dumps(result_doc()))
    assert reg.get_sample_value("spdlab_drain_ticks", canary) == 11
    assert reg.get_sample_value("spdlab_drain_seconds", canary) == pytest.approx(0.55)
    stamp = reg.get_sample_value("spdlab_drain_completed_timestamp_seconds", canary)
    assert stamp == 1_750_000_000.0
    for v, want in (("PASS", 0), ("FAIL", 1), ("INFRA-ERROR", 0)):  # the synthetic control
        assert reg.get_sample_value("spdlab_verdict",
                                    dict(canary, verdict=v, synthetic="true")) == want  # fmt: skip
    netipsec = {"target": "gw-netipsec", "build": "netipsec"}
    infra = dict(netipsec, verdict="INFRA-ERROR", synthetic="false")
    assert reg.get_sample_value("spdlab_verdict", infra) == 1
    assert reg.get_sample_value("spdlab_drain_ticks", netipsec) is None
    later = {"target": "gw-later", "build": "netkey+nextsp", "verdict": "PASS",
             "synthetic": "false"}  # fmt: skip
    assert reg.get_sample_value("spdlab_verdict", later) is None  # PENDING: no verdict yet
    # a half-written or foreign file: no data, the collector still succeeds
    (tmp_path / "result.json").write_text('{"schema": "spdlab.res')
    assert reg.get_sample_value("spdlab_drain_ticks", canary) is None
    assert reg.get_sample_value("spdlab_scrape_collector_success", {"collector": "drain"}) == 1
    exp.stop()


def test_traffic_json_gives_sent_counts(gateways: dict[str, Netkeyd], tmp_path: Path) -> None:
    exp = make_exporter(gateways, tmp_path)
    lab = {"target": "gw-canary", "build": "canary"}
    assert exp.registry.get_sample_value("spdlab_traffic_packets_sent_total", lab) is None
    doc = {"targets": {"gw-canary": {"sent": 1500, "rate_pps": 100.0}, "gw-x": {"sent": 2}}}
    (tmp_path / "traffic.json").write_text(json.dumps(doc))
    assert exp.registry.get_sample_value("spdlab_traffic_packets_sent_total", lab) == 1500
    unknown = {"target": "gw-x", "build": ""}
    assert exp.registry.get_sample_value("spdlab_traffic_packets_sent_total", unknown) == 2
    exp.stop()


def normalise(text: str) -> str:
    """Scrape timings vary; everything else in the golden file must not."""
    return re.sub(r"^(spdlab_scrape_duration_seconds\{[^}]*\}) .*$", r"\1 0", text, flags=re.M)


def test_golden_exposition_is_promtool_clean(gateways: dict[str, Netkeyd], tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text(json.dumps(result_doc()))
    (tmp_path / "traffic.json").write_text(json.dumps({"targets": {"gw-canary": {"sent": 7}}}))
    gateways["gw-netipsec"].stop()
    mass_delete(gateways["gw-canary"], "delete", [], N)
    gateways["gw-canary"].admin.request("tick 2")
    with make_exporter(gateways, tmp_path) as exp:
        exp.start("127.0.0.1:0")
        text = normalise(scrape(exp.url))
    promtool_check(text)
    if os.environ.get("SPDLAB_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: SPDLAB_UPDATE_GOLDEN=1 to accept"


# ------------------------------------------------------------------ runs, file_sd, serve


def fake_run(base: Path, rid: str, phase: str, lab_file: Path, admin: Path | None = None) -> Path:
    d = base / rid
    (d / "targets" / "gw-a").mkdir(parents=True)
    rec = {"kind": "netns", "build": "canary+nextsp", "dir": str(d / "targets" / "gw-a")}
    state = {"phase": phase, "lab": str(lab_file), "lab_name": "demo", "targets": {"gw-a": rec}}
    (d / "state.json").write_text(json.dumps(state))
    lab = {"targets": [{"name": "gw-a", "build": "canary+nextsp", "labels": {"hardware": "rpi4"}}]}
    (d / "lab.json").write_text(json.dumps(lab))
    return d


def test_targets_from_run_and_lab_selection(tmp_path: Path) -> None:
    lab_file = tmp_path / "demo.yaml"
    lab_file.write_text("name: demo\n")
    base = tmp_path / "runs"
    old = fake_run(base, "20260101-000000-aaaa", "up", lab_file)
    fake_run(base, "20260102-000000-bbbb", "down", lab_file)
    (t,) = targets_from_run(old)
    assert (t.name, t.build, t.tree, t.patches) == (
        "gw-a", "canary+nextsp", "netkey", ("canary-earlyexit", "seed-nextsp-canary"),
    )  # fmt: skip
    assert (t.kind, t.hardware) == ("netns", "rpi4")
    assert t.admin_path == str(old / "targets" / "gw-a" / "admin.sock")
    # the newest run that is up, not the newest run
    assert resolve_run(str(lab_file), base) == old
    assert resolve_run("20260102", base) == base / "20260102-000000-bbbb"
    assert resolve_run(str(old), base) == old
    assert targets_from_run(tmp_path / "no-such-run") == []
    # RunTargets picks up targets recorded after the exporter started
    rt = RunTargets(old)
    assert [x.name for x in rt()] == ["gw-a"]
    st = json.loads((old / "state.json").read_text())
    st["targets"]["gw-b"] = {"kind": "netns", "build": "netkey"}
    (old / "state.json").write_text(json.dumps(st))
    os.utime(old / "state.json", (time.time() + 1, time.time() + 1))
    assert [x.name for x in rt()] == ["gw-a", "gw-b"]


def test_file_sd_is_valid_prometheus_target_list(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20260101-000000-abcd"
    run.mkdir(parents=True)
    own = write_file_sd(run, "127.0.0.1:9464", lab="demo")
    shared = tmp_path / "runs" / "prometheus-sd" / f"{run.name}.json"
    want = [{"targets": ["127.0.0.1:9464"], "labels": {"lab": "demo"}}]
    assert own == run / "prometheus-targets.json"
    assert json.loads(own.read_text()) == want == json.loads(shared.read_text())
    remove_file_sd(run)
    assert not own.exists() and not shared.exists()
    remove_file_sd(run)  # idempotent


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_addr(":0") == ("127.0.0.1", 0)
    assert parse_addr("[::1]:9") == ("::1", 9)
    from orchestrator.errors import ConfigError

    for bad in ("127.0.0.1", "x:y", "h:70000"):
        with pytest.raises(ConfigError):
            parse_addr(bad)


class FakePushgateway(BaseHTTPRequestHandler):
    got: list[tuple[str, str, str]] = []

    def _record(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        FakePushgateway.got.append((self.command, self.path, body))
        self.send_response(200 if self.command != "DELETE" else 202)
        self.end_headers()

    do_PUT = do_POST = do_DELETE = _record

    def log_message(self, *a) -> None:
        pass


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """A fake Pushgateway on loopback: (its URL, the requests it got)."""
    FakePushgateway.got = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakePushgateway)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", FakePushgateway.got
    finally:
        srv.shutdown()
        srv.server_close()


def test_spdlab_serve_exports_a_run(
    gateways: dict[str, Netkeyd], tmp_path: Path, pushgateway: tuple[str, list]
) -> None:
    """`spdlab serve RUN` over a run folder whose targets are live netkeyd processes."""
    run = tmp_path / "runs" / "20260101-000000-cafe"
    run.mkdir(parents=True)
    recs = {n: {"kind": "netns", "build": BUILDS[n], "admin": str(nk.admin_path)}
            for n, nk in gateways.items()}  # fmt: skip
    (run / "state.json").write_text(json.dumps({"phase": "up", "targets": recs}))
    (run / "result.json").write_text(json.dumps(result_doc()))
    env = dict(os.environ, SPDLAB_RUNS_DIR=str(tmp_path / "runs"))
    push_url, pushed = pushgateway
    argv = [sys.executable, "-m", "orchestrator.cli.main", "serve", "20260101",
            "--metrics-addr", "127.0.0.1:0", "--pushgateway", push_url]  # fmt: skip
    p = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        url = re.search(r"serving (\S+)", line)
        assert url, line
        sd = json.loads((run / "prometheus-targets.json").read_text())
        assert url.group(1) == f"http://{sd[0]['targets'][0]}/metrics"
        text = scrape(url.group(1))
        assert value(text, "spdlab_target_up", target="gw-canary", build="canary") == 1
        assert value(text, "spdlab_drain_ticks", target="gw-canary", build="canary") == 11
        until(lambda: pushed, "the run summary pushed", 30, alive=lambda: p.poll() is None)
        assert [(m, path) for m, path, _ in pushed] == [
            ("PUT", f"/metrics/job/spdlab/run/{run.name}")
        ]
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        p.stderr.close()
    assert not (run / "prometheus-targets.json").exists()
    assert not (run.parent / "prometheus-sd" / f"{run.name}.json").exists()


# ------------------------------------------------------------------ pushgateway


def test_push_and_delete_run_summary(tmp_path: Path, pushgateway: tuple[str, list]) -> None:
    run = tmp_path / "20260101-000000-abcd"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(result_doc()))
    url, got = pushgateway
    push_run_summary(url, run)
    delete_run_summary(url, run.name)
    (put, path, body), (dele, dpath, _) = got
    assert (put, path) == ("PUT", "/metrics/job/spdlab/run/20260101-000000-abcd")
    assert (dele, dpath) == ("DELETE", path)
    got = samples(body)
    assert value(got, "spdlab_drain_ticks", target="gw-canary", build="canary") == 11
    assert value(got, "spdlab_verdict", target="gw-netkey", build="netkey", verdict="PASS",
                 synthetic="false") == 1  # fmt: skip
    assert not [k for k in got if k[0].startswith("spdlab_spd_")]  # only the summary


def test_push_to_nowhere_is_an_infra_error(tmp_path: Path) -> None:
    from orchestrator.errors import InfraError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(InfraError):
        push_run_summary(f"http://127.0.0.1:{port}", tmp_path, timeout=2)
