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
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

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


def sample(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_dead_policies_fall_tick_by_tick_on_the_canary(runs: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    p = subprocess.Popen(
        [*SPDLAB, "run", str(lab(tmp_path, ["canary"])), "--metrics-addr", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        dead: list[float] = []
        texts = []
        deadline = time.monotonic() + 240
        while p.poll() is None and time.monotonic() < deadline and len(dead) < 12:
            try:
                text = scrape(url)
            except OSError:
                time.sleep(0.2)
                continue
            v = sample(text, "spdlab_spd_policies", target="gw-canary", state="dead", dir="in")
            if v is not None and 0 < v < N:
                dead.append(v)
                texts.append(text)
            time.sleep(0.3)
        # Falling, one tick (50 ms) at a time: never up, and down between scrapes.
        assert len(dead) >= 5, dead
        assert all(b <= a for a, b in itertools.pairwise(dead)), dead
        assert dead[-1] < dead[0]
        t = texts[-1]
        assert sample(t, "spdlab_target_up", target="gw-canary") == 1
        assert sample(t, "spdlab_build_info", target="gw-canary", build="canary",
                      hardware="x86-vm") == 1  # fmt: skip
        ticks = sample(t, "spdlab_spd_timer_ticks_total", target="gw-canary")
        assert ticks is not None and ticks > N / 10
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
        for _ in range(50):
            try:
                scrape(f"{url}/metrics")
                break
            except OSError:
                time.sleep(0.1)
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
