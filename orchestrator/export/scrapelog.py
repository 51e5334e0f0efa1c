"""ScrapeLog — the HTTP scrapes an exporter answered, so its owner can wait for the next one.

A run's last state (verdicts in result.json, targets still up) lasts only until teardown.
Prometheus scrapes on its own schedule, so teardown waits, bounded, for one scrape that
began after the last state was written and whose answer has been sent in full.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LINGER_MAX_S = 60.0  # never hold teardown longer than this for a scraper
LINGER_SLACK_S = 5.0  # a late scrape: a loaded scraper, or one that just started


class _Body:
    """A response body that reports when the server has finished sending it (PEP 3333)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]):
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class ScrapeLog:
    """Counts the scrapes served through `wrap(app)`; `wait_next()` waits for a new one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._begun = 0  # scrapes begun, numbered from 1
        self._answered = 0  # the highest number among the scrapes answered in full
        self._starts: list[float] = []  # monotonic start times of the last two scrapes

    @property
    def begun(self) -> int:
        with self._cond:
            return self._begun

    @property
    def answered(self) -> int:
        """The highest number among the scrapes answered in full (0: none yet)."""
        with self._cond:
            return self._answered

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """`app`, counting every request but the browser's favicon."""

        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/favicon.ico":
                return app(environ, start_response)
            n = self._begin()
            return _Body(app(environ, start_response), lambda: self._end(n))

        return counted

    def _begin(self) -> int:
        with self._cond:
            self._begun += 1
            self._starts = [*self._starts[-1:], time.monotonic()]
            return self._begun

    def _end(self, n: int) -> None:
        with self._cond:
            self._answered = max(self._answered, n)
            self._cond.notify_all()

    def interval(self) -> float | None:
        """Seconds between the last two scrapes; None before a second one: no scraper yet."""
        with self._cond:
            if len(self._starts) < 2:
                return None
            return self._starts[1] - self._starts[0]

    def wait_next(self, timeout: float | None = None) -> bool:
        """Wait until a scrape that begins after this call has been answered in full.

        Args:
            timeout: seconds; None: three of the scraper's intervals and some slack,
                at most LINGER_MAX_S. Without a scraper (fewer than two scrapes so far)
                there is nothing to wait for.

        Returns:
            True once such a scrape was answered; False without a scraper or on timeout.
        """
        every = self.interval()
        if timeout is None:
            if every is None:
                return False
            timeout = min(LINGER_MAX_S, 3 * every + LINGER_SLACK_S)
        with self._cond:
            mark = self._begun
            return self._cond.wait_for(lambda: self._answered > mark, timeout)
