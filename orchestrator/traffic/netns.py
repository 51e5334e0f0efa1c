"""Entering a network namespace: setns(2) through libc (os.setns is Python 3.12+)."""

from __future__ import annotations

import ctypes
import os

from orchestrator.errors import InfraError

CLONE_NEWNET = 0x40000000


def netns_path(netns: str) -> str:
    """`/run/netns/NAME` for a name made by `ip netns add`; a path is kept as given."""
    return netns if "/" in netns else f"/run/netns/{netns}"


def enter(netns: str) -> None:
    """Move the calling thread into `netns` (a name or a path such as /proc/PID/ns/net).

    Sockets opened afterwards belong to that namespace.

    Raises:
        InfraError: no such namespace, or setns failed.
    """
    path = netns_path(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise InfraError(f"cannot open {path}: {e.strerror}", target=netns, step="setns") from e
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise InfraError(f"setns: {os.strerror(err)}", target=netns, step="setns")
    finally:
        os.close(fd)
