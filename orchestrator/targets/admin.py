"""Client for netkeyd's admin socket: one line of words in, one JSON object out."""

from __future__ import annotations

import json
import socket
from typing import Any

from orchestrator.errors import InfraError, connect_failure


class AdminClient:
    """AdminClient — talks to one netkeyd admin socket (a StatsEndpoint).

    Args:
        path: the admin socket (Unix SOCK_STREAM).
        timeout: seconds to wait for connect and for each answer.
        target: the target's name, for error messages.
    """

    def __init__(self, path: str, timeout: float = 5.0, target: str | None = None):
        self.path = str(path)
        self.timeout = timeout
        self.target = target
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError as e:
                s.close()
                raise InfraError(connect_failure(self.path, e), self.target, "admin") from e
            self._sock, self._buf = s, b""
        return self._sock

    def request(self, line: str) -> dict[str, Any]:
        """Send one request line; returns the decoded JSON answer.

        Raises:
            InfraError: the socket cannot be reached or the answer is not one JSON object.
        """
        s = self._connect()
        try:
            s.sendall(line.strip().encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise ConnectionResetError("connection closed")
                self._buf += chunk
        except OSError as e:
            self.close()
            raise InfraError(f"{self.path}: {line!r}: {e}", self.target, "admin") from e
        raw, self._buf = self._buf.split(b"\n", 1)
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise InfraError(f"{line!r}: answer is not JSON: {raw[:80]!r}", self.target) from e
        if not isinstance(doc, dict):
            raise InfraError(f"{line!r}: answer is not a JSON object", self.target, "admin")
        return doc

    def ping(self) -> bool:
        return self.request("ping").get("ok") is True

    def stats(self) -> dict[str, Any]:
        return self.request("stats")

    def version(self) -> dict[str, Any]:
        return self.request("version")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
