"""The sender: fast-path packets over one long-lived raw socket, paced by a token bucket.

Life cycle:
    - `Sender(templates)`: one encoder per flow, the next sequence number per SA;
    - `run(pacing, ...)`: until the duration, the count or a stop request; returns `SendStats`;
    - `seq_state()`: the last sequence number used per SA, so a later sender continues above it.

Flows are served round-robin, so at a rate of R pps each of N flows gets one packet every
N/R seconds: keepalive pacing is just that rate (`Pacing.keepalive`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator import atomic
from orchestrator.errors import ConfigError
from orchestrator.traffic import fastpath
from orchestrator.traffic.fastpath import SEQ_MAX
from orchestrator.traffic.link import Link
from orchestrator.traffic.template import Template

BATCH = 64  # packets between clock reads, stop checks and reports


@dataclass(frozen=True)
class Pacing:
    """How fast and how long: `rate` pps (None = as fast as possible), until `duration`
    seconds or `count` packets (both None = until stopped)."""

    mode: str = "rate"  # "rate", "duration", "keepalive", "flood": for reports
    rate: float | None = None
    duration: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"rate must be > 0 pps, got {self.rate}")
        if self.duration is not None and self.duration < 0:
            raise ConfigError(f"duration must be >= 0 s, got {self.duration}")
        if self.count is not None and self.count < 0:
            raise ConfigError(f"count must be >= 0, got {self.count}")

    @classmethod
    def keepalive(cls, flows: int, keepalive_ticks: int, tick_ms: int) -> Pacing:
        """One packet per flow every keepalive_ticks x tick_ms, spread evenly, until stopped."""
        if flows < 1 or keepalive_ticks < 1 or tick_ms < 1:
            raise ConfigError("keepalive needs flows, keepalive_ticks and tick_ms >= 1")
        return cls("keepalive", rate=flows * 1000.0 / (keepalive_ticks * tick_ms))

    def to_json(self) -> dict:
        return asdict(self)


class Rates:
    """Packets per wall second and per CPU second, of stats with sent, elapsed, cpu_s."""

    sent: int
    elapsed: float
    cpu_s: float

    @property
    def rate_pps(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_pps(self) -> float:
        return self.sent / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass
class SendStats(Rates):
    """What a sender did. `rate_pps` is the achieved rate: sent / elapsed; `cpu_pps` is
    sent per CPU-second the sender used (user + system), what one busy core would do."""

    mode: str
    flows: int
    sas: int
    sent: int = 0
    errors: int = 0  # send() failures; their sequence numbers are skipped, not reused
    bytes: int = 0
    elapsed: float = 0.0
    cpu_s: float = 0.0
    target_pps: float | None = None
    exhausted: int = 0  # SAs stopped at sequence number 2^32-1
    rounds: int = 0  # whole passes over every flow: each flow sent once more per round
    at: float = 0.0  # wall time of this report (time.time())
    state: str = "running"  # "running", "done"
    per_dst: dict[str, int] = field(default_factory=dict)  # packets per outer destination
    sender: str = "python"  # "python" (this module) or "native" (espgen, native.py)
    procs: int = 1  # sending processes

    def to_json(self) -> dict:
        d = asdict(self)
        d["rate_pps"] = round(self.rate_pps, 1)
        d["cpu_pps"] = round(self.cpu_pps, 1)
        return d

    @classmethod
    def from_json(cls, d: dict) -> SendStats:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**d)


class _Stop(Exception):
    """An SA ran out of sequence numbers."""


class Sender:
    """Encrypts and sends the flows of `templates` round-robin.

    Args:
        templates: one per flow; flows may share an SA (sequence numbers are per SA).
        link: the open socket the packets leave by.
        seq_start: per SA key, the last sequence number already used (a state file's content);
            sending continues above it.
        seq_base: the first sequence number of an SA without state.
    """

    def __init__(
        self,
        templates: list[Template],
        link: Link,
        seq_start: dict[int, int] | None = None,
        seq_base: int = 1,
    ):
        if not templates:
            raise ConfigError("no flows to send")
        if not 1 <= seq_base <= SEQ_MAX:
            raise ConfigError(f"seq_base must be 1..{SEQ_MAX}")
        self.templates = templates
        self.sa_keys: list[str] = []  # "DST/0xSPI", one per SA
        index: dict[str, int] = {}
        self._sa_of: list[int] = []
        for t in templates:
            key = t.flow.sa.key
            if key not in index:
                index[key] = len(self.sa_keys)
                self.sa_keys.append(key)
            self._sa_of.append(index[key])
        self._max_flows_per_sa = max(Counter(self._sa_of).values())
        start = seq_start or {}
        self._last = [max(start.get(key, 0), seq_base - 1) for key in self.sa_keys]
        self._dsts = [socket.inet_ntoa(t.header[16:20]) for t in templates]
        framed = link.frame(templates)
        self._l2 = len(framed[0].header) - len(templates[0].header)  # link header length
        self._fns = [fastpath.encoder(t) for t in framed]
        self._send, self._addr = link.sender(framed)
        self.link = link
        self._pos = 0  # the next flow, round-robin
        self.recorded: list[bytes] = []

    def seq_state(self, ahead_s: float = 0.0, rate: float = 0.0) -> dict[str, int]:
        """Last sequence number used, per SA ("DST/0xSPI").

        With `ahead_s`, each number is raised by what `rate` pps would use up in that many
        seconds (a lease): a sender killed before its next save still leaves a state its
        successor can continue from without a replay.
        """
        if ahead_s <= 0:
            return dict(zip(self.sa_keys, self._last, strict=True))
        per_sa = rate * ahead_s * self._max_flows_per_sa / len(self._fns)
        ahead = int(per_sa) + 1
        return {
            key: min(last + ahead, SEQ_MAX)
            for key, last in zip(self.sa_keys, self._last, strict=True)
        }

    def run(
        self,
        pacing: Pacing,
        stop: threading.Event | None = None,
        report: Callable[[SendStats], None] | None = None,
        report_every: float = 1.0,
        record: int = 0,
    ) -> SendStats:
        """Send until pacing says done, `stop` is set, or an SA runs out of numbers.

        Args:
            report: called with the running stats about every `report_every` seconds.
            record: keep the first `record` packets in `self.recorded` (for a pcap).
        """
        stats = SendStats(
            pacing.mode, len(self.templates), len(self.sa_keys), target_pps=pacing.rate
        )
        rate, burst = pacing.rate, BATCH
        if rate is not None:
            burst = max(1, min(BATCH, int(rate * 0.005)))  # at most 5 ms worth at once
        remaining = pacing.count if pacing.count is not None else -1
        t0 = last = time.monotonic()
        c0, first = time.process_time(), self._pos
        deadline = t0 + pacing.duration if pacing.duration is not None else None
        next_report = t0 + report_every
        tokens = float(burst)
        try:
            while remaining != 0 and not (stop is not None and stop.is_set()):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if report is not None and now >= next_report:
                    stats.elapsed, stats.cpu_s = now - t0, time.process_time() - c0
                    self.count(stats, first)
                    report(stats)
                    next_report = now + report_every
                if rate is None:
                    n = BATCH
                else:
                    tokens = min(float(burst), tokens + (now - last) * rate)
                    last = now
                    n = int(tokens)
                    if n == 0:
                        wait = (1.0 - tokens) / rate
                        if deadline is not None:
                            wait = min(wait, max(0.0, deadline - now))
                        time.sleep(wait)
                        continue
                if 0 < remaining < n:
                    n = remaining
                if record > len(self.recorded):
                    n = min(n, record - len(self.recorded))
                tokens -= n
                if record > len(self.recorded):
                    self._burst_recording(n, stats)
                elif self._addr is None:
                    self._burst(n, stats)
                else:
                    self._burst_to(n, stats)
                if remaining > 0:
                    remaining -= n
        except _Stop:
            stats.exhausted = sum(1 for s in self._last if s >= SEQ_MAX)
        stats.elapsed, stats.cpu_s = time.monotonic() - t0, time.process_time() - c0
        self.count(stats, first)
        stats.state = "done"
        if report is not None:
            report(stats)
        return stats

    def count(self, stats: SendStats, first: int) -> None:
        """Per destination and whole rounds, from the sends since flow `first`."""
        attempts = stats.sent + stats.errors
        stats.per_dst = self.per_dst(attempts, first)
        stats.rounds = (first + attempts) // len(self._fns)
        stats.at = time.time()

    def per_dst(self, attempts: int, first: int = 0) -> dict[str, int]:
        """Packets per outer destination after `attempts` sends starting at flow `first`."""
        return round_robin_per_dst(self._dsts, attempts, first)

    def _burst(self, n: int, stats: SendStats) -> None:
        """n packets, all by one send(): the hot loop, every lookup hoisted into a local."""
        fns, sa_of, last, send = self._fns, self._sa_of, self._last, self._send
        nflows, i = len(fns), self._pos
        sent = errors = nbytes = 0
        try:
            for _ in range(n):
                a = sa_of[i]
                s = last[a] + 1
                if s > SEQ_MAX:
                    raise _Stop
                last[a] = s
                try:
                    nbytes += send(fns[i](s))
                    sent += 1
                except OSError:
                    errors += 1
                i += 1
                if i == nflows:
                    i = 0
        finally:
            self._pos = i
            stats.sent += sent
            stats.errors += errors
            stats.bytes += nbytes

    def _burst_to(self, n: int, stats: SendStats) -> None:
        """Like _burst, with sendto() and each flow's address."""
        fns, sa_of, last, send, addr = self._fns, self._sa_of, self._last, self._send, self._addr
        nflows, i = len(fns), self._pos
        sent = errors = nbytes = 0
        try:
            for _ in range(n):
                a = sa_of[i]
                s = last[a] + 1
                if s > SEQ_MAX:
                    raise _Stop
                last[a] = s
                try:
                    nbytes += send(fns[i](s), addr[i])
                    sent += 1
                except OSError:
                    errors += 1
                i += 1
                if i == nflows:
                    i = 0
        finally:
            self._pos = i
            stats.sent += sent
            stats.errors += errors
            stats.bytes += nbytes

    def _burst_recording(self, n: int, stats: SendStats) -> None:
        """Like _burst, keeping each packet (from its IPv4 header on)."""
        for _ in range(n):
            i = self._pos
            a = self._sa_of[i]
            s = self._last[a] + 1
            if s > SEQ_MAX:
                raise _Stop
            self._last[a] = s
            pkt = self._fns[i](s)
            self.recorded.append(pkt[self._l2 :])
            try:
                if self._addr is None:
                    stats.bytes += self._send(pkt)
                else:
                    stats.bytes += self._send(pkt, self._addr[i])
                stats.sent += 1
            except OSError:
                stats.errors += 1
            self._pos = (i + 1) % len(self._fns)


def round_robin_per_dst(dsts: list[str], attempts: int, first: int = 0) -> dict[str, int]:
    """Packets per outer destination after `attempts` sends over flows to `dsts`, round-robin
    from flow `first`.

    Flows are served strictly round-robin, so this is arithmetic, not a count kept in the
    hot loop; a failed send (stats.errors) counts for its destination.
    """
    n = len(dsts)
    rounds, rest = divmod(attempts, n)
    out = {dst: rounds * k for dst, k in Counter(dsts).items()}
    for dst in (dsts[first:] + dsts[:first])[:rest]:
        out[dst] += 1
    return out


def load_seq_state(path: Path) -> dict[str, int]:
    """A state file's last sequence number per SA key; empty if the file does not exist."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a sequence-number state file: {e}") from e
    return {str(key): int(seq) for key, seq in data.get("last_seq", {}).items()}


def save_seq_state(path: Path, state: dict[str, int]) -> None:
    """Write the state file atomically."""
    write_json(path, {"last_seq": dict(sorted(state.items()))})


def write_json(path: Path, obj: object) -> None:
    """Write `obj` to `path` atomically (a reader sees the old or the new file)."""
    atomic.write_json(path, obj, indent=None)
