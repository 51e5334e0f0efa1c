"""RelayBridge — the host side of pfkey_relay: one PF_KEY socket per host client.

A QEMU target's guest runs firmware/relay/pfkey_relay on a virtio-serial port that
QEMU maps to a Unix stream socket on the host. This bridge connects to it and
serves a Unix SOCK_SEQPACKET socket, so PfkeyClient talks to the guest kernel as it
talks to netkeyd. Each accepted client gets a channel, and the relay a PF_KEY socket
of its own for it: broadcasts, registrations and dumps behave per client.

Frames on the stream (see pfkey_relay.c): u16 chan, u8 op, u8 pad, u32 len, then len
bytes; little-endian.

    python -m orchestrator.targets.relay --guest relay.sock --control control.sock \
        [--admin admin.sock --build linux-af_key --tick-ms 1000]

With --admin it also serves the SPDDUMP-polling stats adapter (orchestrator.targets.spdpoll).

For an SSH board the stream is the stdio of a command instead (`-- ssh ... pfkey_relay -`):
the bridge runs it on one end of a socketpair, writes its PID to --command-pidfile, and
exits when it does; SIGTERM stops it first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from orchestrator import atomic
from orchestrator.wait import WaitTimeout, until

FRAME = struct.Struct("<HBBI")
OPEN, MSG, CLOSE, HELLO, STAT, FLOWS = 1, 2, 3, 4, 5, 6
MAX_CHAN = 64
MAX_MSG = 0xFFFF * 8
SEND_TIMEOUT_S = 60.0  # generous: a client on a loaded machine may not run for seconds


class RelayBridge:
    """RelayBridge — serves a SOCK_SEQPACKET socket, relaying through one guest stream.

    Args:
        guest: QEMU's chardev socket for the guest's spdlab.pfkey port.
        control: the SOCK_SEQPACKET socket to serve (created once the relay says HELLO).
    """

    def __init__(self, guest: str, control: str):
        self.guest_path = guest
        self.control_path = control
        self.guest: socket.socket | None = None
        self.hello = threading.Event()
        self.closed = threading.Event()
        self._wlock = threading.Lock()
        self._clock = threading.Lock()
        self._clients: dict[int, socket.socket] = {}
        self._ask_lock = threading.Lock()
        self._answers: dict[int, bytes] = {}
        self._answered = threading.Condition()

    # ------------------------------------------------------------ guest side

    def connect(self, timeout: float) -> None:
        """Connect to QEMU's chardev socket, retrying while QEMU starts."""
        try:
            self.guest = until(self._try_connect, f"QEMU's chardev {self.guest_path}", timeout,
                               0.1)  # fmt: skip
        except WaitTimeout as e:
            raise OSError(str(e)) from None

    def _try_connect(self) -> socket.socket | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.guest_path)
        except OSError:
            s.close()
            return None
        return s

    def spawn(self, argv: list[str], pidfile: str | None) -> subprocess.Popen:
        """Run argv with its stdin and stdout on a socketpair: the relay's stream is its stdio."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child = subprocess.Popen(argv, stdin=theirs, stdout=theirs, close_fds=True)
        theirs.close()
        if pidfile:
            atomic.write_text(pidfile, f"{child.pid}\n")
        self.guest = mine
        return child

    def _recv_exact(self, n: int) -> bytes:
        assert self.guest is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self.guest.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("the guest's port closed")
            buf += chunk
        return bytes(buf)

    def send_frame(self, chan: int, op: int, data: bytes = b"") -> None:
        assert self.guest is not None
        with self._wlock:
            self.guest.sendall(FRAME.pack(chan, op, 0, len(data)) + data)

    def guest_reader(self) -> None:
        """Deliver the guest's frames to their clients until the stream ends."""
        try:
            while True:
                chan, op, _pad, length = FRAME.unpack(self._recv_exact(FRAME.size))
                data = self._recv_exact(length) if length else b""
                if op == HELLO:
                    self.hello.set()
                elif op == MSG:
                    self._deliver(chan, data)
                elif op == CLOSE:
                    self._drop(chan)
                elif op in (STAT, FLOWS):
                    with self._answered:
                        self._answers[op] = data
                        self._answered.notify_all()
        except OSError as e:
            print(f"relay: guest: {e}", file=sys.stderr, flush=True)
        finally:
            self.closed.set()
            with self._clock:
                for c in self._clients.values():
                    with contextlib.suppress(OSError):
                        c.shutdown(socket.SHUT_RDWR)

    def _deliver(self, chan: int, data: bytes) -> None:
        with self._clock:
            client = self._clients.get(chan)
        if client is None:
            return  # the client left; its socket's last messages go nowhere
        deadline = time.monotonic() + SEND_TIMEOUT_S
        while True:
            try:
                client.send(data, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                # A client that reads nothing for SEND_TIMEOUT_S would stall every other.
                if time.monotonic() > deadline:
                    print(f"relay: channel {chan}: client not reading, dropped", file=sys.stderr)
                    self._drop(chan)
                    return
                select.select([], [client], [], 0.05)
            except OSError:
                self._drop(chan)
                return

    def _drop(self, chan: int) -> None:
        with self._clock:
            client = self._clients.pop(chan, None)
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _ask(self, op: int, data: bytes = b"", timeout: float = 60.0) -> bytes:
        """One request to the relay itself (channel 0), and its answer; one at a time.

        Raises:
            OSError: no answer in time (a guest that stopped answering).
        """
        with self._ask_lock:
            with self._answered:
                self._answers.pop(op, None)
            self.send_frame(0, op, data)
            with self._answered:
                if not self._answered.wait_for(lambda: op in self._answers, timeout):
                    raise OSError(f"no answer to relay op {op} from the guest in {timeout:.0f}s")
                return self._answers.pop(op)

    def stat(self) -> str:
        """The guest kernel's counters, read fresh (pfkey_relay's STAT): "== PATH" sections."""
        return self._ask(STAT).decode(errors="replace")

    def flows(self, text: str) -> None:
        """Replace the guest's own flows (spdlab_flows): "INTERVAL_MS" then a flow a line."""
        self._ask(FLOWS, text.encode())

    # ------------------------------------------------------------ host side

    def serve(self) -> None:
        """Accept clients on the control socket, one thread each."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.control_path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        srv.bind(self.control_path + ".tmp")
        os.chmod(self.control_path + ".tmp", 0o600)
        srv.listen(16)
        os.replace(self.control_path + ".tmp", self.control_path)
        while not self.closed.is_set():
            client, _ = srv.accept()
            chan = self._attach(client)
            if chan is None:
                client.close()
                continue
            threading.Thread(target=self._client_loop, args=(chan, client), daemon=True).start()

    def _attach(self, client: socket.socket) -> int | None:
        with self._clock:
            chan = next((c for c in range(1, MAX_CHAN) if c not in self._clients), None)
            if chan is None:
                return None
            self._clients[chan] = client
        self.send_frame(chan, OPEN)
        return chan

    def _client_loop(self, chan: int, client: socket.socket) -> None:
        try:
            while True:
                data = client.recv(MAX_MSG)
                if not data and _hung_up(client):
                    break
                # An empty datagram is a message too: the guest's PF_KEY socket refuses it.
                self.send_frame(chan, MSG, data)
        except OSError:
            pass
        finally:
            # CLOSE goes out before the number is free: a client attached next may get the
            # same channel, and its OPEN must reach the guest after this CLOSE, never before.
            with self._clock:
                mine = self._clients.get(chan) is client
            if mine and not self.closed.is_set():
                with contextlib.suppress(OSError):
                    self.send_frame(chan, CLOSE)
            with self._clock:
                if self._clients.get(chan) is client:
                    del self._clients[chan]
            client.close()


def _hung_up(sock: socket.socket) -> bool:
    """recv() gave b"": a closed peer, unless it was a zero-length datagram."""
    p = select.poll()
    p.register(sock, select.POLLRDHUP)
    return any(ev & (select.POLLHUP | select.POLLRDHUP | select.POLLERR) for _, ev in p.poll(0))


def daemonize(pidfile: str | None) -> None:
    """Fork into a new session (init reaps it); the parent exits once the pidfile is written."""
    pid = os.fork()
    if pid > 0:
        if pidfile:
            with contextlib.suppress(WaitTimeout):
                until(lambda: os.path.exists(pidfile), f"the daemon's {pidfile}", 60, 0.01)
        os._exit(0)
    os.setsid()
    if pidfile:
        atomic.write_text(pidfile, f"{os.getpid()}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.targets.relay")
    p.add_argument("--guest", help="QEMU's chardev socket")
    p.add_argument("--control", required=True, help="the SOCK_SEQPACKET socket to serve")
    p.add_argument("--admin", help="serve the SPDDUMP-polling stats adapter here")
    p.add_argument("--build", default="linux-af_key")
    p.add_argument("--kernel", default="")
    p.add_argument("--meta", help="boot.json: the kernel build's versions, for `version`")
    p.add_argument("--flavour", default="linux", help="the kernel's sockaddr flavour")
    p.add_argument("--tree", default="linux", help="the tree `version` reports")
    p.add_argument("--tick-ms", type=int, default=1000)
    p.add_argument("--pidfile")
    p.add_argument("--daemon", action="store_true", help="fork; return once the pidfile is written")
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--command-pidfile", help="where the command's PID goes")
    p.add_argument("command", nargs="*", help="after --: the command whose stdio is the stream")
    args = p.parse_args(argv)
    if bool(args.guest) == bool(args.command):
        p.error("give either --guest or a command after --")
    if args.daemon:
        daemonize(args.pidfile)
    elif args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    bridge = RelayBridge(args.guest or "", args.control)
    if args.command:
        child = bridge.spawn(args.command, args.command_pidfile)
        signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), os._exit(0)))
    else:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        bridge.connect(args.connect_timeout)
    threading.Thread(target=bridge.guest_reader, daemon=True).start()
    while not bridge.hello.wait(0.5):
        if bridge.closed.is_set():
            return 1
    print(f"relay: the guest's relay is up; serving {args.control}", file=sys.stderr, flush=True)
    if args.admin:
        from orchestrator.targets.spdpoll import SpdPoller

        poller = SpdPoller(args.control, build=args.build, kernel=args.kernel,
                           tick_ms=args.tick_ms, flavour=args.flavour, tree=args.tree,
                           kstat=bridge.stat if args.guest else None,
                           flows=bridge.flows if args.guest else None)  # fmt: skip
        if args.meta:
            poller.meta = json.loads(Path(args.meta).read_text()).get("meta", {})
        threading.Thread(target=poller.serve, args=(args.admin,), daemon=True).start()
    threading.Thread(target=bridge.serve, daemon=True).start()
    bridge.closed.wait()
    return 1


if __name__ == "__main__":
    sys.exit(main())
