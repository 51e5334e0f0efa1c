"""Preconditions: what the machine must offer before `up` creates anything.

Each driver declares its kind's (TargetDriver.preconditions); the run engine's preflight
phase (orchestrator/run/preflight.py) adds the run's own (runs/, ports, Pushgateway)
and `spdlab validate --preflight` runs the same list. A check returns an
Unmet, or None when the machine is ready: one line naming what is missing and the
command that fixes it.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InfraError

CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
MIN_FREE_BYTES = 64 << 20  # logs, dumps and pcaps of one run fit in far less


@dataclass(frozen=True)
class Unmet:
    """A precondition the machine does not meet: what is missing, and how to fix it."""

    what: str
    fix: str

    def line(self) -> str:
        return f"{self.what}; fix: {self.fix}"


class PreflightError(InfraError):
    """Preconditions not met: nothing was created. One line per unmet precondition."""

    def __init__(self, unmet: Iterable[Unmet]):
        self.unmet = list(unmet)
        super().__init__("\n".join(u.line() for u in self.unmet))
        self.step = "preflight"


def require(unmet: Iterable[Unmet | None]) -> None:
    """Raise PreflightError if any check failed."""
    found = [u for u in unmet if u is not None]
    if found:
        raise PreflightError(found)


def capabilities(what: str) -> Unmet | None:
    """CAP_NET_ADMIN and CAP_SYS_ADMIN: namespaces, veths and bridges need both."""
    try:
        status = Path("/proc/self/status").read_text()
        eff = int(next(ln for ln in status.splitlines() if ln.startswith("CapEff:")).split()[1], 16)
    except (OSError, StopIteration, ValueError):
        eff = ~0 if os.geteuid() == 0 else 0
    missing = [n for n, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
               if not eff >> bit & 1]  # fmt: skip
    if not missing:
        return None
    return Unmet(f"{what} need {' and '.join(missing)}", "run spdlab as root (sudo spdlab …)")


def command(name: str, package: str) -> Unmet | None:
    """A program on PATH, and the Debian package that has it."""
    if shutil.which(name) is not None:
        return None
    return Unmet(f"{name} not found on PATH", f"apt-get install {package}")


def module(name: str, fix: str) -> Unmet | None:
    """A Python package spdlab imports only when a kind needs it."""
    import importlib.util

    return None if importlib.util.find_spec(name) else Unmet(f"Python package {name} missing", fix)


def gateways(what: str) -> list[Unmet | None]:
    """What gateways on the lab switch need: root's capabilities, iproute2, a firmware build."""
    return [capabilities(what), command("ip", "iproute2"), command("make", "make"),
            command("cc", "gcc")]  # fmt: skip


def path(p: Path, what: str, fix: str) -> Unmet | None:
    """A file that must exist."""
    return None if p.exists() else Unmet(f"{what} {p} does not exist", fix)


def writable(base: Path, need: int = MIN_FREE_BYTES) -> Unmet | None:
    """The runs folder (or its nearest existing parent) is writable and has space."""
    where = base
    while not where.exists() and where != where.parent:
        where = where.parent
    fix = f"make {base} writable, or point SPDLAB_RUNS_DIR at a writable folder"
    if not where.is_dir():
        return Unmet(f"runs folder {base}: {where} is not a folder", fix)
    if not os.access(where, os.W_OK | os.X_OK):
        try:
            st = os.statvfs(where)
            ro = bool(st.f_flag & os.ST_RDONLY)
        except OSError:
            ro = False
        how = "on a read-only file system" if ro else "not writable"
        return Unmet(f"runs folder {base} is {how}", fix)
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < need:
        return Unmet(f"runs folder {base} has {free >> 20} MiB free, a run needs {need >> 20} MiB",
                     "free space there, or point SPDLAB_RUNS_DIR elsewhere")  # fmt: skip
    return None


def port_free(addr: str, flag: str, fix: str) -> Unmet | None:
    """addr ("host:port") can be bound now; port 0 always can."""
    from orchestrator.export.exporter import parse_addr

    host, port = parse_addr(addr)
    if port == 0:
        return None
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]  # fmt: skip
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            s.bind(sockaddr)
    except OSError as e:
        why = "in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        return Unmet(f"{flag} {addr}: {why}", fix)
    return None


def reachable(url: str, what: str, fix: str, timeout: float = 3.0) -> Unmet | None:
    """An HTTP server answers at url (any status will do)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/-/healthy", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as e:
        return Unmet(f"{what} {url} does not answer: {url_why(e)}", fix)


def url_why(e: Exception) -> str:
    """urllib's error in a few words ("Connection refused")."""
    reason = getattr(e, "reason", e)
    return getattr(reason, "strerror", None) or str(reason)
