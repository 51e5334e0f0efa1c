"""A measure is a value or "not observable" with the reason: unmeasured is never 0.

Renderers show a NotObservable as "—" with a footnote that gives the reason.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NotObservable(BaseModel):
    """A measure the target cannot show (a real kernel's frees, through SPDDUMP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    not_observable: str


Count = int | NotObservable
Ticks = int | None | NotObservable  # None: the event did not happen within the timeout
Ratio = float | None | NotObservable  # None: nothing to divide by

MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


def observed(v: object) -> bool:
    return not isinstance(v, NotObservable)


def value_or(v: object, reason: str | None) -> object:
    """v itself, or NotObservable(reason) when the target cannot observe it."""
    return NotObservable(not_observable=reason) if reason else v


class Footnotes:
    """Footnote marks for one table: the same reason gets the same mark."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return MARKS[min(self.reasons.index(reason), len(MARKS) - 1)]

    def cell(self, v: object, never: str = "never", fmt: str = "{}") -> str:
        """A measure as a table cell: the value, "never", or "—" and a mark."""
        if isinstance(v, NotObservable):
            return "—" + self.mark(v.not_observable)
        if v is None:
            return never
        return fmt.format(v)

    def lines(self) -> list[str]:
        return [f"{MARKS[i]} not observable: {r}" for i, r in enumerate(self.reasons)]
