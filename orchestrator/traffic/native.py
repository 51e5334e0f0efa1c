"""The native sender: AES-GCM ESP floods from `espgen`, one process per core.

Each process gets its own SAs (dealt round-robin by SA, every flow goes with its SA), so
it owns their sequence numbers: processes never share an SA, and a gateway's replay
window sees each SA's numbers in order. A process encrypts each packet with libcrypto
and sends 64 frames per sendmmsg() on AF_PACKET, where the Python sender makes a cipher
call and a system call per packet.

    flood = NativeFlood(spec, workdir, netns="spdlab-ab12-traffic", count=100_000)
    stats = flood.start().wait(60)    # NativeStats: sent, rates, last_seq per SA
    flood.check_samples(stats)        # scapy decrypts what the processes sent

Templates come from scapy (`template.build_all`) and are cross-checked against it
(`fastpath.check_sample`) before anything is sent; `check_samples` then decrypts frames
the processes actually sent (the first and the last of each) with scapy.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError, InfraError
from orchestrator.proc import terminate
from orchestrator.traffic import fastpath, template
from orchestrator.traffic.link import PacketLink, open_link
from orchestrator.traffic.sa import SaSpec, TrafficSpec
from orchestrator.traffic.sender import Rates
from orchestrator.traffic.template import Template

ROOT = Path(__file__).resolve().parents[2]
MAGIC = b"ESPGEN1\n"
SALT = 4
# What one process is planned to carry when paced: a seventh of what one core does
# (~350k pps per CPU-second), because the cores are shared with the gateways.
PROC_PPS = 50_000


def procs_for(rate: float | None) -> int:
    """Processes for `rate` pps: one per PROC_PPS, at most one per CPU; None = every CPU."""
    cpus = len(os.sched_getaffinity(0))
    return cpus if rate is None else max(1, min(cpus, math.ceil(rate / PROC_PPS)))


def gen_binary(asan: bool = False) -> Path:
    """firmware/build/gen/espgen (or -asan), or a ConfigError saying how to build it."""
    path = ROOT / "firmware" / "build" / "gen" / ("espgen-asan" if asan else "espgen")
    if not path.exists():
        raise ConfigError(f"{path} is not built: run make -C firmware gen")
    return path


def split(spec: TrafficSpec, n: int) -> list[TrafficSpec]:
    """`spec` in at most `n` parts with disjoint SAs; each flow in its SA's part."""
    if n < 1:
        raise ConfigError(f"processes must be >= 1, got {n}")
    n = min(n, len(spec.sas))
    part_of = {sa.key: i % n for i, sa in enumerate(spec.sas)}
    parts = [TrafficSpec() for _ in range(n)]
    for sa in spec.sas:
        parts[part_of[sa.key]].sas.append(sa)
    for flow in spec.flows:
        if flow.sa.key not in part_of:
            raise ConfigError(f"flow {flow.src}->{flow.dst}: no SA {flow.sa.key}")
        parts[part_of[flow.sa.key]].flows.append(flow)
    return [p for p in parts if p.flows]


def job_bytes(sas: list[SaSpec], framed: list[Template], last: dict[str, int]) -> bytes:
    """The job file of one process: its SAs with their last sequence numbers, its flows.

    Raises:
        ConfigError: an SA that is not AES-GCM (espgen encrypts nothing else).
    """
    index = {sa.key: i for i, sa in enumerate(sas)}
    out = [MAGIC, struct.pack("!II", len(sas), len(framed))]
    for sa in sas:
        if sa.alg.crypt != "AES-GCM":
            raise ConfigError(f"SPI 0x{sa.spi:x}: the native sender sends AES-GCM only")
        out.append(struct.pack("!IIB", sa.spi, last.get(sa.key, 0), len(sa.enc_key)))
        out.append(sa.enc_key)
    for t in framed:
        out.append(struct.pack("!IHH", index[t.flow.sa.key], len(t.header), len(t.plaintext)))
        out += [t.header, t.plaintext]
    return b"".join(out)


@dataclass
class NativeStats(Rates):
    """What the processes did together. `rate_pps` is the total sent over the longest
    process's wall time; `cpu_pps` is sent per CPU-second of all of them."""

    procs: int
    sent: int = 0
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    cpu_s: float = 0.0
    exhausted: int = 0
    rounds: int = 0  # whole passes over every flow, the slowest process's
    at: float = 0.0  # the oldest report's wall time (time.time())
    state: str = "done"  # "running" while any process's last report is
    per_proc: list[dict] = field(default_factory=list)
    last_seq: dict[str, int] = field(default_factory=dict)  # per SA key


class NativeFlood:
    """NativeFlood — `procs` espgen processes in `netns`, one per core, each its own SAs.

    Life cycle: start() → wait() or stop() → check_samples(); stop() is safe to repeat.

    Args:
        spec: AES-GCM SAs and their flows; all flows must leave by one interface.
        workdir: job files, sample files, each process's stderr.
        netns: the namespace to send from (a name from `ip netns add`).
        procs: processes (default: one per CPU this process may use), pinned one per CPU.
        count: packets in all (split evenly); duration: seconds; neither = until stop().
        rate: pps in all, split by flows (each process keeps its flows' share); None = flat out.
        report_every: each process writes its stats to gen<k>.stats.json this often, once
            its socket is open and at the end (then stop() reads those, not stdout).
        env: the processes' environment (a run's marker: `down` finds them by it).
        seq_start: per SA key, the last sequence number already used; seq_base otherwise.
        sample: frames each process keeps from its first and from its last batch.
        wrap: a command the first process runs under (a profiler: `perf record ... --`).
    """

    def __init__(
        self,
        spec: TrafficSpec,
        workdir: Path,
        netns: str,
        procs: int | None = None,
        count: int | None = None,
        duration: float | None = None,
        seq_start: dict[str, int] | None = None,
        seq_base: int = 1,
        sample: int = 4,
        asan: bool = False,
        wrap: tuple[str, ...] = (),
        rate: float | None = None,
        report_every: float | None = None,
        env: dict[str, str] | None = None,
    ):
        self.cpus = sorted(os.sched_getaffinity(0))
        self.parts = split(spec, procs or len(self.cpus))
        self.workdir = Path(workdir)
        self.netns = netns
        self.count, self.duration = count, duration
        self.last = {sa.key: max((seq_start or {}).get(sa.key, 0), seq_base - 1)
                     for sa in spec.sas}  # fmt: skip
        self.sample = sample
        self.wrap = wrap
        self.rate, self.report_every, self.env = rate, report_every, env
        self.flows = sum(len(p.flows) for p in self.parts)
        self.binary = gen_binary(asan)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._l2 = 0

    def _frame(self) -> tuple[str, list[list[Template]]]:
        """Each part's templates with their Ethernet headers, and the one device."""
        link = open_link("packet", self.netns)
        assert isinstance(link, PacketLink)
        try:
            framed = []
            for part in self.parts:
                templates = template.build_all(part.flows)
                fastpath.check_sample(templates)
                framed.append(link.frame(templates))
                self._l2 = len(framed[-1][0].header) - len(templates[0].header)
            devs = {hop.dev for hop in link.hops}
        finally:
            link.close()
        if len(devs) != 1:
            raise ConfigError(f"the native sender sends by one interface, not {sorted(devs)}")
        return devs.pop(), framed

    def start(self) -> NativeFlood:
        """Write the job files and spawn the processes (they start sending at once).

        Raises:
            ConfigError: no AES-GCM, or flows over several interfaces.
            InfraError: the namespace or its next hops cannot be reached.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        dev, framed = self._frame()
        n = len(self.parts)
        try:
            for k, (part, frames) in enumerate(zip(self.parts, framed, strict=True)):
                job = self.workdir / f"job{k}.bin"
                fd = os.open(job, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # keys inside
                with os.fdopen(fd, "wb") as f:
                    f.write(job_bytes(part.sas, frames, self.last))
                cpu = self.cpus[k % len(self.cpus)]
                sample = self.workdir / f"sample{k}.bin"
                argv = [str(self.binary), "-C", str(cpu), "-N", self.netns, "-i", dev,
                        "-k", str(self.sample), "-w", str(sample)]  # fmt: skip
                if self.count is not None:
                    argv += ["-n", str(self.count // n + (k < self.count % n))]
                if self.duration is not None:
                    argv += ["-t", f"{self.duration:g}"]
                if self.rate is not None:
                    argv += ["-r", f"{self.rate * len(part.flows) / self.flows:.6g}"]
                if self.report_every is not None:
                    self.stats_path(k).unlink(missing_ok=True)
                    argv += ["-s", str(self.stats_path(k)), "-e", f"{self.report_every:g}"]
                # a stats file instead of stdout: nobody need read a pipe while it runs
                out = subprocess.PIPE if self.report_every is None else subprocess.DEVNULL
                with open(self.workdir / f"gen{k}.log", "wb") as log:
                    self.procs.append(subprocess.Popen(
                        [*(self.wrap if k == 0 else ()), *argv, str(job)],
                        stdout=out, stderr=log, env=self.env,
                    ))  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, timeout: float | None = None) -> NativeStats:
        """Wait for every process (a count or a duration ends them); their stats.

        Raises:
            InfraError: a process failed or is still running after `timeout`.
        """
        outs = []
        try:
            for p in self.procs:
                out, _ = p.communicate(timeout=timeout)
                outs.append(out)
        except subprocess.TimeoutExpired:
            self.stop()
            raise InfraError("espgen still running", self.netns, "traffic wait") from None
        return self._stats(outs)

    def stop(self) -> None:
        """SIGTERM every process still running, by PID, and reap it."""
        for p in self.procs:
            if p.poll() is None:
                terminate(p)

    def stats_path(self, k: int) -> Path:
        return self.workdir / f"gen{k}.stats.json"

    def log_tail(self, k: int, n: int = 800) -> str:
        return (self.workdir / f"gen{k}.log").read_text(errors="replace").strip()[-n:]

    def reports(self) -> list[dict] | None:
        """Each process's latest stats file (with report_every); None until all have one."""
        out = []
        for k in range(len(self.procs)):
            try:
                out.append(json.loads(self.stats_path(k).read_text()))
            except (OSError, ValueError):
                return None
        return out

    def check_exits(self) -> None:
        """Raises InfraError if a process that exited failed or its log shows a sanitizer."""
        for k, p in enumerate(self.procs):
            log = self.log_tail(k)
            if p.returncode != 0 or "Sanitizer" in log or "runtime error" in log:
                raise InfraError(f"espgen {k} exited with {p.returncode}: {log}",
                                 self.netns, "traffic")  # fmt: skip

    def _stats(self, outs: list[bytes]) -> NativeStats:
        self.check_exits()
        return self.merge([json.loads(out) for out in outs])

    def merge(self, reports: list[dict]) -> NativeStats:
        """The processes' reports (stdout or stats files, in process order) as one."""
        st = NativeStats(len(self.procs), at=min(r.get("at", 0.0) for r in reports))
        st.rounds = min(r.get("rounds", 0) for r in reports)
        st.state = "done" if all(r.get("state", "done") == "done" for r in reports) else "running"
        for k, r in enumerate(reports):
            st.per_proc.append(r)
            st.sent += r["sent"]
            st.errors += r["errors"]
            st.bytes += r["bytes"]
            st.elapsed = max(st.elapsed, r["elapsed"])
            st.cpu_s += r["cpu_s"]
            st.exhausted += r["exhausted"]
            for sa, seq in zip(self.parts[k].sas, r["last_seq"], strict=True):
                st.last_seq[sa.key] = seq
        return st

    def samples(self) -> list[bytes]:
        """The frames the processes kept, as IPv4 packets (link header removed)."""
        out = []
        for k in range(len(self.procs)):
            data = (self.workdir / f"sample{k}.bin").read_bytes()
            off = 0
            while off < len(data):
                n = int.from_bytes(data[off : off + 2], "big")
                out.append(data[off + 2 + self._l2 : off + 2 + n])
                off += 2 + n
        return out

    def check_samples(self, stats: NativeStats) -> int:
        """Decrypt every kept frame with scapy; each must be a flow of its SA, with a
        sequence number the SA has used. Returns how many were checked.

        Raises:
            ConfigError: a frame scapy cannot decrypt or that belongs to no flow.
        """
        flows = {}
        for part in self.parts:
            for f in part.flows:
                flows.setdefault(f.sa.spi, []).append(f)
        pkts = self.samples()
        for pkt in pkts:
            at = (pkt[0] & 0x0F) * 4 + (template.UDP_HDR_LEN if pkt[9] == 17 else 0)
            spi, seq = struct.unpack("!II", pkt[at : at + 8])
            cands = flows.get(spi, [])
            if not cands or not 0 < seq <= stats.last_seq[cands[0].sa.key]:
                raise ConfigError(f"sample SPI 0x{spi:x} seq {seq}: no such flow or number")
            inner = template.scapy_decrypt(cands[0], pkt)
            l4 = inner.payload
            if not any((inner.src, inner.dst, l4.sport, l4.dport)
                       == (f.src, f.dst, f.sport, f.dport) for f in cands):  # fmt: skip
                raise ConfigError(f"sample SPI 0x{spi:x} seq {seq}: inner packet of no flow")
        return len(pkts)
