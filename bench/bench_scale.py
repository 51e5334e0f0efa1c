"""Scale: a mass delete of 100k policies under ESP traffic on one netkeyd, and its memory.

One gateway namespace runs netkeyd (`netkey`, --esp, 100 ms ticks); a traffic namespace
floods ESP, round robin, over the SAs of the first H policies of the table. Then:

1. N SAs and N tunnel policies go in through bench/pfkey_send.c;
2. traffic runs until the H policies are held by their flows;
3. one SPDFLUSH;
4. traffic goes on until every deleted policy is freed (each flow lets go of its
   policy on its next packet).

A flow's first packet walks the table to its policy, first match in insertion order as
the model requires, and every tick invalidates every flow's cache (KAME's
key_timehandler), so a flow whose policy sits d entries deep walks d entries again on
its first packet after each tick: H flows deep in a 100k table would cost H × 50k entry
visits per tick.  The held policies are therefore the first H.

Memory is netkeyd's resident set (VmRSS) after each step, divided by N; the drain is
read from netkeyd's tick ring.

    python bench/bench_scale.py [--policies N] [--held H] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_install import _send, _sender  # noqa: E402
from bench_traffic import GW, TR, Lab, _pin  # noqa: E402
from benchlib import publish  # noqa: E402

from orchestrator.netkeyd import Netkeyd  # noqa: E402
from orchestrator.pfkey import messages  # noqa: E402
from orchestrator.traffic import scenario  # noqa: E402
from orchestrator.traffic.run import TrafficRun  # noqa: E402
from orchestrator.traffic.sa import TrafficSpec  # noqa: E402
from orchestrator.traffic.sender import Pacing  # noqa: E402
from orchestrator.wait import until  # noqa: E402

TICK_MS = 100


class ScaleLab(Lab):
    """bench_traffic's lab on a fresh netkeyd with a running clock; pfkey_send fills it."""

    def __enter__(self) -> ScaleLab:
        super().__enter__()
        # Lab started netkeyd with tick_ms 0; this run needs a running clock.
        assert self.nk is not None
        self.nk.stop()
        self.nk = Netkeyd(
            self.build, self.workdir / "netkeyd-scale", tick_ms=TICK_MS,
            flow_idle_ticks=1_000_000, netns=self.gw, extra=("--esp", GW),
        ).start()  # fmt: skip
        _pin(self.nk.pid, 1)
        return self


def rss(pid: int) -> int:
    """netkeyd's resident set in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def install(lab: ScaleLab, n: int, tmp: Path) -> dict[str, Any]:
    assert lab.nk is not None
    sc = scenario.generate(n, TR, GW)
    lab.sc = sc
    mem: dict[str, Any] = {"start": rss(lab.nk.pid)}
    with lab.nk.pfkey(timeout=120) as c:
        for name, msgs in (("sas", sc.sa_msgs), ("policies", sc.policy_msgs)):
            batch = tmp / f"{name}.bin"
            batch.write_bytes(b"".join(c.prepare(msgs)))
            t = _send(lab.nk.control, batch, n)
            mem[name] = rss(lab.nk.pid)
            mem[f"{name}_s"] = t
    return mem


def ticks_since(nk: Netkeyd, since: int) -> list[dict]:
    return nk.admin.request(f"ticks {since}")["ticks"]


def held_spec(sc: scenario.Scenario, held: int) -> TrafficSpec:
    """The flows of the first `held` policies of the table, with their SAs."""
    flows = sc.flows[:held]
    return TrafficSpec([f.sa for f in flows], flows)


def run(n: int, held: int) -> dict[str, Any]:
    _sender()
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as d,
        ScaleLab(Path(d), "netkey", 1) as lab,
    ):
        tmp = Path(d)
        assert lab.nk is not None
        nk = lab.nk
        nk.admin.timeout = 120  # a burst of first packets walks the table for long
        res: dict[str, Any] = {"policies": n, "held": held, "mem": install(lab, n, tmp)}
        spd = nk.admin.stats()["spd"]
        assert spd["alive"]["in"] == n, spd
        t0 = time.monotonic()
        spec = held_spec(lab.sc, held)
        traffic = TrafficRun(spec, tmp / "traffic", lab.tr, Pacing("flood"),
                             link="packet", check=4).start(timeout=600)  # fmt: skip
        _pin(traffic.pid, 0)  # type: ignore[arg-type]
        try:
            until(lambda: nk.admin.stats()["flows"]["open"] >= held,
                  f"{held} flows hold their policies", timeout=1800)  # fmt: skip
            res["held_s"] = time.monotonic() - t0
            res["mem"]["flows"] = rss(nk.pid)
            last = nk.admin.stats()["ticks"]
            with nk.pfkey(timeout=120) as c:
                t1 = time.monotonic()
                c.request(messages.spdflush())
                res["flush_s"] = time.monotonic() - t1
            after = nk.admin.stats()
            res["linked_after_flush"] = sum(after["spd"]["alive"].values()) + sum(
                after["spd"]["dead"].values()
            )
            until(lambda: nk.admin.stats()["spd"]["allocated"] == 0,
                  "every deleted policy freed", timeout=1800)  # fmt: skip
            res["free_s"] = time.monotonic() - t1
            recs = ticks_since(nk, last)
            res["free_ticks"] = next(
                (i + 1 for i, r in enumerate(recs) if r["allocated"] == 0), len(recs)
            )
            res["premature"] = sum(r["premature"] for r in recs)
            res["uaf"] = sum(r["uaf"] for r in recs)
            res["mem"]["freed"] = rss(nk.pid)
        finally:
            stats = traffic.stop()
        esp = nk.admin.stats()["esp"]
        res["sent"], res["esp_ok"] = stats.sent, esp["ok"]
        res["esp_drop"] = {k: v for k, v in esp["drop"].items() if v}
    return res


def markdown(r: dict[str, Any]) -> str:
    n, m = r["policies"], r["mem"]
    per = lambda a, b: f"{(m[b] - m[a]) / n:,.0f}"  # noqa: E731
    mib = lambda k: f"{m[k] / 2**20:,.1f}"  # noqa: E731
    return "\n".join(
        [
            "## Scale: a 100k-policy mass delete under traffic",
            "",
            f"`python bench/bench_scale.py --policies {n} --held {r['held']}`: "
            "one netkeyd (`netkey`, "
            f"{TICK_MS} ms ticks) in a namespace, {n:,} SAs and tunnel policies "
            f"(AES-GCM-16); ESP flooded round robin from a second namespace over the flows "
            f"of the first {r['held']:,} policies of the table. Every tick invalidates every "
            "flow's cached policy (KAME's timer), and a flow's next packet then walks the "
            "table to its policy, first match in insertion order: held policies deep in a "
            "100k table would cost a 50k-entry walk per flow per tick, so they are the "
            "first ones.",
            "",
            "| step | netkeyd RSS (MiB) | bytes per policy | took (s) |",
            "|---|---:|---:|---:|",
            f"| started | {mib('start')} | — | — |",
            f"| {n:,} SAs added | {mib('sas')} | {per('start', 'sas')} (per SA) "
            f"| {m['sas_s']:.1f} |",
            f"| {n:,} policies added | {mib('policies')} | {per('sas', 'policies')} "
            f"| {m['policies_s']:.1f} |",
            f"| {r['held']:,} policies held by flows | {mib('flows')} | — | {r['held_s']:.1f} |",
            f"| SPDFLUSH, then every policy freed | {mib('freed')} | — | {r['free_s']:.1f} |",
            "",
            f"- The SPDFLUSH of {n:,} returned in {r['flush_s'] * 1000:.0f} ms and left "
            f"{r['linked_after_flush']} policies linked; the unreferenced ones were freed in "
            "it, and the last held one was freed "
            f"{r['free_ticks']} tick{'' if r['free_ticks'] == 1 else 's'} later, when its "
            "flow's next packet let it go "
            f"(premature frees {r['premature']}, use after free {r['uaf']}): **completed**.",
            f"- Traffic: {r['sent']:,} packets sent, {r['esp_ok']:,} accepted"
            + (f", dropped {r['esp_drop']}" if r["esp_drop"] else "")
            + " (after the flush a packet finds no policy: `no_policy`).",
            "- RSS after the frees stays near its peak: freed policies go back to malloc, "
            "not to the system.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", type=int, default=100_000)
    p.add_argument("--held", type=int, default=2000, help="policies held by traffic flows")
    p.add_argument("--out", metavar="FILE")
    a = p.parse_args(argv)
    return publish(markdown(run(a.policies, a.held)), a.out)


if __name__ == "__main__":
    sys.exit(main())
