"""The progress bars every verb draws (rich), behind orchestrator.progress.RichProgress."""

from __future__ import annotations

from typing import Any


def bars(console: Any, disable: bool = False) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    cols = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())  # fmt: skip
    return Progress(*cols, console=console, disable=disable)
