"""The run's phases as a state machine: a phase is entered when it starts, left when done.

Trials loop from drained back to installed; any phase may go to down.
"""

from __future__ import annotations

from orchestrator.result.model import Phase

ALLOWED: dict[Phase, tuple[Phase, ...]] = {
    Phase.NEW: (Phase.PREFLIGHT,),
    Phase.PREFLIGHT: (Phase.UP,),
    Phase.UP: (Phase.INSTALLED,),
    Phase.INSTALLED: (Phase.REFERENCED,),
    Phase.REFERENCED: (Phase.DELETED,),
    Phase.DELETED: (Phase.DRAINED,),
    Phase.DRAINED: (Phase.INSTALLED, Phase.JUDGED),
    Phase.JUDGED: (),
}


class RunPhases:
    """RunPhases — where a run is; a failed run remembers its first failure.

    `done` is the last phase completed; `current` the one running (None between).
    """

    def __init__(self) -> None:
        self.done = Phase.NEW
        self.current: Phase | None = None
        self.failure: str | None = None

    def enter(self, to: Phase) -> None:
        if to is not Phase.DOWN and to not in ALLOWED.get(self.done, ()):
            raise RuntimeError(f"run cannot go from {self.done.value} to {to.value}")
        self.current = to

    def leave(self, phase: Phase) -> None:
        assert self.current is phase, (self.current, phase)
        self.done, self.current = phase, None

    def fail(self, reason: str) -> None:
        self.failure = self.failure or f"{self.current.value if self.current else '?'}: {reason}"
