"""PfkeyClient: a PF_KEY v2 endpoint on netkeyd's control socket (Unix SOCK_SEQPACKET).

Life cycle:
    - connect in the constructor (or `with PfkeyClient(path) as c:`);
    - request()/pipeline()/dump() assign seq and pid, and wait for the matching replies;
    - messages that match nothing being waited for (other sockets' broadcasts, SPDEXPIRE)
      are kept for recv();
    - close().
"""

from __future__ import annotations

import collections
import dataclasses
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Concatenate, ParamSpec

from orchestrator.errors import InfraError, PfkeyError, connect_failure
from orchestrator.pfkey import messages, wire
from orchestrator.pfkey.codec import Msg, decode, encode
from orchestrator.pfkey.wire import MsgType

# sadb_msg_len is 16 bits of 8-byte units: no message is longer.
MAX_MSG = 0xFFFF * 8
# Unclaimed messages kept for recv(); older ones are dropped past this.
MAX_PENDING = 4096
DUMP_TYPES = (MsgType.DUMP, MsgType.X_SPDDUMP)
_HDR = struct.Struct("<BBBBHHII")
_SEQ = struct.Struct("<I")


class PfkeyReplyError(PfkeyError):
    """A reply with sadb_msg_errno set: 'SPDADD: File exists (EEXIST)'."""

    exit_code = 1

    def __init__(self, reply: Msg, context: str | None = None):
        self.reply = reply
        self.errno = reply.errno
        text = f"{wire.type_name(reply.type)}: {wire.errno_text(reply.errno)}"
        super().__init__(f"{context}: {text}" if context else text)


class PfkeyTimeout(PfkeyError):
    """No (matching) reply in time: netkeyd rejected the message silently or dropped a reply."""

    exit_code = 3


class PfkeyDumpIncomplete(PfkeyError):
    """A dump whose seq countdown skipped entries; `entries` holds what did arrive."""

    exit_code = 3

    def __init__(self, message: str, entries: list[Msg]):
        self.entries = entries
        super().__init__(message)


P = ParamSpec("P")


def _requester(builder: Callable[P, Msg]) -> Callable[Concatenate[PfkeyClient, P], Msg]:
    def method(self: PfkeyClient, *args: P.args, **kwargs: P.kwargs) -> Msg:
        return self.request(builder(*args, **kwargs))

    method.__name__ = builder.__name__
    method.__doc__ = f"request(messages.{builder.__name__}(...)): the reply, or PfkeyReplyError."
    return method


def _dumper(builder: Callable[P, Msg]) -> Callable[Concatenate[PfkeyClient, P], list[Msg]]:
    def method(self: PfkeyClient, *args: P.args, **kwargs: P.kwargs) -> list[Msg]:
        return self.dump(builder(*args, **kwargs))

    method.__name__ = builder.__name__
    method.__doc__ = f"dump(messages.{builder.__name__}(...)): one message per entry."
    return method


class PfkeyClient:
    """PfkeyClient — speaks PF_KEY v2 to a netkeyd control socket.

    Args:
        path: the --control socket.
        timeout: seconds to wait for each reply.
        flavour: sockaddr flavour, "bsd" for netkeyd.
    """

    def __init__(self, path: str, timeout: float = 5.0, flavour: str = "bsd"):
        self.path = path
        self.timeout = timeout
        self.flavour = flavour
        self.pid = os.getpid()
        self._seq = 0
        self._pending: collections.deque[Msg] = collections.deque(maxlen=MAX_PENDING)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise InfraError(connect_failure(path, e), step="pfkey connect") from None

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> PfkeyClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, msg: Msg) -> None:
        """Send msg exactly as given (seq and pid included)."""
        data = encode(msg, self.flavour)
        try:
            self._sock.send(data)
        except OSError as e:
            raise InfraError(f"{self.path}: {e.strerror or e}", step="pfkey send") from None

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are, however malformed (orchestrator.pfkey.malformed)."""
        try:
            self._sock.send(data)
        except OSError as e:
            raise InfraError(f"{self.path}: {e.strerror or e}", step="pfkey send") from None

    def recv_raw(self, timeout: float) -> bytes:
        """The next message from the socket, undecoded; PfkeyTimeout if none comes."""
        # settimeout(0) would mean non-blocking, which raises BlockingIOError instead.
        self._sock.settimeout(max(timeout, 1e-6))
        try:
            data = self._sock.recv(MAX_MSG)
        except TimeoutError:
            raise PfkeyTimeout(f"no message from {self.path} within {timeout:.1f}s") from None
        except OSError as e:
            raise InfraError(f"{self.path}: {e.strerror or e}", step="pfkey recv") from None
        if not data:
            raise InfraError(f"{self.path}: connection closed", step="pfkey recv")
        return data

    def recv(self, timeout: float | None = None) -> Msg:
        """The next message nobody waited for, else the next one from the socket."""
        if self._pending:
            return self._pending.popleft()
        return self._recv_sock(self.timeout if timeout is None else timeout)

    def _recv_sock(self, timeout: float) -> Msg:
        return decode(self.recv_raw(timeout), self.flavour)

    def _wait(self, match: Callable[[Msg], bool], what: str) -> Msg:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PfkeyTimeout(f"no {what} reply within {self.timeout:.1f}s")
            try:
                msg = self._recv_sock(left)
            except PfkeyTimeout:
                raise PfkeyTimeout(f"no {what} reply within {self.timeout:.1f}s") from None
            if match(msg):
                return msg
            self._pending.append(msg)

    def _stamp(self, msg: Msg) -> Msg:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return dataclasses.replace(msg, seq=self._seq, pid=self.pid)

    def _is_reply(self, reply: Msg, req: Msg) -> bool:
        if reply.pid != self.pid or reply.type != req.type:
            return False
        # KAME answers SPDGET through key_setdumpsp(..., seq 0, pid): only errors echo seq.
        return reply.seq == req.seq or (req.type == MsgType.X_SPDGET and reply.seq == 0)

    def _claim(self, reply: Msg, inflight: dict[tuple[int, int], int]) -> tuple[int, int] | None:
        """The in-flight request reply answers; replies come in request order, so an
        SPDGET answer without its seq belongs to the oldest SPDGET in flight."""
        if reply.pid != self.pid:
            return None
        if (reply.seq, reply.type) in inflight:
            return (reply.seq, reply.type)
        if reply.type == MsgType.X_SPDGET and reply.seq == 0:
            return next((k for k in inflight if k[1] == MsgType.X_SPDGET), None)
        return None

    # ------------------------------------------------------------ exchanges

    def request(self, msg: Msg) -> Msg:
        """Send msg with a fresh seq and our pid, and return its reply.

        Raises:
            PfkeyReplyError: the reply carries sadb_msg_errno.
            PfkeyTimeout: no reply (netkeyd drops malformed messages without one).
        """
        if msg.type in DUMP_TYPES:
            raise PfkeyError(f"{wire.type_name(msg.type)} has many replies: use dump()")
        req = self._stamp(msg)
        self.send(req)
        reply = self._wait(lambda r: self._is_reply(r, req), wire.type_name(req.type))
        if reply.errno:
            raise PfkeyReplyError(reply)
        return reply

    def pipeline(self, msgs: Iterable[Msg], window: int = 64) -> list[Msg]:
        """Send msgs with at most `window` unanswered at a time; replies in request order.

        netkeyd drops a reply that does not fit our socket buffer, so the window is the
        only flow control. Error replies are returned, not raised.
        """
        if window < 1:
            raise PfkeyError(f"window {window} must be at least 1")
        todo = iter(msgs)
        replies: list[Msg | None] = []
        inflight: dict[tuple[int, int], int] = {}
        exhausted = False
        while True:
            while not exhausted and len(inflight) < window:
                msg = next(todo, None)
                if msg is None:
                    exhausted = True
                    break
                if msg.type in DUMP_TYPES:
                    raise PfkeyError(f"{wire.type_name(msg.type)} cannot be pipelined")
                req = self._stamp(msg)
                self.send(req)
                inflight[(req.seq, req.type)] = len(replies)
                replies.append(None)
            if not inflight:
                break
            reply = self._wait(
                lambda r: self._claim(r, inflight) is not None, f"{len(inflight)} pipelined"
            )
            key = self._claim(reply, inflight)
            assert key is not None
            replies[inflight.pop(key)] = reply
        return [r for r in replies if r is not None]

    def prepare(self, msgs: Iterable[Msg]) -> list[bytearray]:
        """Encode msgs ahead of time, stamped with our pid, for send_prepared()."""
        out = []
        for msg in msgs:
            if msg.type in DUMP_TYPES:
                raise PfkeyError(f"{wire.type_name(msg.type)} cannot be pipelined")
            out.append(bytearray(encode(dataclasses.replace(msg, pid=self.pid), self.flavour)))
        return out

    def send_prepared(self, datas: list[bytearray], window: int = 256) -> list[int]:
        """pipeline() for messages encoded by prepare(): only reply headers are parsed.

        For timing-sensitive bursts (a mass delete measured in timer ticks), where
        encoding and decoding would cost more than the kernel's work.

        Returns:
            Each reply's sadb_msg_errno, in request order.
        """
        errnos: list[int] = [-1] * len(datas)
        inflight: dict[tuple[int, int], int] = {}
        nxt = 0
        self._sock.settimeout(self.timeout)
        while nxt < len(datas) or inflight:
            while nxt < len(datas) and len(inflight) < window:
                data = datas[nxt]
                self._seq = self._seq % 0xFFFFFFFF + 1
                _SEQ.pack_into(data, 8, self._seq)
                self._sock.send(data)
                inflight[(self._seq, data[1])] = nxt
                nxt += 1
            try:
                raw = self._sock.recv(MAX_MSG)
            except TimeoutError:
                raise PfkeyTimeout(f"no reply within {self.timeout:.1f}s") from None
            if len(raw) < 16:
                continue
            _ver, mtype, errno, _sat, _len, _res, seq, pid = _HDR.unpack_from(raw)
            idx = inflight.pop((seq, mtype), None) if pid == self.pid else None
            if idx is None:
                self._pending.append(decode(raw, self.flavour))
            else:
                errnos[idx] = errno
        return errnos

    def dump(self, msg: Msg | int) -> list[Msg]:
        """SPDDUMP or DUMP: the entries, the last with seq 0; ENOENT is [].

        Raises:
            PfkeyDumpIncomplete: the countdown skipped entries (replies dropped).
        """
        req = self._stamp(msg if isinstance(msg, Msg) else Msg(msg))
        self.send(req)
        entries: list[Msg] = []
        gaps = 0
        name = wire.type_name(req.type)
        while True:
            try:
                reply = self._wait(lambda r: r.pid == self.pid and r.type == req.type, name)
            except PfkeyTimeout:
                if not entries:
                    raise
                raise PfkeyDumpIncomplete(
                    f"{name}: {len(entries)} entries, then nothing after seq {entries[-1].seq}",
                    entries,
                ) from None
            if reply.errno:
                if reply.errno == wire.Errno.ENOENT and not entries:
                    return []
                raise PfkeyReplyError(reply)
            if entries and not self._next_in_dump(entries[-1].seq, reply.seq):
                gaps += 1
            entries.append(reply)
            if reply.seq == 0:
                break
        if gaps:
            raise PfkeyDumpIncomplete(f"{name}: {gaps} gaps in the seq countdown", entries)
        return entries

    def _next_in_dump(self, prev: int, seq: int) -> bool:
        """KAME counts a dump's seq down to 0; Linux's af_key counts up from 1 and sends
        the last entry with seq 0."""
        if self.flavour == "linux":
            return seq in (prev + 1, 0)
        return seq == prev - 1

    # ------------------------------------------------------------ builders

    register = _requester(messages.register)
    spdadd = _requester(messages.spdadd)
    spddelete = _requester(messages.spddelete)
    spddelete2 = _requester(messages.spddelete2)
    spdget = _requester(messages.spdget)
    spdflush = _requester(messages.spdflush)
    spddump = _dumper(messages.spddump)
    add_sa = _requester(messages.add_sa)
    update_sa = _requester(messages.update_sa)
    delete_sa = _requester(messages.delete_sa)
    deleteall_sa = _requester(messages.deleteall_sa)
    get_sa = _requester(messages.get_sa)
    flush_sa = _requester(messages.flush_sa)
    dump_sa = _dumper(messages.dump_sa)
