"""The progress bars every verb draws (rich), behind orchestrator.progress.RichProgress."""

from __future__ import annotations

from typing import Any


def bars(console: Any, disable: bool = False) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    class Lazy(Progress):
        """Drawn from the first bar on: a verb that stops before any (a precondition that
        fails) prints its one line and nothing else."""

        def __enter__(self) -> Lazy:
            return self

        def add_task(self, *args: Any, **kw: Any) -> Any:
            if not self.live.is_started:
                self.start()
            return super().add_task(*args, **kw)

        def stop(self) -> None:
            if self.live.is_started:
                super().stop()

    cols = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())  # fmt: skip
    return Lazy(*cols, console=console, disable=disable)
