"""`spdlab run` end to end in every delete mode on the demo builds, and `spdlab matrix`.

Each mode runs the six demo builds at a small N in real namespaces with keepalive
traffic, K trials each; each comparison must come out as the firmware's semantics say
(spec §4), decided by the rank test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from leftovers import leftovers

from orchestrator.export import result
from orchestrator.runs import list_runs

ROOT = Path(__file__).resolve().parents[1]
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
N = 40
K = 5  # trials: the rank test decides at 4 a side, at 5 with one trial out of line
BUILDS = ["netkey", "netkey+nextsp", "netipsec", "netipsec+split", "canary", "canary+nextsp"]
DELETE = {
    ("netkey", "canary"): "regressed",  # the synthetic control: one unlink per tick
    ("canary", "canary+nextsp"): "fixed",
    ("netipsec", "netipsec+split"): "fixed",  # no premature frees
    ("netkey", "netkey+nextsp"): "no effect",  # the report's patch
}
# SPDUPDATE unlinks the replaced policy at once on every netkey build: the canary's
# timer loop never comes into it.
UPDATE = DELETE | {("netkey", "canary"): "no effect", ("canary", "canary+nextsp"): "no effect"}
EXPECTED = {"delete": DELETE, "delete2": DELETE, "flush": DELETE, "expire": DELETE,
            "spdupdate": UPDATE}  # fmt: skip


@pytest.fixture
def runs() -> Any:
    d = Path(tempfile.mkdtemp(prefix="spm-", dir="/tmp"))  # short: Unix socket paths
    yield d
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(d)}
    subprocess.run([*SPDLAB, "down", "--all"], cwd=ROOT, env=env, capture_output=True)
    assert leftovers(d) == []
    shutil.rmtree(d, ignore_errors=True)


def lab(tmp: Path, mode: str, deterministic: bool = False) -> Path:
    doc = {
        "name": f"modes-{mode}",
        "range": "10.85.0.0/16",
        "defaults": {"kind": "netns", "tick_ms": 20, "flow_idle_ticks": 1000},
        "targets": [{"name": "gw", "builds": BUILDS}],
        "traffic_host": {"address": "10.85.0.2"},
        "scenario": {"policies": N, "keepalive_ticks": 10, "delete": mode, "timeout_ticks": 300,
                     "trials": K, "deterministic": deterministic},
        "expect": {"netkey+nextsp": {"drain_ticks_max": 5},
                   "netipsec+split": {"premature_frees": 0, "use_after_free": 0}},
    }  # fmt: skip
    if deterministic:  # on the wall clock a stalled netkeyd reads every flow's keepalive
        # before its next tick, so a trial may free nothing early: timing, not the build
        doc["expect"]["netipsec"] = {"premature_frees_min": 1}
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def spdlab(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    return subprocess.run([*SPDLAB, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=2400)  # fmt: skip


def checked(run_dir: Path) -> Any:
    """result.json, valid against the generated schema, read into the model."""
    result.validate(json.loads((run_dir / "result.json").read_text()))
    return result.load(run_dir / "result.json")


@pytest.mark.timeout(2400)  # K trials of six builds on a host shared with other jobs
@pytest.mark.parametrize("clock", ["wall", "deterministic"])
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_every_delete_mode_classifies_the_demo_builds(mode: str, clock: str, runs: Path,
                                                      tmp_path: Path):  # fmt: skip
    det = clock == "deterministic"
    p = spdlab(runs, "run", str(lab(tmp_path, mode, det)), "--metrics-addr", "")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (rid,) = list_runs(runs)
    res = checked(runs / rid)
    assert res.complete and res.phase.value == "down" and res.scenario.delete == mode
    got = {(c.base, c.patched): c.verdict for c in res.comparisons}
    want = EXPECTED[mode]
    if not det:  # wall clock: a no-op pair whose free ticks spread past the tolerance under
        # load is rightly undecided; it must never read as an effect
        want = {k: v if v != "no effect" or got.get(k) != "undecided" else "undecided"
                for k, v in want.items()}  # fmt: skip
    assert got == want, [c.model_dump() for c in res.comparisons]
    control = [c for c in res.comparisons if c.control]
    assert [(c.base, c.patched) for c in control] == [("netkey", "canary")]
    by = {t.build: t.measures for t in res.targets}
    assert by["netkey"].drain_ticks is not None
    assert by["netipsec+split"].premature_frees == 0 == by["netipsec+split"].use_after_free
    if det:  # the same keepalives on the same ticks: the refcount runs out first
        assert by["netipsec"].premature_frees > 0
    if mode == "expire":  # no message: nothing is removed by the delete itself
        assert all(m.removed_by_delete == 0 for m in by.values())
    assert all(t.deterministic == det for t in res.targets)
    if det:  # spdlab runs no tick while the delete is sent
        assert all(m.delete_span_ticks == 0 for m in by.values())


def test_matrix_is_a_lab_less_front_end_to_the_same_engine(runs: Path) -> None:
    p = spdlab(runs, "matrix", "--mode", "delete2", "--builds", "canary", "canary+nextsp",
               "--policies", str(N), "--range", "10.86.0.0/16", "--json")  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (run,) = json.loads(p.stdout)["runs"]
    assert run["mode"] == "delete2" and run["complete"]
    (c,) = run["comparisons"]
    # One trial: too few for the rank test; the medians still say which way it went.
    assert (c["base"], c["patched"], c["verdict"]) == ("canary", "canary+nextsp", "undecided")
    assert c["observed"] == "fixed" and c["k"] == [1, 1]
    res = checked(runs / run["run_id"])  # a normal run folder, written by the engine
    assert res.lab.file == "(spdlab matrix)" and [t.verdict for t in res.targets] == ["PASS"] * 2
