"""The one SIGINT/SIGTERM path of every verb.

The first signal sets the flag (long steps poll it) and, with `raise_first`,
raises KeyboardInterrupt in the main thread; later signals are ignored, so the
teardown that follows always finishes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(threading.Event):
    """Set by the first SIGINT or SIGTERM; `signum` says which."""

    def __init__(self, raise_first: bool):
        super().__init__()
        self.raise_first = raise_first
        self.signum = int(signal.SIGINT)

    def __call__(self, signum: int, frame: Any) -> None:
        if self.is_set():
            return
        self.signum = signum
        self.set()
        if self.raise_first:
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def interrupts(raise_first: bool = True) -> Iterator[Interrupted]:
    flag = Interrupted(raise_first)
    old = {s: signal.signal(s, flag) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
