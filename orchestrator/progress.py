"""Progress — the one interface every verb reports through: a bar per phase, log lines.

Drivers, the run engine and traffic use it; the CLI draws it with rich (RichProgress).
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, name: str, n: int = 1) -> None: ...

    def update(self, name: str, completed: int) -> None: ...

    def log(self, msg: str) -> None: ...


class NullProgress:
    """Reports nowhere."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, name: str, n: int = 1) -> None:
        pass

    def update(self, name: str, completed: int) -> None:
        pass

    def log(self, msg: str) -> None:
        pass


class RichProgress:
    """A rich progress bar per phase, log lines above the bars."""

    def __init__(self, bars: Any):
        self.bars = bars
        self.tasks: dict[str, Any] = {}

    def phase(self, name: str, total: int | None = None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total)
        else:
            self.bars.update(self.tasks[name], total=total)

    def advance(self, name: str, n: int = 1) -> None:
        if name in self.tasks:
            self.bars.advance(self.tasks[name], n)

    def update(self, name: str, completed: int) -> None:
        if name in self.tasks:
            self.bars.update(self.tasks[name], completed=completed)

    def log(self, msg: str) -> None:
        self.bars.console.print(msg)


class Prefixed:
    """Another Progress with every phase name prefixed ("up: provision")."""

    def __init__(self, inner: Progress, prefix: str):
        self.inner = inner
        self.prefix = prefix

    def phase(self, name: str, total: int | None = None) -> None:
        self.inner.phase(self.prefix + name, total)

    def advance(self, name: str, n: int = 1) -> None:
        self.inner.advance(self.prefix + name, n)

    def update(self, name: str, completed: int) -> None:
        self.inner.update(self.prefix + name, completed)

    def log(self, msg: str) -> None:
        self.inner.log(msg)
