"""What every benchmark script does with its result: print the Markdown section, write it
(and the numbers as JSON) where asked, atomically."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import atomic


def publish(md: str, out: str | Path | None, res: Any = None, json_path: str | None = None) -> int:
    """Print `md`; write it to `out` and `res` to `json_path` if given. Exit status 0."""
    print(md)
    if json_path:
        atomic.write_json(json_path, res)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out, md if md.endswith("\n") else md + "\n")
    return 0
