"""Small exceptions with context; the CLI turns them into one-line errors."""

from __future__ import annotations


class SpdlabError(Exception):
    """A user-facing error: printed as one line, exit status `exit_code`."""

    exit_code = 2


class ConfigError(SpdlabError):
    """A lab file or flag that cannot be used."""


class PfkeyError(SpdlabError):
    """A PF_KEY message that could not be built or decoded.

    Args:
        offset: byte offset of the bad field in the message, if known.
        field: name of the bad field.
    """

    def __init__(self, message: str, offset: int | None = None, field: str | None = None):
        self.offset = offset
        self.field = field
        where = []
        if offset is not None:
            where.append(f"offset {offset}")
        if field:
            where.append(field)
        super().__init__(f"{' '.join(where)}: {message}" if where else message)


class InfraError(SpdlabError):
    """A target or step that broke: carries the target and the failed step."""

    exit_code = 3

    def __init__(self, message: str, target: str | None = None, step: str | None = None):
        self.target = target
        self.step = step
        prefix = ":".join(p for p in (target, step) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class WriteError(InfraError, OSError):
    """A file spdlab could not write (a full disk, a read-only folder): the path and why.

    Still an OSError, for the callers that already treat a failed write as one.
    """

    def __init__(self, path: object, err: OSError):
        self.path = str(path)
        self.errno = err.errno
        super().__init__(f"cannot write {path}: {err.strerror or err}")


def connect_failure(path: str, e: OSError) -> str:
    """Why a Unix socket did not connect, as a user reads it: a socket file that refuses
    is one whose daemon died and left it behind."""
    import errno

    if e.errno == errno.ECONNREFUSED:
        return f"{path}: nothing listens there (its daemon is gone, the socket file was left)"
    if e.errno == errno.ENOENT:
        return f"{path}: no such socket (is the target up?)"
    return f"{path}: {e.strerror or e}"
