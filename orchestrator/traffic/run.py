"""A traffic job, run in-process (`execute`) or as a subprocess in a namespace (`TrafficRun`).

`spdlab run` starts keepalive traffic for a target with:

    run = TrafficRun(spec, workdir, netns="spdlab-ab12-traffic",
                     pacing=Pacing.keepalive(len(spec.flows), keepalive_ticks, tick_ms))
    run.start()          # returns once the sender's socket is open and packets flow
    run.stats()          # SendStats so far (refreshed about once a second)
    final = run.stop()   # SIGTERM, wait, final SendStats

Sequence numbers continue across TrafficRuns that share `workdir` (a state file).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from orchestrator.errors import ConfigError, InfraError
from orchestrator.proc import ProcessOwner, terminate
from orchestrator.traffic import fastpath, template
from orchestrator.traffic.link import open_link
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import (
    Pacing,
    Sender,
    SendStats,
    load_seq_state,
    save_seq_state,
    write_json,
)


@dataclass
class TrafficJob:
    """Everything one sender needs, as a JSON-able record.

    Attributes:
        spec: the SAs and flows.
        pacing: rate, duration, count or keepalive.
        netns: the namespace to send from (name or path); None = the current one.
        link: "ip" (raw IPv4 socket) or "packet" (AF_PACKET).
        seq_state: file keeping the last sequence number per SA, read at start, written
            at the end; None = start at seq_base.
        seq_base: first sequence number of an SA the state file does not know.
        stats_path: where running and final stats go (rewritten atomically).
        pcap: write the first pcap_count packets there.
        check: how many templates to cross-check against scapy before sending.
    """

    spec: TrafficSpec
    pacing: Pacing = field(default_factory=Pacing)
    netns: str | None = None
    link: str = "ip"
    seq_state: str | None = None
    seq_base: int = 1
    stats_path: str | None = None
    pcap: str | None = None
    pcap_count: int = 32
    check: int = 4
    report_every: float = 1.0

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["spec"] = self.spec.to_json()
        d["pacing"] = self.pacing.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrafficJob:
        d = dict(d)
        d["spec"] = TrafficSpec.from_json(d["spec"])
        d["pacing"] = Pacing(**d["pacing"])
        return cls(**d)


def write_pcap(path: str, packets: list[bytes]) -> None:
    from scapy.layers.inet import IP
    from scapy.utils import wrpcap

    wrpcap(path, [IP(p) for p in packets])


def execute(job: TrafficJob, stop: threading.Event | None = None) -> SendStats:
    """Build templates, check a sample against scapy, open the link in the namespace, send.

    The calling thread stays in its namespace; only the link's sockets live in job.netns.

    Raises:
        ConfigError: a bad spec, or the fast path disagreeing with scapy.
        InfraError: the namespace or the socket cannot be opened.
    """
    templates = template.build_all(job.spec.flows)
    fastpath.check_sample(templates, job.check)
    state_path = Path(job.seq_state) if job.seq_state else None
    start = load_seq_state(state_path) if state_path else {}
    link = open_link(job.link, job.netns)
    try:
        sender = Sender(templates, link, seq_start=start, seq_base=job.seq_base)
        pcap_done = [job.pcap is None or job.pcap_count <= 0]
        stats_path = Path(job.stats_path) if job.stats_path else None

        def report(stats: SendStats) -> None:
            if stats_path is not None:
                write_json(stats_path, stats.to_json())
            if not pcap_done[0] and len(sender.recorded) >= job.pcap_count:
                write_pcap(job.pcap, sender.recorded)  # type: ignore[arg-type]
                pcap_done[0] = True
            if state_path is not None:  # a lease on the next two reports' numbers
                rate = max(stats.rate_pps, job.pacing.rate or 0.0)
                save_seq_state(state_path, sender.seq_state(3 * job.report_every, rate))

        report(
            SendStats(
                job.pacing.mode, len(templates), len(sender.sa_keys), target_pps=job.pacing.rate
            )
        )
        record = job.pcap_count if job.pcap else 0
        try:
            stats = sender.run(job.pacing, stop, report, job.report_every, record=record)
        finally:
            if state_path is not None:
                save_seq_state(state_path, sender.seq_state())
        if not pcap_done[0] and sender.recorded:
            write_pcap(job.pcap, sender.recorded)  # type: ignore[arg-type]
        return stats
    finally:
        link.close()


class TrafficRun:
    """TrafficRun — one sender subprocess in the traffic host's namespace.

    Life cycle:
      - start(): write job.json to `workdir`, spawn `python -m orchestrator.traffic`, wait
        until it reports (socket open, templates checked);
      - stats(): the running SendStats (None before the first report);
      - stop(): SIGTERM by PID, wait, the final SendStats (also in workdir/stats.json).

    Args:
        spec: SAs and flows.
        workdir: job.json, stats.json, seq.json, sender.log.
        netns: the traffic host's namespace (name or /proc/PID/ns/net).
        pacing: e.g. Pacing.keepalive(len(spec.flows), keepalive_ticks, tick_ms).
        link, seq_base, pcap, pcap_count, check: as in TrafficJob.
        owner: the run the sender belongs to: it gives the sender's environment and
            records its PID (`down` stops it, after a crash of spdlab too).
    """

    def __init__(
        self,
        spec: TrafficSpec,
        workdir: Path,
        netns: str | None = None,
        pacing: Pacing | None = None,
        link: str = "ip",
        seq_base: int = 1,
        pcap: Path | None = None,
        pcap_count: int = 32,
        check: int = 4,
        report_every: float = 1.0,
        owner: ProcessOwner | None = None,
    ):
        self.workdir = Path(workdir)
        self.owner = owner
        self.stats_path = self.workdir / "stats.json"
        self.job = TrafficJob(
            spec,
            pacing or Pacing(),
            netns,
            link,
            str(self.workdir / "seq.json"),
            seq_base,
            str(self.stats_path),
            str(pcap) if pcap else None,
            pcap_count,
            check,
            report_every,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.final: SendStats | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [self.proc] if self.proc else []

    def start(self, timeout: float = 60.0) -> TrafficRun:
        """Spawn the sender; return once it has reported.

        Raises:
            InfraError: the sender exited or did not report within `timeout`.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stats_path.unlink(missing_ok=True)
        env = dict(self.owner.spawn_env if self.owner else os.environ)
        with open(self.workdir / "sender.log", "wb") as log:
            self.proc, match = self._spawn(env, log)
        if self.owner is not None:
            self.owner.record_process(self.proc.pid, match, "traffic")
        deadline = time.monotonic() + timeout
        while not self.stats_path.exists():
            if self.proc.poll() is not None:
                raise InfraError(
                    f"sender exited with {self.proc.returncode}: {self._log_tail()}",
                    self.job.netns,
                    "traffic start",
                )
            if time.monotonic() > deadline:
                self.stop()
                raise InfraError("sender did not start in time", self.job.netns, "traffic start")
            time.sleep(0.02)
        return self

    def _spawn(self, env: dict[str, str], log: BinaryIO) -> tuple[subprocess.Popen, str]:
        """The sender process, and a string its command line holds."""
        job_path = self.workdir / "job.json"
        fd = os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # keys inside
        with os.fdopen(fd, "w") as f:
            json.dump(self.job.to_json(), f)
        root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
        argv = [sys.executable, "-m", "orchestrator.traffic", str(job_path)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        return proc, str(job_path)

    def _halt(self, timeout: float) -> None:
        assert self.proc is not None
        terminate(self.proc, timeout)

    def stats(self) -> SendStats | None:
        """The latest report (running, or final once the sender has exited)."""
        try:
            return SendStats.from_json(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> SendStats:
        """Wait for a sender with a duration or count to finish; its final stats.

        Raises:
            InfraError: it failed, or did not finish within timeout.
        """
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise InfraError("sender still running", self.job.netns, "traffic wait") from None
        return self._final()

    def stop(self, timeout: float = 10.0) -> SendStats:
        """SIGTERM the sender (by PID), wait for it, return its final stats.

        Raises:
            InfraError: the sender failed (its log tail is in the message).
        """
        if self.proc is None:
            raise InfraError("sender was never started", self.job.netns, "traffic stop")
        self._halt(timeout)
        return self._final()

    def _final(self) -> SendStats:
        assert self.proc is not None
        stats = self.stats()
        if self.proc.returncode != 0 or stats is None or stats.state != "done":
            raise InfraError(
                f"sender exited with {self.proc.returncode}: {self._log_tail()}",
                self.job.netns,
                "traffic",
            )
        self.final = stats
        return stats

    def _log_tail(self, n: int = 1500) -> str:
        try:
            return (self.workdir / "sender.log").read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def __enter__(self) -> TrafficRun:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running():
            try:
                self.stop()
            except InfraError:
                if exc is None:
                    raise


class RemoteTrafficRun(TrafficRun):
    """RemoteTrafficRun — the sender on a lab host (orchestrator.traffic.remote), over ssh.

    The job goes on the ssh's stdin; each stats line that comes back is written to
    workdir/stats.json here, so stats() and stop() read it as for a local sender. stop()
    closes stdin: the sender stops, prints its final stats and exits, and so does ssh.

    Args:
        lab_host: the targets.labhost.LabHost to send from.
        The rest: as TrafficRun (no pcap: the sample comes from this machine's sender).
    """

    def __init__(self, spec: TrafficSpec, workdir: Path, lab_host: Any, **kw: Any):
        super().__init__(spec, workdir, **kw)
        self.lab_host = lab_host
        self.remote_dir = f"{lab_host.dir}/traffic"
        self.reader: threading.Thread | None = None

    def _spawn(self, env: dict[str, str], log: BinaryIO) -> tuple[subprocess.Popen, str]:
        argv = self.lab_host.sender_argv(self.remote_dir)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, env=env)  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.reader.start()
        try:
            proc.stdin.write(json.dumps(self.job.to_json()).encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            pass  # ssh is gone already: start() reports its exit and log
        return proc, self.remote_dir

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            try:
                doc = json.loads(line)["stats"]
                doc["at"] = time.time()  # this machine's clock, which the settle compares
            except (ValueError, KeyError, TypeError):
                continue
            write_json(self.stats_path, doc)

    def _halt(self, timeout: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            terminate(self.proc, 2.0)
        if self.reader is not None:
            self.reader.join(timeout)


def targets_report(stats: SendStats, targets: dict[str, str]) -> dict:
    """runs/<id>/traffic.json: {"targets": {name: {"sent", "rate_pps"}}, "sender": {...}}.

    Args:
        stats: a sender's stats (one sender may serve many gateways: TrafficSpec.merge).
        targets: target name -> its gateway (outer destination) address.
    """
    per = {}
    for name, addr in sorted(targets.items()):
        sent = stats.per_dst.get(addr, 0)
        rate = sent / stats.elapsed if stats.elapsed > 0 else 0.0
        per[name] = {"sent": sent, "rate_pps": round(rate, 1)}
    return {"targets": per, "sender": stats.to_json()}


def load_job(path: Path) -> TrafficJob:
    """A job file written by TrafficRun.

    Raises:
        ConfigError: unreadable or malformed.
    """
    try:
        return TrafficJob.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a traffic job: {e}") from e
