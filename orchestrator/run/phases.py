"""The run's phases as a state machine; a failed run remembers its first failure."""

from __future__ import annotations

import enum


class Status(enum.Enum):
    NEW = "new"
    UP = "up"
    INSTALLED = "installed"
    REFERENCED = "referenced"
    DELETED = "deleted"
    DRAINED = "drained"
    DOWN = "down"
    FAILED = "failed"


# Trials loop back from drained to installed.
ALLOWED: dict[Status, tuple[Status, ...]] = {
    Status.NEW: (Status.UP,),
    Status.UP: (Status.INSTALLED,),
    Status.INSTALLED: (Status.REFERENCED,),
    Status.REFERENCED: (Status.DELETED,),
    Status.DELETED: (Status.DRAINED,),
    Status.DRAINED: (Status.INSTALLED,),
}


class RunPhases:
    """RunPhases — where a run is; any state may go to FAILED or DOWN."""

    def __init__(self) -> None:
        self.status = Status.NEW
        self.failure: str | None = None

    def transition(self, to: Status, reason: str | None = None) -> None:
        if to is Status.FAILED:
            self.failure = self.failure or reason
        elif to is not Status.DOWN and to not in ALLOWED.get(self.status, ()):
            raise RuntimeError(f"run cannot go from {self.status.value} to {to.value}")
        self.status = to
