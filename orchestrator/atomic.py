"""Atomic file writes, written once: a reader sees the old file or the new one, never half.

The temporary file lives in the target's folder (same filesystem, so os.replace is
atomic) and is fsynced before the rename: results survive a crash right after.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.errors import WriteError


def write_bytes(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically.

    Raises:
        WriteError: the write failed (ENOSPC, EROFS, ...); `path` is as it was.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    write_bytes(path, text.encode(), mode)


def write_json(path: Path | str, doc: Any, indent: int | None = 2) -> None:
    """Replace `path` with `doc` as JSON atomically (a trailing newline, sorted as given)."""
    write_text(path, json.dumps(doc, indent=indent) + "\n")
