"""Deterministic mode end to end: the demo builds run twice, measured field for field.

spdlab drives every netkeyd's ticks (tick_ms 0) in lock-step with the keepalive rounds
and the delete, so two runs of one lab and seed give the same series and measures; a
third run with another seed sends other SPIs and keys (other packets), same measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from leftovers import short_runs
from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP
from scapy.utils import rdpcap

from orchestrator.export import result
from orchestrator.runs import list_runs

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
N = 200
BUILDS = ["canary", "canary+nextsp", "netipsec", "netipsec+split", "netkey", "netkey+nextsp"]


@pytest.fixture(scope="module")
def runs() -> Iterator[Path]:
    yield from short_runs("spdet-")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """labs/demo.yaml at N policies; deterministic by its scenario flag."""
    doc = yaml.safe_load((ROOT / "labs" / "demo.yaml").read_text())
    doc["range"], doc["traffic_host"] = "10.83.0.0/16", {"address": "10.83.0.2"}
    doc["scenario"] |= {"policies": N, "timeout_ticks": 1000, "deterministic": True}
    doc["expect"]["canary"]["drain_ticks_min"] = N - 20
    path = tmp_path_factory.mktemp("det") / "lab.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(runs: Path, lab: Path, *args: str) -> Path:
    before = set(list_runs(runs))
    p = subprocess.run([*SPDLAB, "run", str(lab), "--metrics-addr", "", *args], cwd=ROOT,
                       env={**os.environ, "SPDLAB_RUNS_DIR": str(runs)},
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    (rid,) = set(list_runs(runs)) - before
    return runs / rid


@pytest.fixture(scope="module")
def twice(runs: Path, lab: Path) -> tuple[Path, Path]:
    return run(runs, lab, "--seed", "7"), run(runs, lab, "--seed", "7")


def measured(run_dir: Path) -> dict[str, Any]:
    """Per target: its summary, and per trial the ticks, measures, series and records."""
    doc = json.loads((run_dir / "result.json").read_text())
    result.validate(doc)
    keep = ("issue_tick", "delete_tick", "linked_after_delete", "allocated_after_delete",
            "timed_out", "measures", "series", "records")  # fmt: skip
    return {t["name"]: {"measures": t["measures"], "drain_spread": t["drain_spread"],
                        "verdict": t["verdict"], "deterministic": t["deterministic"],
                        "trials": [{k: tr[k] for k in keep} for tr in t["trials"]]}
            for t in doc["targets"]}  # fmt: skip


def test_two_runs_of_one_seed_match_field_for_field(twice: tuple[Path, Path]) -> None:
    a, b = (measured(d) for d in twice)
    assert sorted(a) == sorted(b) == sorted(f"gw-{x.replace('+', '-')}" for x in BUILDS)
    for name in a:
        assert a[name]["deterministic"] is True
        assert a[name]["verdict"] == "PASS", name
        ta, tb = a[name]["trials"][0], b[name]["trials"][0]
        for key in ta:
            assert ta[key] == tb[key], f"{name}: {key} differs between the two runs"
        for key, value in a[name]["measures"].items():
            assert value == b[name]["measures"][key], f"{name}: measures.{key} differs"
        assert a[name] == b[name]


def test_lock_step_schedule(twice: tuple[Path, Path]) -> None:
    """The delete falls between two ticks; each keepalive round lands before its tick."""
    res = result.load(twice[0] / "result.json")
    assert res.scenario.deterministic and res.scenario.seed == 7
    by = {t.build: t for t in res.targets}
    for t in res.targets:
        tr = t.trials[0]
        assert tr.issue_tick == tr.delete_tick and t.measures.delete_span_ticks == 0
        assert t.measures.timer_unlinked_during_delete == 0
        assert t.tick_ms == 0 and t.drain_seconds is None
    canary = by["canary"].trials[0]
    assert canary.measures.drain_ticks == N  # one unlink per tick, none by the delete
    # Rounds every 25 ticks from round 0, sent just before the delete: the record of the
    # tick after each round carries its N packets, and no other record carries any.
    esp = {r.tick - canary.delete_tick: r.esp_ok + r.esp_drop for r in canary.records}
    assert {k: v for k, v in esp.items() if v} == {k: N for k in range(1, len(esp) + 1, 25)}
    # netkey frees on the flows' next keepalive: the round at tick 25, read before tick 26.
    assert by["netkey"].measures.free_ticks == 26


def test_packets_follow_the_seed(runs: Path, lab: Path, twice: tuple[Path, Path]) -> None:
    """One seed, the same ESP bytes; another seed, other SPIs and keys, the same measures."""
    other = run(runs, lab, "--seed", "8")
    same = [rdpcap(str(d / "esp-sample.pcap")) for d in twice]
    assert [bytes(p) for p in same[0]] == [bytes(p) for p in same[1]]
    spis = {p[ESP].spi for p in rdpcap(str(other / "esp-sample.pcap")) if p.haslayer(ESP)}
    assert spis and spis.isdisjoint({p[ESP].spi for p in same[0] if p.haslayer(ESP)})
    assert all(p.haslayer(IP) for p in same[0])
    a, b = measured(twice[0]), measured(other)
    assert {n: t["measures"] for n, t in a.items()} == {n: t["measures"] for n, t in b.items()}
