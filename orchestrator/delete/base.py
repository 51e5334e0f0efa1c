"""Strategy — how a target's policies are installed and then all deleted at once.

Life cycle, per trial:
- install(gw): add every policy; gw.ids gets the ids SPDADD answered with.
- survivors(gw): policies meant to stay linked after the delete (0 but for SPDUPDATE).
- delete(gw): the mass delete; returns the Span of ticks it took, with stats either side.

A delete's messages are encoded before the first is sent, so the ticks it spans
measure the kernel's work, not the encoder's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.errors import InfraError
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Msg
from orchestrator.targets.endpoints import clock
from orchestrator.targets.protocols import StatsEndpoint


@dataclass
class Gateway:
    """What a strategy works on: one target's PF_KEY, its stats and its scenario."""

    pfkey: Callable[[], PfkeyClient]
    stats: StatsEndpoint
    tick_ms: int
    policy_msgs: list[Msg]  # SPDADD, one per policy
    delete_msgs: list[Msg]  # SPDDELETE by selector, one per policy
    ids: list[int] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)  # the strategy's own state


@dataclass
class Span:
    """The delete in the target's ticks; `after` is None when no message was sent."""

    issue_tick: int
    delete_tick: int
    before: dict[str, Any]
    after: dict[str, Any] | None


def check(replies: list[Msg], what: str, ids: list[int] | None = None) -> None:
    """Every reply succeeded; collect the policy ids they carry into `ids`."""
    bad = [r for r in replies if r.errno]
    if bad:
        raise InfraError(f"{len(bad)} of {len(replies)} {what} failed, errno {bad[0].errno}")
    if ids is not None:
        ids.extend(r.policy.id for r in replies if r.policy is not None)


class Strategy:
    """Strategy — one delete mode; subclasses give the delete's messages."""

    name: ClassVar[str] = ""

    def install(self, gw: Gateway) -> None:
        with gw.pfkey() as c:
            check(c.pipeline(gw.policy_msgs), "SPDADD", gw.ids)

    def survivors(self, gw: Gateway) -> int:
        return 0

    def messages(self, gw: Gateway) -> list[Msg]:
        raise NotImplementedError

    def delete(self, gw: Gateway) -> Span:
        with gw.pfkey() as c:
            batch = c.prepare(self.messages(gw))
            before = stats(gw)
            errnos = c.send_prepared(batch)
        after = stats(gw)
        bad = [e for e in errnos if e]
        if bad:
            raise InfraError(f"{len(bad)} of {len(errnos)} {self.name} messages failed, "
                             f"errno {bad[0]}")  # fmt: skip
        return Span(clock(before), clock(after), before, after)


def stats(gw: Gateway) -> dict:
    """The target's `stats`; an error answer (a kernel target's dump or counters failed)
    is the target's INFRA-ERROR, with the reason."""
    doc = gw.stats.request("stats")
    if "error" in doc:
        raise InfraError(f"stats: {doc['error']}", step="delete")
    return doc
