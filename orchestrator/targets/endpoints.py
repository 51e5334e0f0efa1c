"""Endpoints a target hands out: where its PF_KEY control socket and admin socket are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.targets.admin import AdminClient


@dataclass(frozen=True)
class UnixPfkeyEndpoint:
    """A PF_KEY v2 control socket on this host's filesystem (Unix SOCK_SEQPACKET)."""

    address: str
    transport: str = "unix"
    flavour: str = "bsd"
    timeout: float = 5.0  # per answer, unless a caller gives its own

    def connect(self, timeout: float | None = None):
        """A connected orchestrator.pfkey PfkeyClient."""
        from orchestrator.pfkey.client import PfkeyClient

        return PfkeyClient(self.address, timeout=timeout or self.timeout, flavour=self.flavour)


@dataclass(frozen=True)
class UnixStatsEndpoint:
    """netkeyd's admin socket on this host's filesystem."""

    address: str
    target: str | None = None
    timeout: float = 5.0  # per answer, unless a caller gives its own

    def request(self, line: str, timeout: float | None = None) -> dict:
        with AdminClient(self.address, timeout=timeout or self.timeout, target=self.target) as c:
            return c.request(line)

    def client(self, timeout: float | None = None) -> AdminClient:
        """A client that keeps its connection, for many requests."""
        return AdminClient(self.address, timeout=timeout or self.timeout, target=self.target)


def clock(doc: Mapping[str, Any]) -> int:
    """A target's clock from its `stats` answer. An error answer (a guest that stopped
    answering SPDDUMP) raises RuntimeError naming it, which fails that target only."""
    if "now" not in doc:
        raise RuntimeError(f"stats: {doc.get('error', 'the answer holds no clock')}")
    return int(doc["now"])
