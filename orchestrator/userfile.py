"""Files a user names (a lab, a setkey script): read whole, or one clear error.

Whatever the path turns out to be (missing, a directory, a symlink loop, unreadable,
endless like /dev/zero, too big, not UTF-8), the error says so with a line and column,
never as a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from orchestrator.errors import ConfigError


class UserFileError(ConfigError):
    """A file that cannot be read as text: where (line, col are 1-based) and why."""

    def __init__(self, path: str, message: str, line: int = 1, col: int = 1):
        self.path, self.message, self.line, self.col = path, message, line, col
        super().__init__(f"{path}:{line}:{col}: {message}")


def _size(n: int) -> str:
    return f"{n // (1 << 20)} MiB" if n >= 1 << 20 else f"{n} bytes"


def _open(path: str) -> BinaryIO:
    try:
        st = os.stat(path)  # follows symlinks: a loop fails here with ELOOP
        if stat.S_ISDIR(st.st_mode):
            raise UserFileError(path, "is a directory, not a file")
        return open(path, "rb")
    except OSError as e:
        raise UserFileError(path, e.strerror or str(e)) from None
    except ValueError as e:  # a NUL byte in the path
        raise UserFileError(path, str(e)) from None


def read_stream(f: BinaryIO, name: str, limit: int) -> bytes:
    """All of `f` (a pipe, /dev/zero, stdin), at most `limit` bytes.

    Raises:
        UserFileError: a read failed, or there were more than `limit` bytes.
    """
    try:
        data = f.read(limit + 1)
    except OSError as e:
        raise UserFileError(name, e.strerror or str(e)) from None
    if len(data) > limit:
        raise UserFileError(name, f"more than the {_size(limit)} allowed")
    return data


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The whole file, at most `limit` bytes.

    Raises:
        UserFileError: it cannot be opened or read, or holds more than `limit` bytes.
    """
    shown = str(path)
    with _open(shown) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise UserFileError(shown, f"{size} bytes: more than the {_size(limit)} allowed")
        return read_stream(f, shown, limit)


def decode(data: bytes, path: str) -> str:
    """`data` as UTF-8.

    Raises:
        UserFileError: at the line and column of the first byte that is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[start : e.start].decode("utf-8")) + 1
        msg = f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}"
        raise UserFileError(path, msg, line, col) from None


def read_text(path: str | Path, limit: int) -> str:
    """The whole file as UTF-8 text, at most `limit` bytes.

    Raises:
        UserFileError: one line, `path:line:col: message`.
    """
    return decode(read_bytes(path, limit), str(path))
