"""Multi-host benchmark: bring-up over SSH, and a tick record's round trip through it.

- Bring-up: `spdlab up` (LabRun.up) of 3 lab hosts × 8 netns gateways, each host a
  namespace running Debian's sshd (tests/sshboard.py), against the same 24 gateways on
  this machine; then `down` of each. The ratio is hosts / one host.
- Record latency: the drain's read of the newest tick record (`ticks SINCE`, one record)
  from a gateway on a lab host, through the SSH relay's forwarded admin socket, against
  the same request to a gateway here on its own Unix socket. Median and 95th percentile
  of --requests each, interleaved; the ratio is SSH / local.

    python bench/bench_hosts.py [--requests 400] [--out FILE] [--json FILE]

prints a Markdown section (BENCHMARKS.md) and optionally writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sshboard import Board  # noqa: E402

from orchestrator.lab import load_lab  # noqa: E402
from orchestrator.lab.builds import firmware_dir  # noqa: E402
from orchestrator.runs import list_runs  # noqa: E402
from orchestrator.targets import sshbridge  # noqa: E402
from orchestrator.targets.session import LabRun  # noqa: E402

BUILDS = ["netkey", "netkey+nextsp", "netipsec", "netipsec+split", "canary", "canary+nextsp",
          "netkey", "canary"]  # fmt: skip


def lab_file(work: Path, name: str, hosts: list[Board] | None, per_host: int = 8) -> Path:
    text = f"name: {name}\nrange: 10.76.0.0/22\n"
    if hosts:
        text += "hosts:\n" + "".join(
            f"  h{i}: {{address: {b.address}, user: root, key: {b.key}, "
            f"known_hosts: {b.known_hosts}, python: /usr/bin/python3}}\n"
            for i, b in enumerate(hosts, 1)
        )
    text += "defaults: {kind: netns, tick_ms: 100, flow_idle_ticks: 30}\ntargets:\n"
    for i in range(1, (len(hosts) if hosts else 3) + 1):
        on = f", host: h{i}" if hosts else ""
        builds = BUILDS[:per_host]
        text += f"  - {{name: h{i}, builds: [{', '.join(builds[:6])}]{on}}}\n"
        if builds[6:]:
            text += f"  - {{name: h{i}x, builds: [{', '.join(builds[6:])}]{on}}}\n"
    p = work / f"{name}.yaml"
    p.write_text(text)
    return p


def timed_up(path: Path) -> tuple[float, LabRun]:
    lab = load_lab(path)
    t0 = time.monotonic()
    lr = LabRun.up(lab)
    return time.monotonic() - t0, lr


def timed_down(lr: LabRun) -> float:
    t0 = time.monotonic()
    problems = lr.down()
    if problems:
        raise RuntimeError(f"down left: {problems}")
    return time.monotonic() - t0


def latency(lr: LabRun, name: str) -> float:
    ep = lr.stats_endpoint(name)
    last = ep.request("ticks 0")["last"]
    t0 = time.perf_counter()
    got = ep.request(f"ticks {max(0, last - 1)}")
    took = time.perf_counter() - t0
    assert got["ticks"], got
    return took


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": statistics.median(xs) * 1000, "p95_ms": xs[int(0.95 * len(xs))] * 1000}


def markdown(r: dict[str, Any]) -> str:
    u, lat = r["up"], r["latency"]
    ratio = u["hosts"]["up_s"] / u["local"]["up_s"]
    dratio = u["hosts"]["down_s"] / u["local"]["down_s"]
    med = lat["ssh"]["median_ms"] / lat["local"]["median_ms"]
    p95 = lat["ssh"]["p95_ms"] / lat["local"]["p95_ms"]
    return "\n".join([
        "## Multi-host labs",
        "",
        "3 lab hosts × 8 netns gateways (each host a namespace running Debian's sshd, "
        "provisioned by the same playbooks over SSH, one relay bridge per gateway) against "
        "the same 24 gateways on this machine:",
        "",
        "| | 3 hosts × 8 | 24 on one host | ratio |",
        "|---|---|---|---|",
        f"| `up` | {u['hosts']['up_s']:.1f} s | {u['local']['up_s']:.1f} s | **{ratio:.2f}×** |",
        f"| `down` | {u['hosts']['down_s']:.1f} s | {u['local']['down_s']:.1f} s | "
        f"**{dratio:.2f}×** |",
        "",
        f"The newest tick record (`ticks SINCE`, what the drain polls), {r['requests']} "
        "requests each, interleaved:",
        "",
        "| | through SSH (forwarded admin.sock) | local Unix socket | ratio |",
        "|---|---|---|---|",
        f"| median | {lat['ssh']['median_ms']:.2f} ms | {lat['local']['median_ms']:.2f} ms | "
        f"**{med:.1f}×** |",
        f"| 95th percentile | {lat['ssh']['p95_ms']:.2f} ms | {lat['local']['p95_ms']:.2f} ms | "
        f"**{p95:.1f}×** |",
        "",
        "Both hosts and controller share this machine's cores, so SSH's cost here is its "
        "crypto and two more processes per request, not a network's latency.",
        "",
        f"Load average at the end: {r['load']:.1f} on {os.cpu_count()} cores.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--out", metavar="FILE")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_hosts: needs root (namespaces, sshd)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="spdbh", dir="/tmp"))
    runs = work / "r"
    os.environ["SPDLAB_RUNS_DIR"] = str(runs)
    boards: list[Board] = []
    res: dict[str, Any] = {"requests": args.requests, "up": {}}
    try:
        boards = [Board(work / f"h{i}").start() for i in range(1, 4)]
        # both sides start from built firmware: the dynamic builds here, the static ones
        # a lab host gets (make is incremental; this only makes sure they exist)
        sshbridge.build_static(set(BUILDS))
        subprocess.run(["make", "-s", "-C", str(firmware_dir()), "all"], check=True)
        for key, hosts in (("hosts", boards), ("local", None)):
            up, lr = timed_up(lab_file(work, f"bench-{key}", hosts))
            res["up"][key] = {"up_s": up, "down_s": timed_down(lr)}
            print(f"bench_hosts: {key}: up {up:.1f}s", file=sys.stderr)
        lab = lab_file(work, "bench-latency", boards[:1], per_host=1)
        text = lab.read_text() + "  - {name: here, build: netkey}\n"
        lab.write_text(text)
        lr = LabRun.up(load_lab(lab))
        try:
            ssh, local = [], []
            for _ in range(args.requests):
                ssh.append(latency(lr, "h1-netkey"))
                local.append(latency(lr, "here"))
        finally:
            lr.down()
        res["latency"] = {"ssh": summary(ssh), "local": summary(local)}
    finally:
        for rid in list_runs(runs):
            LabRun.open(rid, base=runs).down()
        for b in boards:
            b.stop()
        shutil.rmtree(work, ignore_errors=True)
    res["load"] = os.getloadavg()[0]
    md = markdown(res)
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(md + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
