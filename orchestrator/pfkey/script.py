"""Run parsed setkey statements against a PfkeyClient, in order, pipelining where it can."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.pfkey.client import PfkeyClient, PfkeyReplyError
from orchestrator.pfkey.codec import Msg
from orchestrator.pfkey.setkey import Statement


@dataclass
class Outcome:
    """What one statement got: its reply (or dump entries), or the error reply."""

    statement: Statement
    replies: list[Msg]
    error: PfkeyReplyError | None = None


def _failed(st: Statement, reply: Msg) -> PfkeyReplyError:
    return PfkeyReplyError(reply, context=f"line {st.line}")


def run(client: PfkeyClient, statements: Sequence[Statement], window: int = 64) -> list[Outcome]:
    """Every statement's outcome; a failed statement does not stop the next (as setkey -f).

    Runs of non-dump statements go through client.pipeline(); a dump waits for them first,
    so it sees their effect.
    """
    outcomes: list[Outcome] = []
    batch: list[Statement] = []

    def send_batch() -> None:
        replies = client.pipeline([st.msg for st in batch], window)
        for st, reply in zip(batch, replies, strict=True):
            outcomes.append(Outcome(st, [reply], _failed(st, reply) if reply.errno else None))
        batch.clear()

    for st in statements:
        if not st.is_dump:
            batch.append(st)
            continue
        send_batch()
        try:
            outcomes.append(Outcome(st, client.dump(st.msg)))
        except PfkeyReplyError as e:
            outcomes.append(Outcome(st, [], _failed(st, e.reply)))
    send_batch()
    return outcomes
