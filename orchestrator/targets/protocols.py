"""Small interfaces a target offers: a PF_KEY endpoint, a stats endpoint, a command runner."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class PfkeyEndpoint(Protocol):
    """Where a PF_KEY v2 client connects: a Unix SOCK_SEQPACKET path now; relays and TCP later."""

    transport: str  # "unix" now; "relay", "tcp" later
    address: str  # the socket path, or host:port

    def connect(self):
        """A connected PfkeyClient."""


@runtime_checkable
class StatsEndpoint(Protocol):
    """The firmware's admin socket: one line of words in, one JSON object out."""

    def request(self, line: str) -> dict[str, Any]:
        """Send one request; returns the decoded answer (an error answer has "error")."""


@runtime_checkable
class CommandRunner(Protocol):
    """Runs a command where the target lives (in its namespace, container or board)."""

    def run(self, argv: list[str], *, timeout: float = 30.0) -> tuple[int, str, str]:
        """Returns exit status, stdout and stderr."""
