"""The four ways a run deletes every in-use policy of a target at once."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.errors import InfraError
from orchestrator.pfkey import messages
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Msg

MODES = ("flush", "delete", "delete2", "expire")


def _flush(client: PfkeyClient, deletes: list[Msg], ids: list[int]) -> None:
    client.request(messages.spdflush())


def _delete(client: PfkeyClient, deletes: list[Msg], ids: list[int]) -> None:
    _check(client.pipeline(deletes), "SPDDELETE")


def _delete2(client: PfkeyClient, deletes: list[Msg], ids: list[int]) -> None:
    _check(client.pipeline([messages.spddelete2(i) for i in ids]), "SPDDELETE2")


def _expire(client: PfkeyClient, deletes: list[Msg], ids: list[int]) -> None:
    """Nothing to send: the lifetimes set at install end on one tick."""


def _check(replies: list[Msg], what: str) -> None:
    bad = [r for r in replies if r.errno]
    if bad:
        raise InfraError(f"{len(bad)} of {len(replies)} {what} failed, errno {bad[0].errno}")


DELETERS: dict[str, Callable[[PfkeyClient, list[Msg], list[int]], None]] = {
    "flush": _flush,
    "delete": _delete,
    "delete2": _delete2,
    "expire": _expire,
}


def mass_delete(mode: str, client: PfkeyClient, deletes: list[Msg], ids: list[int]) -> None:
    """Issue the scenario's delete.

    Args:
        mode: one of MODES.
        deletes: SPDDELETE per policy, by selector.
        ids: the policy ids SPDADD answered with.
    """
    DELETERS[mode](client, deletes, ids)
