"""The pytest plugin: an inner pytest session brings a small lab up, uses it, takes it down.

Real namespaces: two netns targets (netkey, canary), run in a subprocess through pytester.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from leftovers import leftovers

from orchestrator.runs import RunDir, list_runs
from orchestrator.wait import until

pytestmark = pytest.mark.netns

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

LAB = """\
name: plugin
range: 10.86.0.0/16
defaults: {kind: netns, tick_ms: 50, flow_idle_ticks: 100}
targets:
  - {name: gw, builds: [netkey, canary]}
scenario: {policies: 10}
"""

INNER = """\
import pytest
from orchestrator.pfkey import messages
from orchestrator.pfkey.wire import Dir, PolicyType


def test_lab(spdlab_lab):
    assert [t.name for t in spdlab_lab.targets] == ["gw-canary", "gw-netkey"]


def test_policy_round_trip(spdlab_target):
    gw = spdlab_target("gw-netkey")
    assert gw.spec.build == "netkey" and gw.spec.tick_ms == 50
    c = gw.pfkey()
    c.request(messages.spdadd("10.1.0.0/24", "10.2.0.0/24", dir=Dir.OUT,
                              policy_type=PolicyType.NONE))
    (entry,) = c.spddump()
    assert str(entry.src.ip) == "10.1.0.0" and entry.policy.dir == Dir.OUT
    assert gw.admin.request("stats")["spd"]["alive"]["out"] == 1
    assert gw.tick(2)["ticks"]


def test_targets_are_apart(spdlab_target):
    assert spdlab_target("gw-canary").pfkey().spddump() == []


def test_unknown_target(spdlab_target):
    spdlab_target("gw-nope")
"""


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short SPDLAB_RUNS_DIR (Unix socket paths < 108 bytes); whatever is left is removed."""
    d = Path(tempfile.mkdtemp(prefix="spp-", dir="/tmp"))
    monkeypatch.setenv("SPDLAB_RUNS_DIR", str(d))
    yield d
    spdlab = [sys.executable, "-m", "orchestrator.cli.main", "down", "--all"]
    subprocess.run(spdlab, cwd=ROOT, capture_output=True)
    assert leftovers(d) == []
    shutil.rmtree(d, ignore_errors=True)


def test_plugin_brings_a_lab_up_and_down(pytester: pytest.Pytester, runs: Path) -> None:
    lab = pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile(test_inner=INNER)
    res = pytester.runpytest_subprocess(
        f"--spdlab-lab={lab}", "-p", "no:cacheprovider", timeout=600
    )
    res.assert_outcomes(passed=3, failed=1)
    res.stdout.fnmatch_lines(["*spdlab: no target 'gw-nope' in the lab: gw-canary, gw-netkey*"])
    (rid,) = list_runs(runs)
    assert phase(runs / rid) == "down"
    assert leftovers(runs) == []


def test_lab_from_ini_and_kept(pytester: pytest.Pytester, runs: Path) -> None:
    pytester.makefile(".yaml", lab=LAB)
    pytester.makeini("[pytest]\nspdlab_lab = lab.yaml\n")
    pytester.makepyfile(test_inner="def test_up(spdlab_run):\n    assert spdlab_run.health()\n")
    res = pytester.runpytest_subprocess("--spdlab-keep", "-p", "no:cacheprovider", timeout=600)
    res.assert_outcomes(passed=1)
    (rid,) = list_runs(runs)
    short = RunDir(rid, runs).short
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert any(n.startswith(f"spdlab-{short}-") for n in ns.split())  # kept: `runs` removes it


def test_ctrl_c_tears_the_lab_down(pytester: pytest.Pytester, runs: Path) -> None:
    lab = pytester.makefile(".yaml", lab=LAB)
    pytester.makepyfile(
        test_inner="import pathlib, time\n"
        "def test_wait(spdlab_run):\n"
        "    pathlib.Path('started').touch()\n"
        "    time.sleep(300)\n"
    )
    argv = [sys.executable, "-m", "pytest", f"--spdlab-lab={lab}", "-p", "no:cacheprovider"]
    p = subprocess.Popen(argv, cwd=pytester.path, stdout=subprocess.PIPE, text=True)
    # Interrupted inside the test, with the lab up around it.
    started = pytester.path / "started"
    until(started.exists, "the inner test to start", 300, alive=lambda: p.poll() is None)
    rids = list_runs(runs)
    assert phase(runs / rids[0]) == "up"
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == pytest.ExitCode.INTERRUPTED, out
    assert phase(runs / rids[0]) == "down"
    assert leftovers(runs) == []


def phase(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "state.json").read_text()).get("phase")
    except (OSError, ValueError):
        return None


def test_no_lab_is_one_line_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_t(spdlab_target):\n    pass\n")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*spdlab: no lab: give --spdlab-lab FILE (or ini spdlab_lab)*"])
    assert "Traceback" not in res.stdout.str()
