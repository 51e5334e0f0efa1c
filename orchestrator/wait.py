"""Waiting on a condition, written once: every poll loop in spdlab and its tests.

A wait names what it waits for, so a timeout says what never happened.  Deadlines
are generous limits for a stuck component, never a measure of speed: the test
suite must pass on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline."""


def until(
    cond: Callable[[], T],
    what: str,
    timeout: float = 60.0,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> T:
    """Poll `cond` until it returns a truthy value, and return that value.

    Args:
        cond: polled; a truthy return ends the wait.
        what: the awaited condition, for the error ("netkeyd answers ping").
        timeout: seconds before WaitTimeout.
        interval: seconds between polls (doubles up to 0.5 s).
        alive: polled too; False ends the wait early (the awaited process died).

    Raises:
        WaitTimeout: `cond` stayed falsy, or `alive` turned False.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if alive is not None and not alive():
            raise WaitTimeout(f"gave up waiting for {what}: the process it depends on exited")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.5)


def deadline_left(deadline: float) -> float:
    """Seconds left before a time.monotonic() deadline (never negative)."""
    return max(0.0, deadline - time.monotonic())
