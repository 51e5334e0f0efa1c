"""Problems found in a lab file, located by their path in the document (stages 1 and 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One problem in a lab file, located by its path in the document."""

    loc: Loc
    message: str


class LabIssues(Exception):
    """Problems found by validation or resolution, before they get line numbers."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        super().__init__("; ".join(i.message for i in self.issues))
