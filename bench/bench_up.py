"""Bring-up benchmark: `spdlab up` and `down` of 1 to 256 netns gateways, and idle RSS.

For each size, one lab of that many gateways (builds netkey and netkey+nextsp):
- `up` through ansible-runner (LabRun.up), split into the firmware build, the network
  (switch, traffic host, namespaces, veths, addresses) and the start (netkeyd, PF_KEY REGISTER);
- `down` (down.yml, then the state sweep);
- a baseline: the role's own shell scripts run in one plain shell loop, no ansible, doing the
  same network and start work, then the same teardown. The ratio is ansible / shell.
After the largest `up`, the RSS of every idle netkeyd is read from /proc, and where `up`
spent its time is read from ansible-runner's artifacts (`ansible_profile`).

    python bench/bench_up.py [--sizes 1,16,64,256] [--out FILE] [--json FILE]

prints a Markdown section (BENCHMARKS.md) and optionally writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import publish  # noqa: E402

from orchestrator.lab import load_lab  # noqa: E402
from orchestrator.lab.builds import firmware_dir  # noqa: E402
from orchestrator.runs import RunDir, list_runs  # noqa: E402
from orchestrator.targets.netns import NetnsDriver  # noqa: E402
from orchestrator.targets.session import LabRun  # noqa: E402
from orchestrator.targets.state import StateFile  # noqa: E402

GOAL_UP_S = 30.0  # for the largest size measured (256)
GOAL_RSS_MB = 4.0
ROLE_FILES = ROOT / "playbooks" / "roles" / "netns_gateway" / "files"

LAB = """\
name: bench{n}
range: 10.{octet}.0.0/16
defaults: {{kind: netns, build: netkey, tick_ms: 100, flow_idle_ticks: 30}}
targets:
  - {{name: gw, count: {half}}}
  - {{name: gwp, build: netkey+nextsp, count: {rest}}}
"""


def lab_file(workdir: Path, n: int) -> Path:
    p = workdir / f"bench{n}.yaml"
    half = max(1, n // 2)
    rest = n - half
    text = LAB.format(n=n, octet=90 + n % 100, half=half, rest=rest)
    if rest == 0:
        text = text[: text.index("  - {name: gwp")]
    p.write_text(text)
    return p


def idle_rss_kb(lr: LabRun) -> list[int]:
    out = []
    for name in lr.targets():
        pid = lr.state.targets[name].get("pid")
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out.append(int(line.split()[1]))
    return out


def ansible_profile(run_path: Path) -> dict[str, dict[str, float]]:
    """Where each ansible-playbook run of `up` spent its time, from ansible-runner's
    artifacts: from the runner's start (its `command` file) to the playbook's first event
    (ansible starting: imports, inventory, playbook parsing), every task's own duration,
    and the rest (between tasks, and from the last event to the runner's `status`)."""
    out = {}
    for art in sorted((run_path / "ansible" / "artifacts").glob("up-*")):
        events = [json.loads(p.read_text()) for p in (art / "job_events").glob("*.json")]
        stamp = {e["event"]: datetime.fromisoformat(e["created"]).timestamp() for e in events
                 if e["event"] in ("playbook_on_start", "playbook_on_stats")}  # fmt: skip
        tasks: dict[str, float] = {}
        for e in events:
            if e["event"] in ("runner_on_ok", "runner_on_failed"):
                d = e["event_data"]
                tasks[d["task"]] = tasks.get(d["task"], 0.0) + float(d.get("duration") or 0)
        t0, t1 = (art / "command").stat().st_mtime, (art / "status").stat().st_mtime
        startup = stamp["playbook_on_start"] - t0
        out[art.name] = {"startup": startup, "tasks": tasks,
                         "other": t1 - t0 - startup - sum(tasks.values())}  # fmt: skip
    return out


def ansible_round(lab_path: Path, runs: Path, want_rss: bool) -> dict[str, Any]:
    lab = load_lab(lab_path)
    t0 = time.monotonic()
    lr = LabRun.up(lab, base=runs)
    up = time.monotonic() - t0
    rss = idle_rss_kb(lr) if want_rss else []
    profile = ansible_profile(lr.run.path)
    healthy = sum(h.healthy for h in lr.health())
    t0 = time.monotonic()
    problems = lr.down()
    down = time.monotonic() - t0
    return {
        "up_s": up,
        "build_s": sum(p["tasks"].get(BUILD_TASK, 0.0) for p in profile.values()),
        "down_s": down,
        "healthy": healthy,
        "problems": problems,
        "rss_kb": rss,
        "profile": profile,
    }


def shell_round(lab_path: Path, runs: Path) -> dict[str, float]:
    """The same namespaces and daemons from one plain shell loop (the role's scripts)."""
    lab = load_lab(lab_path)
    run = RunDir.create(runs)
    state = StateFile.create(run.state_file, run_id=run.run_id, phase="shell-baseline")
    drv = NetnsDriver(run, state, lab)
    inv = drv.inventory()["all"]
    common, hosts = inv["vars"], inv["children"]["netns_gateway"]["hosts"]
    state.record(
        {"type": "netns", "name": drv.switch_ns}, {"type": "netns", "name": drv.traffic_ns}
    )
    state.record(*({"type": "netns", "name": h["spdlab_ns"]} for h in hosts.values()))
    base = {
        "SW": common["spdlab_switch_ns"],
        "BRIDGE": common["spdlab_bridge"],
        "TH": common["spdlab_traffic_ns"],
        "TH_VETH": common["spdlab_traffic_veth"],
        "TH_ADDR": common["spdlab_traffic_address"],
        "PLEN": str(common["spdlab_prefixlen"]),
        "PY": sys.executable,
        "READY": str(ROLE_FILES / "pfkey_ready.py"),
        "TIMEOUT": "20",
    }
    lines = [f"sh {ROLE_FILES}/lab.sh up"]
    down = []
    for h in hosts.values():
        env = {
            "NS": h["spdlab_ns"], "VETH": h["spdlab_veth"], "ADDR": h["spdlab_address"],
            "TDIR": h["spdlab_target_dir"], "TICK_MS": str(h["spdlab_tick_ms"]),
            "IDLE": str(h["spdlab_flow_idle_ticks"]),
            "BIN": str(firmware_dir() / "build" / h["spdlab_build"] / "netkeyd"),
        }  # fmt: skip
        assign = " ".join(f"{k}='{v}'" for k, v in env.items())
        lines.append(f"{assign} sh {ROLE_FILES}/gateway.sh net")
        lines.append(f"{assign} sh {ROLE_FILES}/gateway.sh start >/dev/null")
        down.append(f"{assign} sh {ROLE_FILES}/gateway.sh down")
    down.append(f"sh {ROLE_FILES}/lab.sh down")
    env = {**os.environ, **base}
    up_sh, down_sh = run.path / "shell-up.sh", run.path / "shell-down.sh"
    up_sh.write_text("\n".join(lines) + "\n")  # a file: 256 gateways exceed one argument
    down_sh.write_text("\n".join(down) + "\n")
    try:
        t0 = time.monotonic()
        subprocess.run(["sh", "-e", str(up_sh)], env=env, check=True)
        up = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run(["sh", "-e", str(down_sh)], env=env, check=True)
        down_s = time.monotonic() - t0
    finally:
        LabRun.open(run.run_id, base=runs).down()
    return {"up_s": up, "down_s": down_s}


BUILD_TASK = "Build the firmware builds the lab uses"


def markdown(rows: list[dict[str, Any]], rss: list[int]) -> str:
    cpus = os.cpu_count()
    out = [
        "## Bring-up and teardown: netns gateways through ansible-runner",
        "",
        f"`python bench/bench_up.py` on {cpus} cores, Linux {platform.release()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, load average {os.getloadavg()[0]:.1f} "
        "at the end. `up` is `LabRun.up` (what `spdlab up` runs): the provision playbook "
        "(firmware build, make of 2 builds in parallel, then the network) and the start "
        "playbook (every netkeyd up and answering PF_KEY REGISTER). The gateways' steps are "
        "batched: one task for every gateway's namespace, veth and address "
        "(`gateways.sh net`), one for every netkeyd (`gateways.sh start`, one REGISTER wait "
        "for all). The baseline, in the same run: the role's one-gateway script "
        "(`gateway.sh`) in a plain `sh` loop, without ansible and without the build. The "
        "ratio compares `up` without the build task to that loop.",
        "",
        "| gateways | up (s) | build task (s) | up without it (s) | shell loop up (s) "
        "| ansible / shell | down (s) | shell loop down (s) | down / shell |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n, a, s = r["n"], r["ansible"], r["shell"]
        net = a["up_s"] - a["build_s"]
        if s is None:
            out.append(f"| {n} | {a['up_s']:.1f} | {a['build_s']:.1f} | {net:.1f} | not run "
                       f"| — | {a['down_s']:.1f} | not run | — |")  # fmt: skip
            continue
        out.append(
            f"| {n} | {a['up_s']:.1f} | {a['build_s']:.1f} | {net:.1f} | {s['up_s']:.1f} "
            f"| {net / s['up_s']:.2f}x | {a['down_s']:.1f} | {s['down_s']:.1f} "
            f"| {a['down_s'] / max(s['down_s'], 1e-9):.2f}x |"
        )
    ran = [r for r in rows if r["shell"] is not None]
    if ran and len(ran) < len(rows):
        r = ran[-1]
        out += ["", f"The shell loop is serial and was run up to {r['n']} gateways "
                f"(`--shell-max`): it took {r['shell']['up_s']:.1f} s there."]  # fmt: skip
    big = max(rows, key=lambda r: r["n"])
    n, a = big["n"], big["ansible"]
    ok = a["up_s"] < GOAL_UP_S and a["healthy"] == n
    out += [
        "",
        f"- Goal: {n} gateways up in < {GOAL_UP_S:.0f} s: {a['up_s']:.1f} s, "
        f"{a['healthy']}/{n} healthy: **{'met' if ok else 'missed'}**"
        + ("." if ok else f" by {a['up_s'] - GOAL_UP_S:.1f} s."),
    ]
    if rss:
        mean, top = sum(rss) / len(rss) / 1024, max(rss) / 1024
        ok = top < GOAL_RSS_MB
        out.append(
            f"- RSS per idle netkeyd ({len(rss)} daemons): mean {mean:.1f} MB, max {top:.1f} MB; "
            f"goal < {GOAL_RSS_MB:.0f} MB: **{'met' if ok else 'missed'}**."
        )
    out += ["", *_profile_md(big)]
    return "\n".join(out)


def _profile_md(row: dict[str, Any]) -> list[str]:
    """Where `up` of the largest lab spent its time, per ansible-playbook run."""
    prof = row["ansible"]["profile"]
    lines = [
        f"Where `up` of {row['n']} gateways spent its time (ansible-runner's artifacts: "
        "from the runner's start to the playbook's first event is ansible starting up; "
        "each task's own duration; the rest is between tasks and after the last one):",
        "",
        "| playbook run | ansible start (s) | tasks (s) | other (s) |",
        "|---|---:|---|---:|",
    ]
    total = sum(p["startup"] + sum(p["tasks"].values()) + p["other"] for p in prof.values())
    start = sum(p["startup"] for p in prof.values())
    for ident, p in prof.items():
        tasks = "; ".join(f"{k} {v:.1f}" for k, v in p["tasks"].items())
        lines.append(f"| {ident} | {p['startup']:.1f} | {tasks} | {p['other']:.1f} |")
    lines += [
        "",
        f"Ansible starting up is {start:.1f} s of the {total:.1f} s in playbooks "
        f"({100 * start / max(total, 1e-9):.0f}%), paid once per playbook run whatever the "
        "gateway count.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,16,64,256", help="gateway counts, comma-separated")
    p.add_argument("--out", metavar="FILE", help="write the Markdown section here")
    p.add_argument("--json", metavar="FILE", help="write the numbers as JSON here")
    p.add_argument(
        "--shell-max",
        type=int,
        default=1 << 30,
        metavar="N",
        help="run the shell loop baseline up to N gateways only (it is serial)",
    )
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_up: needs root (network namespaces)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="spdb", dir="/tmp"))
    runs = work / "r"
    os.environ["SPDLAB_RUNS_DIR"] = str(runs)
    rows, rss = [], []
    try:
        for n in sizes:
            path = lab_file(work, n)
            a = ansible_round(path, runs, want_rss=n == max(sizes))
            rss = a.pop("rss_kb") or rss
            print(f"bench_up: {n} gateways: up {a['up_s']:.1f}s down {a['down_s']:.1f}s",
                  file=sys.stderr)  # fmt: skip
            s = shell_round(path, runs) if n <= args.shell_max else None
            rows.append({"n": n, "ansible": a, "shell": s})
            if s is not None:
                print(f"bench_up: {n} gateways: shell up {s['up_s']:.1f}s", file=sys.stderr)
    finally:
        for rid in list_runs(runs):
            LabRun.open(rid, base=runs).down()
        shutil.rmtree(work, ignore_errors=True)
    return publish(markdown(rows, rss), args.out, {"rows": rows, "rss_kb": rss}, args.json)


if __name__ == "__main__":
    sys.exit(main())
