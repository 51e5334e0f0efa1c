"""Traffic benchmark: the ESP generator against scapy, and netkeyd's ESP input rate.

One run, one lab: a gateway namespace running netkeyd (--esp), a traffic namespace, a veth
pair. Every sender runs as its own process inside the traffic namespace (scapy reads its
routes there), pinned to one core; netkeyd is pinned to another when there is one, and RPS
on the gateway's veth moves the gateway's receive processing to netkeyd's core (on a veth
it would otherwise run in the sender's system call, on the sender's core).

1. Generator: ESP packets per second of
   - scapy `send()` (a new socket per call, as users write it),
   - one reused `conf.L3socket`,
   - the fast path (AES-GCM-16 encryption per packet, unique sequence numbers), over the raw
     IPv4 socket and over AF_PACKET.
   - the native sender (`espgen`, AES-GCM by libcrypto, 64 frames per sendmmsg on
     AF_PACKET), one process, then one process per core, each with its own SAs.
   scapy sends packets the fast path encrypted beforehand (so it is not charged for
   encryption); every method gets its own sequence-number range, so netkeyd accepts all
   it reads; scapy decrypts frames every native trial sent.
2. netkeyd ESP input with 2000 live policies, then with the same 2000 deleted but still
   linked (the canary build keeps referenced DEAD entries until the timer, and its timer is
   off here): packets handled per netkeyd CPU-second, and per wall second.

    python bench/bench_traffic.py [--seconds S] [--policies N] [--json FILE] [--out FILE]

prints a Markdown section (BENCHMARKS.md) and optionally writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import publish  # noqa: E402

from orchestrator.netkeyd import Netkeyd  # noqa: E402
from orchestrator.traffic import fastpath, scenario, template  # noqa: E402
from orchestrator.traffic.native import NativeFlood  # noqa: E402
from orchestrator.traffic.run import TrafficRun  # noqa: E402
from orchestrator.traffic.sender import Pacing  # noqa: E402

GW, TR = "10.97.0.1", "10.97.0.2"
PREFIX = os.environ.get("SPDLAB_BENCH_NETNS_PREFIX", "spdb")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Lab:
    """Two namespaces and a veth; netkeyd in the gateway one. Always torn down."""

    def __init__(self, workdir: Path, build: str, policies: int, rps: bool = True):
        tag = secrets.token_hex(3)
        self.gw, self.tr = f"{PREFIX}-{tag}-gw", f"{PREFIX}-{tag}-tr"
        self.veth = f"{PREFIX[:4]}{tag}"
        self.workdir = workdir
        self.build = build
        self.sc = scenario.generate(policies, TR, GW)
        self.nk: Netkeyd | None = None
        self.rps = rps and len(os.sched_getaffinity(0)) > 1

    def __enter__(self) -> Lab:
        try:
            _ip("netns", "add", self.gw)
            _ip("netns", "add", self.tr)
            _ip("link", "add", f"{self.veth}g", "netns", self.gw, "type", "veth",
                "peer", "name", f"{self.veth}t", "netns", self.tr)  # fmt: skip
            for ns, dev, addr in ((self.gw, "g", GW), (self.tr, "t", TR)):
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", self.veth + dev)
                _ip("-n", ns, "link", "set", self.veth + dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
            if self.rps:
                cpu = sorted(os.sched_getaffinity(0))[1]
                rps = f"/sys/class/net/{self.veth}g/queues/rx-0/rps_cpus"
                _ip("netns", "exec", self.gw, "sh", "-c", f"echo {1 << cpu:x} > {rps}")
            self.nk = Netkeyd(
                self.build, self.workdir / "netkeyd", tick_ms=0, flow_idle_ticks=1_000_000,
                netns=self.gw, extra=("--esp", GW),
            ).start()  # fmt: skip
            _pin(self.nk.pid, 1)
            with self.nk.pfkey(timeout=30) as c:
                bad = [r for r in c.pipeline(self.sc.sa_msgs + self.sc.policy_msgs) if r.errno]
            if bad:
                raise RuntimeError(f"{len(bad)} PF_KEY requests failed")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.nk is not None:
            self.nk.stop()
        for ns in (self.gw, self.tr):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def esp(self) -> dict[str, Any]:
        """netkeyd's ESP counters: ok and drop by reason."""
        assert self.nk is not None
        return self.nk.admin.stats()["esp"]

    def counters(self) -> tuple[int, float]:
        """(ESP packets handled: ok + every drop, netkeyd CPU seconds)."""
        assert self.nk is not None
        esp = self.esp()
        with open(f"/proc/{self.nk.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return esp["ok"] + sum(esp["drop"].values()), cpu

    def settle(self, timeout: float = 10.0) -> int:
        """Wait until netkeyd's counters stop moving; the handled count."""
        last, _ = self.counters()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now, _ = self.counters()
            if now == last:
                return now
            last = now
        return last


def _pin(pid: int, cpu: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(pid, {cpus[cpu % len(cpus)]})


# ---------------------------------------------------------------- scapy workers


def worker(method: str, packets_path: str, out_path: str) -> None:
    """Run inside the traffic namespace: send every packet of the file with scapy."""
    from scapy.config import conf
    from scapy.layers.inet import IP
    from scapy.sendrecv import send

    data = Path(packets_path).read_bytes()
    pkts, off = [], 0
    while off < len(data):
        n = int.from_bytes(data[off : off + 2], "big")
        pkts.append(IP(data[off + 2 : off + 2 + n]))
        off += 2 + n
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "send":
        for p in pkts:
            send(p, verbose=False)
    else:
        s = conf.L3socket()
        for p in pkts:
            s.send(p)
        s.close()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    Path(out_path).write_text(json.dumps({"sent": len(pkts), "elapsed": elapsed, "cpu_s": cpu}))


def _scapy_rate(lab: Lab, method: str, n: int, seq_base: int, tmp: Path) -> dict[str, Any]:
    templates = template.build_all(lab.sc.flows)
    encs = [fastpath.encoder(t) for t in templates]
    buf = bytearray()
    for i in range(n):
        j = i % len(encs)
        p = encs[j](seq_base + i // len(encs))
        buf += len(p).to_bytes(2, "big") + p
    tmp.mkdir(parents=True, exist_ok=True)
    pk, out = tmp / f"{method}.bin", tmp / f"{method}.json"
    pk.write_bytes(bytes(buf))
    before = lab.settle()
    argv = [sys.executable, __file__, "--worker", method, str(pk), str(out)]
    proc = subprocess.Popen(["ip", "netns", "exec", lab.tr, *argv])
    _pin(proc.pid, 0)
    if proc.wait(timeout=600) != 0:
        raise RuntimeError(f"scapy {method} worker failed")
    res = json.loads(out.read_text())
    res["accepted"] = lab.settle() - before
    res["pps"] = res["sent"] / res["elapsed"]
    res["cpu_pps"] = res["sent"] / max(res["cpu_s"], 1e-9)
    return res


def _fast_rate(lab: Lab, link: str, seconds: float, seq_base: int, tmp: Path) -> dict[str, Any]:
    before = lab.settle()
    run = TrafficRun(
        lab.sc.spec, tmp / f"fast-{link}", lab.tr, Pacing("flood", duration=seconds),
        link=link, seq_base=seq_base, check=8,
    )  # fmt: skip
    run.start(timeout=600)  # scapy builds the templates first: slow on a loaded machine
    _pin(run.pid, 0)  # type: ignore[arg-type]
    stats = run.wait(seconds + 60)
    return {
        "sent": stats.sent,
        "errors": stats.errors,
        "elapsed": stats.elapsed,
        "pps": stats.rate_pps,
        "cpu_s": stats.cpu_s,
        "cpu_pps": stats.cpu_pps,
        "accepted": lab.settle() - before,
    }


def _native_rate(
    lab: Lab, procs: int, seconds: float, seq_base: int, tmp: Path, profile: bool = False
) -> dict:
    """espgen with `procs` processes for `seconds`; what netkeyd accepted of it, and how
    many of the frames they sent scapy decrypted. `profile`: perf on the first process."""
    before, esp0 = lab.settle(), lab.esp()
    # perf starts espgen: here it cannot attach to a task already running (ESRCH)
    perf = tmp / "espgen.perf"
    wrap = ("perf", "record", "-q", "-e", "cpu-clock", "-o", str(perf), "--") if profile else ()
    flood = NativeFlood(lab.sc.spec, tmp, lab.tr, procs=procs, duration=seconds,
                        seq_base=seq_base, wrap=wrap)  # fmt: skip
    st = flood.start().wait(seconds + 60)
    prof = _perf_report(perf) if profile else {}
    handled = lab.settle() - before
    esp1 = lab.esp()
    drop0 = esp0["drop"]
    dropped = {k: n - drop0.get(k, 0) for k, n in esp1["drop"].items() if n != drop0.get(k, 0)}
    return {
        "procs": st.procs,
        "next_seq": max(st.last_seq.values()) + 1,  # the split is uneven: above the highest
        "dropped": dropped,
        "sent": st.sent,
        "errors": st.errors,
        "elapsed": st.elapsed,
        "pps": st.rate_pps,
        "cpu_s": st.cpu_s,
        "cpu_pps": st.cpu_pps,
        "accepted": esp1["ok"] - esp0["ok"],
        "handled": handled,
        "lost": st.sent - handled,  # netkeyd's receive buffer overflowed
        "decrypted": flood.check_samples(st),
        "profile": prof,
    }


def _input_rate(lab: Lab, seconds: float, seq_base: int, tmp: Path, tag: str) -> dict[str, Any]:
    assert lab.nk is not None
    handled0, cpu0 = lab.settle(), lab.counters()[1]
    spd0 = lab.nk.admin.stats()["spd"]
    t0 = time.monotonic()
    fast = _fast_rate(lab, "packet", seconds, seq_base, tmp / tag)
    handled1, cpu1 = lab.settle(), lab.counters()[1]
    wall = time.monotonic() - t0
    handled = handled1 - handled0
    cpu = max(cpu1 - cpu0, 1e-9)
    spd = lab.nk.admin.stats()["spd"]
    return {
        "lookups_per_packet": (spd["lookups"] - spd0["lookups"]) / max(handled, 1),
        "walked_per_packet": (spd["lookup_walked"] - spd0["lookup_walked"]) / max(handled, 1),
        "sent": fast["sent"],
        "sender_pps": fast["pps"],
        "handled": handled,
        "lost": fast["sent"] - handled,  # receive-buffer overflows
        "cpu_s": cpu,
        "pps_per_cpu": handled / cpu,
        "wall_pps": handled / fast["elapsed"],
        "wall_s": wall,
        "alive_in": spd["alive"]["in"],
        "dead_in": spd["dead"]["in"],
    }


def _oncpu(pid: int) -> float:
    """Seconds the process has run on a CPU (/proc/PID/schedstat, nanoseconds)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _perf_start(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """perf record (software clock) on netkeyd, or None without a working perf."""
    if subprocess.run(["perf", "--version"], capture_output=True).returncode != 0:
        return None
    return subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-o", str(out),
                             "-p", str(pid)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _perf_shares(proc: subprocess.Popen[bytes] | None, out: Path) -> dict[str, Any]:
    """Stop perf; netkeyd's samples by object (kernel, netkeyd, libcrypto, libc) and the
    top symbols, in percent."""
    if proc is None:
        return {}
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return _perf_report(out)


def _perf_report(out: Path) -> dict[str, Any]:
    """A perf.data file's samples by object and its top symbols, in percent."""

    def report(sort: str) -> list[tuple[float, str]]:
        text = subprocess.run(["perf", "report", "-i", str(out), "--no-children", "--sort",
                               sort, "--stdio", "-g", "none"], capture_output=True,
                              text=True).stdout  # fmt: skip
        rows = re.findall(r"^\s*([\d.]+)%\s+(.+?)\s*$", text, re.M)
        return [(float(p), name) for p, name in rows]

    dsos: dict[str, float] = {}
    for pct, name in report("dso"):
        key = "kernel" if "kernel" in name else name.split(".so")[0]
        dsos[key] = dsos.get(key, 0.0) + pct
    return {"dso": dsos, "top": report("dso,sym")[:8]}


def _capacity(lab: Lab, rounds: int, per_round: int, seq_base: int, tmp: Path) -> dict[str, Any]:
    """netkeyd's ESP input at saturation, through its raw socket.

    Each round queues `per_round` packets on netkeyd's socket while it is stopped
    (SIGSTOP), sent at full rate by espgen on every core, then lets it drain them: its
    CPU time per packet no longer depends on how fast a sender can feed it, and the
    kernel's receive path ran before the drain (while it was stopped), so what is timed
    is recvmmsg and netkeyd's work. Every packet must be accepted.
    """
    assert lab.nk is not None
    handled = sent = decrypted = 0
    cpu = 0.0
    ok0 = lab.esp()["ok"]
    perf = _perf_start(lab.nk.pid, tmp / "capacity.perf")
    for k in range(rounds):
        before = lab.settle()
        os.kill(lab.nk.pid, signal.SIGSTOP)
        try:
            flood = NativeFlood(lab.sc.spec, tmp / f"cap{k}", lab.tr, count=per_round,
                                seq_base=seq_base)  # fmt: skip
            stats = flood.start().wait(300)
        finally:
            c0 = _oncpu(lab.nk.pid)
            os.kill(lab.nk.pid, signal.SIGCONT)
        handled += lab.settle() - before
        cpu += _oncpu(lab.nk.pid) - c0
        sent += stats.sent
        decrypted += flood.check_samples(stats)
        seq_base = max(stats.last_seq.values()) + 1
    return {"rounds": rounds, "sent": sent, "handled": handled, "cpu_s": cpu,
            "accepted": lab.esp()["ok"] - ok0, "decrypted": decrypted,
            "pps_per_cpu": handled / max(cpu, 1e-9), "next_seq": seq_base,
            "profile": _perf_shares(perf, tmp / "capacity.perf")}  # fmt: skip


def _bench_esp(policies: int, size: int = 100, packets: int = 2_000_000) -> dict[str, Any]:
    """The in-process baseline: firmware/fuzz/bench_esp, same policies, one flow each."""
    fw = ROOT / "firmware"
    subprocess.run(["make", "-s", "-C", str(fw), "bench-esp"], check=True, capture_output=True)
    out = subprocess.run(
        [str(fw / "build" / "fuzz" / "bench_esp"), "-a", "gcm", "-p", str(policies),
         "-f", str(policies), "-s", str(size), "-n", str(packets)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    v = dict(re.findall(r"(\w+)=(\S+)", out))
    return {"pps_per_cpu": float(v["cpu_pps"]), "wall_pps": float(v["pps"]), "line": out.strip()}


def collect(
    seconds: float = 5.0,
    policies: int = 2000,
    scapy_send_n: int = 200,
    rps: bool = True,
    repeat: int = 3,
    capacity_rounds: int = 8,
    capacity_packets: int = 30_000,
) -> dict:
    """Every number of the benchmark, from one run on one lab; senders best of `repeat`."""
    res: dict[str, Any] = {
        "policies": policies,
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "repeat": repeat,
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-traffic-") as d,
        Lab(Path(d), "canary", policies, rps) as lab,
    ):
        res["rps"] = lab.rps
        tmp = Path(d)
        seq = [1]  # the next free sequence number of every SA

        def best(key: str, trial) -> None:
            """Run `trial(seq_base)` `repeat` times, keep the fastest; every run's pps too."""
            runs = []
            for k in range(repeat):
                runs.append(trial(seq[0], tmp / f"{key}{k}"))
                seq[0] = runs[-1].get("next_seq", seq[0] + runs[-1]["sent"] // policies + 2)
            res[key] = max(runs, key=lambda r: r["pps"])
            res[key]["trials_pps"] = [round(r["pps"]) for r in runs]

        best("scapy_send", lambda b, t: _scapy_rate(lab, "send", scapy_send_n, b, t))
        best("scapy_l3socket", lambda b, t: _scapy_rate(lab, "l3socket", 20 * scapy_send_n, b, t))
        for link in ("ip", "packet"):
            best(f"fast_{link}", lambda b, t, link=link: _fast_rate(lab, link, seconds, b, t))
        for n in (1, len(os.sched_getaffinity(0))):
            best(f"native_{n}", lambda b, t, n=n: _native_rate(lab, n, seconds, b, t))
        res["native_procs"] = len(os.sched_getaffinity(0))
        res["native_profile"] = _native_rate(lab, 1, seconds, seq[0], tmp / "prof", True)
        seq[0] = res["native_profile"]["next_seq"]
        res["input_live"] = _input_rate(lab, seconds, seq[0], tmp, "live")
        seq[0] += res["input_live"]["sent"] // policies + 2
        res["capacity"] = _capacity(lab, capacity_rounds, capacity_packets, seq[0], tmp)
        seq[0] = res["capacity"]["next_seq"]
        assert lab.nk is not None
        with lab.nk.pfkey(timeout=30) as c:
            c.pipeline(lab.sc.delete_msgs)  # canary: referenced, so DEAD but linked
        res["input_dead"] = _input_rate(lab, seconds, seq[0], tmp, "dead")
    res["bench_esp"] = _bench_esp(policies)
    best = max(res["fast_ip"]["pps"], res["fast_packet"]["pps"])
    res["ratio_vs_send"] = best / res["scapy_send"]["pps"]
    res["ratio_vs_l3socket"] = best / res["scapy_l3socket"]["pps"]
    res["native_vs_fast"] = res[f"native_{res['native_procs']}"]["pps"] / res["fast_packet"]["pps"]
    return res


def markdown(r: dict) -> str:
    f = lambda x: f"{x:,.0f}"  # noqa: E731
    lines = [
        "## ESP traffic generator and netkeyd ESP input",
        "",
        f"One run: {r['policies']} SAs and tunnel policies, AES-GCM-16, 100-byte packets, "
        f"{r['cpus']} CPUs; each sender best of {r['repeat']} trials of {r['seconds']:g} s "
        "(scapy: a fixed packet count); senders pinned to one core, netkeyd to another"
        + ("; the gateway's receive path steered to netkeyd's core (RPS)." if r["rps"] else "."),
        "",
        "| sender | packets | pps (wall) | pps per CPU-second | vs scapy send() "
        "| accepted by netkeyd | all trials (pps) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    send_pps = r["scapy_send"]["pps"]
    rows = [
        ("scapy `send()`", "scapy_send"),
        ("scapy reused `conf.L3socket`", "scapy_l3socket"),
        ("fast path, raw IPv4 socket", "fast_ip"),
        ("fast path, AF_PACKET", "fast_packet"),
        ("native `espgen`, 1 process, sendmmsg", "native_1"),
        (f"native `espgen`, {r['native_procs']} processes (one per core)",
         f"native_{r['native_procs']}"),
    ]  # fmt: skip
    for label, key in rows:
        x = r[key]
        lines.append(
            f"| {label} | {f(x['sent'])} | {f(x['pps'])} | {f(x['cpu_pps'])} "
            f"| {x['pps'] / send_pps:,.0f}x | {f(x['accepted'])} "
            f"| {', '.join(f(p) for p in x['trials_pps'])} |"
        )
    lines += [
        "",
        f"Fast path vs `send()`: **{r['ratio_vs_send']:,.0f}x**; vs a reused L3socket: "
        f"**{r['ratio_vs_l3socket']:,.1f}x**. The fast path encrypts every packet (AES-GCM, "
        "fresh sequence number); scapy sends packets encrypted beforehand. Ratios are of "
        "wall rates; pps per CPU-second is what the sender did per second of its own CPU "
        "time (user + system), so it does not depend on what else the machine runs.",
        "",
        *_native_md(r),
        "| netkeyd ESP input | policies linked (alive/dead) | handled | pps per netkeyd CPU-s "
        "| wall pps | SPD entries walked per packet | lost (rcvbuf) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in (("live policies", "input_live"), ("dead but linked", "input_dead")):
        x = r[key]
        lines.append(
            f"| {label} | {x['alive_in']}/{x['dead_in']} | {f(x['handled'])} "
            f"| {f(x['pps_per_cpu'])} | {f(x['wall_pps'])} | {x['walked_per_packet']:,.1f} "
            f"| {f(x['lost'])} |"
        )
    lines += [
        "",
        "With dead-but-linked entries every packet's flow finds its cached policy DEAD, "
        "looks up again and walks every DEAD entry before it gives up (`no_policy`): "
        "the cost of lingering entries per packet. netkeyd's wall rate is bounded by the one "
        "sender feeding it; pps per netkeyd CPU-second is its capacity on one core.",
        "",
    ]
    return "\n".join(lines + _capacity_md(r))


def _native_md(r: dict) -> list[str]:
    """The native sender against the goal: 1M pps across the cores."""
    n = r["native_procs"]
    one, all_ = r["native_1"], r[f"native_{n}"]
    goal = 1_000_000
    verdict = (
        "**met**"
        if all_["pps"] >= goal
        else (f"**missed** by {goal - all_['pps']:,.0f} pps ({all_['pps'] / goal:.2f}× the goal)")
    )
    per_cpu = all_["cpu_pps"] * n
    return [
        f"Native, {n} processes vs the Python fast path on AF_PACKET: "
        f"**{r['native_vs_fast']:.1f}x** (wall); vs one native process: "
        f"{all_['pps'] / one['pps']:.2f}x. Each process has its own SAs (dealt round "
        "robin), so sequence numbers never cross processes; "
        + (f"netkeyd accepted every packet it read ({all_['accepted']:,}, no replay, ICV or "
           "policy drop)" if all_["accepted"] == all_["handled"] else
           f"netkeyd accepted {all_['accepted']:,} of the {all_['handled']:,} it read and "
           f"dropped {all_['handled'] - all_['accepted']:,} "
           + (f"({all_['dropped']})" if "dropped" in all_ else
              "(this run did not keep the reasons; its trials numbered each SA from the "
              "previous trial's total count, which an uneven split between the processes "
              "can overrun into replays, since fixed; the saturation rounds below number "
              "from the highest used and lose none)"))
        + f"; {all_['lost']:,} of {all_['sent']:,} overflowed its receive buffer"
        + (" (one netkeyd on one core cannot read at this rate)" if all_["lost"] else "")
        + ". scapy decrypted the "
        f"{all_['decrypted']} frames the processes kept of their first and last batches. "
        f"Goal ≥ 1M pps across the cores (wall): {verdict}; at its own CPU rate, "
        f"{all_['cpu_pps']:,.0f} pps per CPU-second, {n} free cores would send "
        f"{per_cpu:,.0f} pps: the wall rate is bounded by the cores it shares with netkeyd, "
        "the gateway's receive path and the machine's other load.",
        "",
        *_sender_profile_md(r["native_profile"]),
    ]  # fmt: skip


def _sender_profile_md(x: dict) -> list[str]:
    """What bounds one espgen process: its perf samples by object and the top symbols."""
    prof = x.get("profile") or {}
    if not prof.get("dso"):
        return ["(perf is not available here: no profile of the sender.)", ""]
    d = prof["dso"]
    shares = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
    top = ", ".join(f"`{n.split()[-1]}` {p:.1f}%" for p, n in prof["top"])
    kern = d.get("kernel", 0.0)
    return [
        f"What bounds one process (`perf record -e cpu-clock` on espgen, "
        f"{x['cpu_pps']:,.0f} pps per CPU-second in that run): {shares}. Top symbols: {top}. "
        "The kernel's share is the transmit path of every frame (sendmmsg copies it into "
        "an skb, the veth hands it to the gateway's receive queue); at that share, "
        f"sending alone allows at most {x['cpu_pps'] / max(kern / 100, 1e-9):,.0f} pps per "
        "CPU-second, whatever the encryption costs.",
        "",
    ]


def _capacity_md(r: dict) -> list[str]:
    c, b = r["capacity"], r["bench_esp"]
    ratio = c["pps_per_cpu"] / b["pps_per_cpu"]
    goal = 1_000_000
    verdict = (
        "**met**"
        if c["pps_per_cpu"] >= goal
        else f"**missed** by {goal - c['pps_per_cpu']:,.0f} pps ({c['pps_per_cpu'] / goal:.2f}× "
        "the goal)"
    )
    return [
        "| netkeyd ESP input, live policies | handled | CPU s | pps per netkeyd CPU-s "
        "| ratio to in-process |",
        "|---|---:|---:|---:|---:|",
        f"| in-process `bench_esp` (baseline) | {b['line'].split('packets=')[1].split()[0]} | — "
        f"| {b['pps_per_cpu']:,.0f} | 1.00× |",
        f"| through the raw socket, at saturation | {c['handled']:,} | {c['cpu_s']:.3f} "
        f"| {c['pps_per_cpu']:,.0f} | **{ratio:.2f}×** |",
        f"| through the raw socket, fed live by one sender | {r['input_live']['handled']:,} "
        f"| {r['input_live']['cpu_s']:.2f} | {r['input_live']['pps_per_cpu']:,.0f} "
        f"| {r['input_live']['pps_per_cpu'] / b['pps_per_cpu']:.2f}× |",
        "",
        f"At saturation: {c['rounds']} rounds of {c['sent'] // c['rounds']:,} packets sent at "
        f"full rate by `espgen` on every core and queued on netkeyd's socket while it is "
        f"stopped (SIGSTOP), then drained: {c['accepted']:,} of {c['sent']:,} accepted, "
        f"scapy decrypted {c['decrypted']} sent frames. CPU is netkeyd's time "
        "on a CPU (`/proc/PID/schedstat`) during the drains, so the kernel's receive path, "
        "which ran while it was stopped, is not in it, and recvmmsg is. `bench_esp` runs "
        f"the same {r['policies']} tunnel policies and flows, AES-GCM-16, 100-byte inner "
        "packets, fed to `esp4_input()` in process (per CPU second of its own). "
        f"Goal ≥ 1M pps per netkeyd CPU-second through the socket: {verdict}.",
        "",
        *_profile_md(c.get("profile", {}), c["pps_per_cpu"]),
    ]


def _profile_md(prof: dict[str, Any], pps: float) -> list[str]:
    """What bounds the drain: netkeyd's perf samples by object, and the top symbols."""
    if not prof:
        return ["(perf is not available here: no profile.)", ""]
    d = prof["dso"]
    kern = d.get("kernel", 0.0)
    crypto = d.get("libcrypto", 0.0) + d.get("libc", 0.0)
    shares = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
    top = ", ".join(f"`{n.split()[-1]}` {p:.1f}%" for p, n in prof["top"])
    return [
        f"What bounds it (`perf record -e cpu-clock` on netkeyd during the drains): {shares}. "
        f"Top symbols: {top}. The kernel's share is recvmmsg's work per datagram "
        "(copying it out, freeing the skb); it alone allows at most "
        f"{pps / max(kern / 100, 1e-9):,.0f} pps per CPU-second at this rate of kernel "
        "work, whatever netkeyd does in user space. With netkeyd's own code free, the "
        "kernel, libcrypto and libc (AES-GCM through EVP) would still allow "
        f"only {pps / max((kern + crypto) / 100, 1e-9):,.0f}: the goal needs less kernel work "
        "per datagram (a receive ring filled in the kernel's receive path, not by "
        "recvmmsg), not a faster netkeyd.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--policies", type=int, default=2000)
    p.add_argument("--scapy-send", type=int, default=200, help="packets for scapy send()")
    p.add_argument("--repeat", type=int, default=3, help="trials per sender, the best is kept")
    p.add_argument("--no-rps", action="store_true", help="leave veth receive on the sender's core")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--out", metavar="FILE", help="write the Markdown section here")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    res = collect(args.seconds, args.policies, args.scapy_send, not args.no_rps, args.repeat)
    return publish(markdown(res), args.out, res, args.json)


if __name__ == "__main__":
    sys.exit(main())
