"""Mass SPD deletes as strategies: SPDFLUSH, N SPDDELETE, N SPDDELETE2, lifetimes that end
on one tick, or an SPDUPDATE storm. `spdlab run` and `spdlab matrix` use them alike."""

from orchestrator.delete.base import Gateway, Span, Strategy
from orchestrator.delete.registry import MODES, strategy

__all__ = ["MODES", "Gateway", "Span", "Strategy", "strategy"]
