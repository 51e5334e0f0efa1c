"""The four ways a run deletes every in-use policy of a target at once.

A delete is prepared first (messages encoded) and fired later, so the
ticks it spans measure the kernel's work, not the encoder's.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.errors import InfraError
from orchestrator.pfkey import messages
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Msg

MODES = ("flush", "delete", "delete2", "expire")


def prepare(
    mode: str, client: PfkeyClient, deletes: list[Msg], ids: list[int]
) -> Callable[[], None]:
    """The scenario's delete, ready to fire.

    Args:
        mode: one of MODES; "expire" sends nothing (the lifetimes end on one tick).
        deletes: SPDDELETE per policy, by selector.
        ids: the policy ids SPDADD answered with.
    """
    if mode == "expire":
        return lambda: None
    if mode == "flush":
        return lambda: _check(client.send_prepared(client.prepare([messages.spdflush()])), mode)
    if mode == "delete":
        batch = client.prepare(deletes)
    elif mode == "delete2":
        batch = client.prepare([messages.spddelete2(i) for i in ids])
    else:
        raise ValueError(f"unknown delete mode {mode!r}")
    return lambda: _check(client.send_prepared(batch), mode)


def _check(errnos: list[int], what: str) -> None:
    bad = [e for e in errnos if e]
    if bad:
        raise InfraError(f"{len(bad)} of {len(errnos)} {what} messages failed, errno {bad[0]}")
