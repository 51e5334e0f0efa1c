"""The exporter during a real `spdlab run`, and the per-run summary on a real Pushgateway."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.wait import until

pytestmark = [pytest.mark.netns, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[1]
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
PROMTOOL = ROOT / ".cache" / "prometheus" / "usr" / "bin" / "promtool"
PUSHGATEWAY = ROOT / ".cache" / "pushgateway" / "usr" / "bin" / "prometheus-pushgateway"
N = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab(tmp: Path, builds: list[str], tick_ms: int = 50) -> Path:
    doc = {
        "name": "metrics",
        "range": "10.83.0.0/16",
        "defaults": {"kind": "netns", "tick_ms": tick_ms, "flow_idle_ticks": 100,
                     "labels": {"hardware": "x86-vm"}},
        "targets": [{"name": "gw", "builds": builds}],
        "traffic_host": {"address": "10.83.0.2"},
        "scenario": {"policies": N, "keepalive_ticks": 20, "delete": "delete",
                     "timeout_ticks": 2000},
        "expect": {"canary": {"drain_ticks_min": N - 30}},
    }  # fmt: skip
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def runs() -> Any:
    d = Path(tempfile.mkdtemp(prefix="spm-", dir="/tmp"))
    yield d
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(d)}
    subprocess.run([*SPDLAB, "down", "--all"], cwd=ROOT, env=env, capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def answers(url: str) -> bool:
    try:
        scrape(url)
    except OSError:
        return False
    return True


def sample(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


READ = [  # what is read from each scrape: key, metric, labels besides the target
    ("dead", "spdlab_spd_policies", {"state": "dead", "dir": "in"}),
    ("alive", "spdlab_spd_policies", {"state": "alive", "dir": "in"}),
    ("unlinked", "spdlab_spd_unlinked_total", {}),
    ("ticks", "spdlab_spd_timer_ticks_total", {}),
]


def test_dead_policies_fall_tick_by_tick_on_the_canary(runs: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    p = subprocess.Popen(
        [*SPDLAB, "run", str(lab(tmp_path, ["canary"])), "--metrics-addr", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen: list[dict[str, float]] = []  # canary's scrapes after the delete, during the drain
        texts: list[str] = []

        def drain_over() -> bool:
            """Scrape once; True once the drain seen in earlier scrapes has ended."""
            try:
                text = scrape(url)
            except OSError:  # not serving yet
                return False
            got = {k: sample(text, name, target="gw-canary", **lab) for k, name, lab in READ}
            if got["dead"] is not None and got["alive"] == 0 and got["dead"] > 0:
                seen.append(got)  # type: ignore[arg-type]
                texts.append(text)
            return bool(seen) and got["dead"] == 0

        until(drain_over, "canary's drain scraped to its end", 300, alive=lambda: p.poll() is None)
        # Falling tick by tick: each scrape is one stats read, so its values agree exactly.
        assert len(seen) >= 2, seen
        assert {s["dead"] + s["unlinked"] for s in seen} == {N}  # dead or unlinked, all N
        for a, b in itertools.pairwise(seen):
            assert b["unlinked"] - a["unlinked"] == b["ticks"] - a["ticks"] >= 0, (a, b)
        assert seen[-1]["dead"] < seen[0]["dead"]
        t = texts[-1]
        assert sample(t, "spdlab_target_up", target="gw-canary") == 1
        assert sample(t, "spdlab_build_info", target="gw-canary", build="canary",
                      hardware="x86-vm") == 1  # fmt: skip
        check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=t, text=True,
                               capture_output=True)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        p.communicate(timeout=120)


def test_pushgateway_summary_pushed_and_deleted_on_down(runs: Path, tmp_path: Path) -> None:
    port = free_port()
    gw = subprocess.Popen(
        [str(PUSHGATEWAY), f"--web.listen-address=127.0.0.1:{port}",
         f"--persistence.file={tmp_path / 'pg.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    try:
        until(lambda: answers(f"{url}/metrics"), "the Pushgateway to answer", 60,
              alive=lambda: gw.poll() is None)  # fmt: skip
        r = subprocess.run(
            [*SPDLAB, "run", str(lab(tmp_path, ["canary+nextsp"], tick_ms=20)),
             "--metrics-addr", "", "--pushgateway", url, "--keep", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        (rid,) = os.listdir(runs)
        text = scrape(f"{url}/metrics")
        assert sample(text, "spdlab_drain_ticks", run=rid, build="canary+nextsp") is not None
        assert sample(text, "spdlab_verdict", run=rid, verdict="PASS") == 1
        down = subprocess.run([*SPDLAB, "down", rid], cwd=ROOT, env=env, capture_output=True,
                              text=True)  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert sample(scrape(f"{url}/metrics"), "spdlab_drain_ticks", run=rid) is None
    finally:
        gw.terminate()
        gw.wait(10)
