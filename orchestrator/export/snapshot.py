"""Snapshot — one parallel read of every target's `stats` per scrape, shared by the collectors."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import InfraError
from orchestrator.export.targets import ExportTarget
from orchestrator.targets.admin import AdminClient

TargetSource = Sequence[ExportTarget] | Callable[[], Sequence[ExportTarget]]


@dataclass(frozen=True)
class TargetReading:
    """One target's `stats` answer, or why there is none."""

    target: ExportTarget
    stats: dict[str, Any] | None
    error: str = ""
    seconds: float = 0.0

    @property
    def up(self) -> bool:
        return self.stats is not None


@dataclass(frozen=True)
class Reading:
    """Every target's reading from one scrape, in target order."""

    targets: tuple[TargetReading, ...] = ()
    seconds: float = 0.0
    taken: float = field(default_factory=time.monotonic)
    error: str = ""  # the target list itself could not be had

    def up(self) -> Iterator[TargetReading]:
        return (r for r in self.targets if r.up)


def read_stats(target: ExportTarget, timeout: float) -> dict[str, Any]:
    """A fresh connection per scrape: a stuck or restarted netkeyd cannot poison the next one."""
    with AdminClient(target.admin_path, timeout=timeout, target=target.name) as c:
        doc = c.stats()
    if "error" in doc:
        raise InfraError(str(doc["error"]), target.name, "stats")
    return doc


class Snapshot:
    """Snapshot — reads all targets' `stats` in parallel, at most once per scrape.

    Within `with snapshot.scrape():` every get() on that thread returns the same reading;
    outside one, get() reuses a reading younger than `ttl` seconds.

    Args:
        targets: the targets, or a callable returning them (asked once per read).
        timeout: the whole read's budget in seconds; a target that has not answered
            by then is down for this scrape.
        ttl: how long a reading is reused outside a scrape.
        workers: threads reading in parallel.
        reader: (target, timeout) → stats dict; raises for a target that is down.
    """

    def __init__(
        self,
        targets: TargetSource,
        timeout: float = 2.0,
        ttl: float = 0.5,
        workers: int = 16,
        reader: Callable[[ExportTarget, float], dict[str, Any]] = read_stats,
    ):
        self._source = targets
        self.timeout = timeout
        self.ttl = ttl
        self.reader = reader
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spdlab-scrape")
        self._lock = threading.Lock()
        self._last: Reading | None = None
        self._local = threading.local()

    def targets(self) -> list[ExportTarget]:
        src = self._source
        return list(src() if callable(src) else src)

    def _one(self, target: ExportTarget, deadline: float) -> TargetReading:
        t0 = time.monotonic()
        try:
            stats = self.reader(target, max(deadline - t0, 0.01))
        except (InfraError, OSError, ValueError) as e:
            return TargetReading(target, None, str(e), time.monotonic() - t0)
        return TargetReading(target, stats, "", time.monotonic() - t0)

    def read(self) -> Reading:
        """Read every target now, within the timeout."""
        t0 = time.monotonic()
        try:
            targets = self.targets()
        except Exception as e:  # a broken source must not break the scrape
            return Reading((), time.monotonic() - t0, t0, f"target list: {e}")
        deadline = t0 + self.timeout
        futures = [self._pool.submit(self._one, t, deadline) for t in targets]
        wait(futures, timeout=self.timeout)
        out = []
        for t, f in zip(targets, futures, strict=True):
            if f.done():
                out.append(f.result())
            else:
                f.cancel()
                out.append(TargetReading(t, None, f"no answer within {self.timeout:g} s"))
        reading = Reading(tuple(out), time.monotonic() - t0, t0)
        with self._lock:
            self._last = reading
        return reading

    def get(self) -> Reading:
        """The current scrape's reading; else a recent one; else a fresh one."""
        pinned = getattr(self._local, "reading", None)
        if pinned is not None:
            return pinned
        with self._lock:
            last = self._last
        if last is not None and time.monotonic() - last.taken < self.ttl:
            return last
        return self.read()

    @contextlib.contextmanager
    def scrape(self) -> Iterator[Reading]:
        """Read once and pin that reading for this thread until the block ends."""
        reading = self.read()
        self._local.reading = reading
        try:
            yield reading
        finally:
            self._local.reading = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
