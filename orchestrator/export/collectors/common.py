"""What the collectors share: the per-target label names and a safe number lookup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGET_LABELS = ("target", "build")


def num(doc: Any, *keys: str) -> float | None:
    """doc[k1][k2]... as a number; None if any step is missing or not a number."""
    for k in keys:
        if not isinstance(doc, dict) or k not in doc:
            return None
        doc = doc[k]
    if isinstance(doc, bool) or not isinstance(doc, int | float):
        return None
    return float(doc)


def read_doc(path: Path | None) -> dict[str, Any] | None:
    """A JSON object file read fresh; None when missing or unreadable (no data, no crash)."""
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
