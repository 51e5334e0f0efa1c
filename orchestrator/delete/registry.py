"""Every delete mode, declared in one place."""

from __future__ import annotations

from orchestrator.delete.base import Strategy
from orchestrator.delete.expire import Expire
from orchestrator.delete.messages import Delete, Delete2, Flush, Update
from orchestrator.errors import ConfigError

STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (Flush, Delete, Delete2, Expire, Update)
}
MODES = tuple(STRATEGIES)


def strategy(mode: str) -> Strategy:
    """The strategy for a delete mode.

    Raises:
        ConfigError: unknown mode, listing the known ones.
    """
    if mode not in STRATEGIES:
        raise ConfigError(f"unknown delete mode '{mode}'. Known modes are: {', '.join(MODES)}")
    return STRATEGIES[mode]()
