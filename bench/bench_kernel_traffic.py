"""Kernel traffic benchmark: ESP into one guest, and the scrape cost of a kernel target.

One lab, two targets on the same switch: a netkeyd gateway (netns, build netkey) and
Debian's kernel in QEMU (linux-af_key, x86_64, TCG), each with --policies inbound
tunnel policies and their SAs (AES-CBC + HMAC-SHA2-512-256).

- ESP rate: the traffic host floods both for --seconds, one sender. Accepted per second:
  netkeyd's `esp.ok`; the guest's, its SAs' packet counts (SADB_DUMP). The ratio is
  guest / netkeyd, measured in the same seconds of the same sender.
- Scrape: --scrapes `stats` answers from each target's admin socket: netkeyd answers
  from its counters; the kernel target's bridge dumps the SPD and the SAs and reads the
  guest kernel's counters (pfkey_relay STAT) for each. Medians; the ratio is kernel /
  netkeyd.

    python bench/bench_kernel_traffic.py [--policies 200] [--seconds 10] [--scrapes 10]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import publish  # noqa: E402

from orchestrator.lab import load_lab  # noqa: E402
from orchestrator.pfkey import messages  # noqa: E402
from orchestrator.pfkey.codec import Msg  # noqa: E402
from orchestrator.pfkey.wire import ExtType, MsgType, SaType  # noqa: E402
from orchestrator.targets.session import LabRun  # noqa: E402
from orchestrator.traffic import scenario as traffic_scenario  # noqa: E402
from orchestrator.traffic.run import TrafficRun  # noqa: E402
from orchestrator.traffic.sa import TrafficSpec  # noqa: E402
from orchestrator.traffic.sender import Pacing  # noqa: E402

ALG = "aes-cbc-hmac-sha512"
LAB = """\
name: ktbench
range: 10.86.0.0/24
targets:
  - {name: nk, kind: netns, build: netkey}
  - {name: vm, kind: qemu, build: linux-af_key, arch: x86_64}
scenario: {policies: 1, traffic: none, algorithm: aes-cbc-hmac-sha512}
"""


def install(lr: LabRun, name: str, n: int, spi_base: int) -> traffic_scenario.Scenario:
    t = lr.lab.target(name)
    sc = traffic_scenario.generate(n, str(lr.lab.traffic_host.address), str(t.address),
                                   alg=ALG, spi_base=spi_base)  # fmt: skip
    with lr.pfkey_endpoint(name).connect(timeout=120.0) as c:
        c.request(messages.flush_sa())
        c.request(messages.spdflush())
        assert all(r.errno == 0 for r in c.pipeline(sc.sa_msgs))
        assert all(r.errno == 0 for r in c.pipeline(sc.policy_msgs))
    return sc


def accepted(lr: LabRun, name: str) -> int:
    if name == "nk":
        return int(lr.stats_endpoint(name).request("stats")["esp"]["ok"])
    with lr.pfkey_endpoint(name).connect(timeout=120.0) as c:
        sas = c.dump(Msg(MsgType.DUMP, satype=SaType.ESP))
    return sum(getattr(m.get(ExtType.LIFETIME_CURRENT), "allocations", 0) for m in sas)


def scrape_s(lr: LabRun, name: str, rounds: int) -> float:
    ep = lr.stats_endpoint(name)
    took = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ep.request("stats")
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--scrapes", type=int, default=10)
    p.add_argument("--out", metavar="FILE")
    a = p.parse_args(argv)
    runs = Path(tempfile.mkdtemp(prefix="spdb", dir="/tmp"))
    lab = runs / "lab.yaml"
    lab.write_text(LAB)
    lr = LabRun.up(load_lab(lab), base=runs)
    try:
        scs = {n: install(lr, n, a.policies, 0x10000 + i * 0x100000)
               for i, n in enumerate(("nk", "vm"))}  # fmt: skip
        scrape = {n: scrape_s(lr, n, a.scrapes) for n in scs}
        before = {n: accepted(lr, n) for n in scs}
        spec = TrafficSpec.merge([sc.spec for sc in scs.values()])
        th = lr.traffic_host("nk")
        sender = TrafficRun(spec, runs / "traffic", netns=th.netns, owner=lr,
                            pacing=Pacing("duration", duration=a.seconds)).start()  # fmt: skip
        while sender.running():
            time.sleep(0.2)
        sent = sender.stop()
        got = {n: accepted(lr, n) - before[n] for n in scs}
    finally:
        lr.down()
    per_target = sent.sent / 2
    rate = {n: got[n] / a.seconds for n in scs}
    text = "\n".join(
        [
            "## Real kernels under ESP: rate into one guest, and scrape cost",
            "",
            f"One sender floods a netkeyd gateway (netns, `netkey`) and Debian's kernel in QEMU "
            f"(TCG, x86_64), {a.policies} inbound tunnel policies each, {ALG}, for "
            f"{a.seconds:.0f} s: {sent.sent} packets, about {per_target:.0f} to each.",
            "",
            "| | netkeyd (baseline) | kernel in QEMU | ratio |",
            "|---|---:|---:|---:|",
            f"| ESP accepted per second | {rate['nk']:.0f} | {rate['vm']:.0f} | "
            f"{rate['vm'] / max(rate['nk'], 1e-9):.2f}× |",
            f"| accepted of those sent to it | {got['nk'] / per_target:.2f} | "
            f"{got['vm'] / per_target:.2f} | |",
            f"| `stats` scrape, median of {a.scrapes} (ms) | {scrape['nk'] * 1e3:.2f} | "
            f"{scrape['vm'] * 1e3:.2f} | {scrape['vm'] / scrape['nk']:.0f}× |",
            "",
            "The kernel target's scrape is an SPDDUMP and an SADB_DUMP through the relay, and "
            "a STAT of the guest's counters: it grows with the policies, netkeyd's does not.",
        ]
    )
    return publish(text, a.out)


if __name__ == "__main__":
    sys.exit(main())
