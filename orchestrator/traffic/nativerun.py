"""NativeRun — a trial's keepalives from espgen processes, with TrafficRun's life cycle.

`spdlab run` takes it instead of TrafficRun where it can carry the scenario
(`cannot_carry`): AES-GCM SAs, espgen built, a local traffic host. The contract is the
Python sender's: start() returns once every process's socket is open, stats() gives a
SendStats (rounds for the settle, per-destination counts, Rates), stop() stops the
processes by PID, saves the last sequence number per SA to the same seq.json, so the
next trial's sender (either kind) continues above it, and checks with scapy a sample of
the frames that were sent.

    run = NativeRun(spec, workdir, netns=ns, pacing=Pacing.keepalive(n, 25, 15), owner=lr)
    run.start(); run.stats(); final = run.stop()
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from orchestrator.errors import ConfigError, InfraError
from orchestrator.proc import ProcessOwner, terminate
from orchestrator.traffic import native
from orchestrator.traffic.native import NativeFlood, NativeStats
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import (
    Pacing,
    SendStats,
    load_seq_state,
    round_robin_per_dst,
    save_seq_state,
)

SAMPLE = 16  # frames each process keeps from its first and from its last batch


def cannot_carry(spec: TrafficSpec, netns: str | None) -> str | None:
    """Why the native sender cannot send `spec` from `netns`; None if it can."""
    other = next((sa for sa in spec.sas if sa.alg.crypt != "AES-GCM"), None)
    if other is not None:
        return f"SPI 0x{other.spi:x} is {other.alg.crypt}: the native sender sends AES-GCM only"
    if netns is None or "/" in netns:
        return "the native sender sends from a named network namespace only"
    try:
        native.gen_binary()
    except ConfigError as e:
        return str(e)
    return None


class NativeRun:
    """NativeRun — espgen processes in the traffic host's namespace, paced.

    Args:
        spec: AES-GCM SAs and their flows.
        workdir: seq.json (shared with TrafficRun), job, stats and log files per process.
        netns: the traffic host's namespace, by name.
        pacing: a rate (keepalive or rate); processes: one per core the rate needs.
        pcap: write the frames kept from the first and the last batches there.
        owner: gives the processes' environment and records their PIDs in state.json.
        asan: run the ASan+UBSan build (tests).
    """

    def __init__(
        self,
        spec: TrafficSpec,
        workdir: Path,
        netns: str,
        pacing: Pacing,
        pcap: Path | None = None,
        report_every: float = 1.0,
        owner: ProcessOwner | None = None,
        asan: bool = False,
    ):
        self.spec, self.workdir, self.netns, self.pacing = spec, Path(workdir), netns, pacing
        self.pcap, self.report_every, self.owner, self.asan = pcap, report_every, owner, asan
        self.seq_path = self.workdir / "seq.json"
        self.flood: NativeFlood | None = None
        self.final: SendStats | None = None

    @property
    def pid(self) -> int | None:
        return self.procs[0].pid if self.procs else None

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return self.flood.procs if self.flood else []

    def start(self, timeout: float = 60.0) -> NativeRun:
        """Spawn the processes; return once each has reported (socket open).

        Raises:
            ConfigError: not AES-GCM, or flows over several interfaces.
            InfraError: a process exited or did not report within `timeout`.
        """
        env = dict(self.owner.spawn_env) if self.owner else None
        self.flood = NativeFlood(
            self.spec, self.workdir, self.netns, procs=native.procs_for(self.pacing.rate),
            seq_start=load_seq_state(self.seq_path), sample=SAMPLE, rate=self.pacing.rate,
            report_every=self.report_every, env=env, asan=self.asan,
        )  # fmt: skip
        self.flood.start()
        for k, p in enumerate(self.flood.procs):
            if self.owner is not None:
                self.owner.record_process(p.pid, str(self.workdir / f"job{k}.bin"), "traffic")
        deadline = time.monotonic() + timeout
        while self.flood.reports() is None:
            if not self.running():
                self._halt()
                raise InfraError(f"espgen exited: {self._log_tails()}", self.netns,
                                 "traffic start")  # fmt: skip
            if time.monotonic() > deadline:
                self._halt()
                raise InfraError("espgen did not start in time", self.netns, "traffic start")
            time.sleep(0.02)
        return self

    def _merged(self) -> NativeStats | None:
        reports = self.flood.reports() if self.flood else None
        return None if reports is None else self.flood.merge(reports)  # type: ignore[union-attr]

    def stats(self) -> SendStats | None:
        """The latest reports as one SendStats (None before every process has reported)."""
        st = self._merged()
        return None if st is None else self._send_stats(st)

    def _send_stats(self, st: NativeStats) -> SendStats:
        assert self.flood is not None
        per_dst: dict[str, int] = {}
        for part, r in zip(self.flood.parts, st.per_proc, strict=True):
            dsts = [f.sa.dst for f in part.flows]  # the outer destination, as Sender's
            for dst, n in round_robin_per_dst(dsts, r["sent"] + r["errors"]).items():
                per_dst[dst] = per_dst.get(dst, 0) + n
        return SendStats(
            self.pacing.mode, self.flood.flows, len(self.spec.sas), sent=st.sent,
            errors=st.errors, bytes=st.bytes, elapsed=st.elapsed, cpu_s=st.cpu_s,
            target_pps=self.pacing.rate, exhausted=st.exhausted, rounds=st.rounds, at=st.at,
            state=st.state, per_dst=per_dst, sender="native", procs=st.procs,
        )  # fmt: skip

    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def _halt(self, timeout: float = 10.0) -> None:
        for p in self.procs:
            terminate(p, timeout)

    def _log_tails(self) -> str:
        assert self.flood is not None
        return "; ".join(f"{k}: {self.flood.log_tail(k, 400)}"
                         for k in range(len(self.flood.procs)))  # fmt: skip

    def wait(self, timeout: float | None = None) -> SendStats:
        """Wait for processes with a count or a duration; their final stats."""
        assert self.flood is not None
        end = None if timeout is None else time.monotonic() + timeout
        while any(p.poll() is None for p in self.flood.procs):
            if end is not None and time.monotonic() > end:
                raise InfraError("espgen still running", self.netns, "traffic wait")
            time.sleep(0.05)
        return self._final()

    def stop(self, timeout: float = 10.0) -> SendStats:
        """SIGTERM every process (by PID), wait, save seq.json, check the sample.

        Raises:
            InfraError: a process failed, or scapy cannot decrypt a frame it sent.
        """
        if self.flood is None:
            raise InfraError("espgen was never started", self.netns, "traffic stop")
        self._halt(timeout)
        return self._final()

    def _final(self) -> SendStats:
        assert self.flood is not None
        st = self._merged()
        if st is not None:  # a process that died leaves its leased numbers: still above
            save_seq_state(self.seq_path, {**load_seq_state(self.seq_path), **st.last_seq})
        self.flood.check_exits()
        if st is None or st.state != "done":
            raise InfraError(f"espgen stopped without its final report: {self._log_tails()}",
                             self.netns, "traffic")  # fmt: skip
        try:
            self.flood.check_samples(st)
        except ConfigError as e:
            raise InfraError(f"native sender: {e}", self.netns, "traffic") from None
        if self.pcap is not None:
            from orchestrator.traffic.run import write_pcap

            write_pcap(str(self.pcap), self.flood.samples())
        self.final = self._send_stats(st)
        return self.final
