"""SteppedTraffic — keepalive rounds sent when spdlab says, for deterministic runs.

In-process: each target's flows get their own Sender on one link in the traffic host's
namespace, and `round(name)` sends every flow of that target exactly once, in flow order.
Sequence numbers continue across trials through the same state file as TrafficRun's.

    traffic = SteppedTraffic({"gw-a": spec_a, "gw-b": spec_b}, workdir, netns=ns).start()
    traffic.round("gw-a")   # one packet per flow of gw-a; returns how many
    final = traffic.stop()  # SendStats over every round
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.traffic import fastpath, template
from orchestrator.traffic.link import Link, open_link
from orchestrator.traffic.run import write_pcap
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import Pacing, Sender, SendStats, load_seq_state, save_seq_state

MODE = "lockstep"
CHUNK = 64  # packets a round sends before it awaits the gateway's reading of them


class SteppedTraffic:
    """One sender per target, a round at a time.

    Args:
        specs: each target's SAs and flows, by target name.
        workdir: seq.json (the last sequence number per SA) lives here.
        netns: the traffic host's namespace (name or /proc/PID/ns/net).
        pcap: write the first pcap_count packets there.
        link, check: as in TrafficJob.
    """

    def __init__(self, specs: dict[str, TrafficSpec], workdir: Path, netns: str | None = None,
                 pcap: Path | None = None, pcap_count: int = 32, link: str = "ip",
                 check: int = 4):  # fmt: skip
        self.specs = specs
        self.seq_path = Path(workdir) / "seq.json"
        self.netns, self.pcap, self.pcap_count = netns, pcap, pcap_count
        self.link_kind, self.check = link, check
        self.link: Link | None = None
        self.senders: dict[str, Sender] = {}
        self.recorded: list[bytes] = []
        flows = sum(len(s.flows) for s in specs.values())
        sas = sum(len(s.sas) for s in specs.values())
        self.total = SendStats(MODE, flows, sas)
        self.t0 = 0.0

    def start(self) -> SteppedTraffic:
        """Build and check every template, open the link."""
        self.seq_path.parent.mkdir(parents=True, exist_ok=True)
        seq = load_seq_state(self.seq_path)
        built = {name: template.build_all(s.flows) for name, s in self.specs.items()}
        for templates in built.values():
            fastpath.check_sample(templates, self.check)
        self.link = open_link(self.link_kind, self.netns)
        self.senders = {name: Sender(t, self.link, seq_start=seq) for name, t in built.items()}
        self.t0 = time.monotonic()
        return self

    def round(self, name: str, settle: Callable[[int], None] | None = None,
              chunk: int = CHUNK) -> int:  # fmt: skip
        """Every flow of target `name` once, in order; returns the packets sent.

        With `settle`, the round goes out `chunk` packets at a time and settle(n) is called
        after each with the round's packets so far: it returns once the gateway has read
        them, so no burst outgrows the veth backlog or the socket's send queue on a loaded
        host (a lost packet would make the run depend on the machine).
        """
        s = self.senders[name]
        total, done = len(s.templates), 0
        while done < total:
            n = total - done if settle is None else min(chunk, total - done)
            want = self.pcap_count - len(self.recorded) if self.pcap else 0
            st = s.run(Pacing("keepalive", count=n), record=max(want, 0))
            self.recorded += s.recorded
            s.recorded = []
            self._add(st)
            done += st.sent + st.errors
            if settle is not None:
                settle(done)
            if st.sent + st.errors < n:
                break  # an SA ran out of sequence numbers
        self.total.rounds += 1
        return done

    def _add(self, st: SendStats) -> None:
        t = self.total
        t.sent, t.errors, t.bytes = t.sent + st.sent, t.errors + st.errors, t.bytes + st.bytes
        t.cpu_s += st.cpu_s
        for dst, n in st.per_dst.items():
            t.per_dst[dst] = t.per_dst.get(dst, 0) + n
        t.elapsed, t.at = time.monotonic() - self.t0, time.time()

    def stats(self) -> SendStats:
        return self.total

    def running(self) -> bool:
        return self.link is not None

    def stop(self) -> SendStats:
        """Save the sequence numbers, write the pcap, close the link; the totals."""
        if self.link is None:
            return self.total
        seq = load_seq_state(self.seq_path)
        for s in self.senders.values():
            seq |= s.seq_state()
        save_seq_state(self.seq_path, seq)
        if self.pcap and self.recorded:
            write_pcap(str(self.pcap), self.recorded[: self.pcap_count])
        self.link.close()
        self.link = None
        self.total.state = "done"
        return self.total
