"""PfkeyClient: matching, pipelining and dumps against a scripted fake, then a real netkeyd."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from orchestrator.errors import PfkeyError
from orchestrator.pfkey import messages
from orchestrator.pfkey.client import (
    PfkeyClient,
    PfkeyDumpIncomplete,
    PfkeyReplyError,
    PfkeyTimeout,
)
from orchestrator.pfkey.codec import Address, IpsecRequest, Msg, Policy, decode, encode
from orchestrator.pfkey.wire import Dir, EncAlg, Errno, ExtType, MsgType, PolicyType, SaType
from orchestrator.wait import WaitTimeout, until

REPO = Path(__file__).resolve().parents[1]
Handler = Callable[[Msg], list[Msg]]


class FakeNetkeyd:
    """A SEQPACKET listener on a thread; answers requests with `handler(msg)`.

    It replies only once the client has gone quiet for `idle` seconds, and in reverse
    order, so it sees how many requests a client keeps in flight and whether the client
    can put replies back in order.
    """

    def __init__(self, path: Path, handler: Handler, idle: float = 0.02, reverse: bool = True):
        self.handler = handler
        self.idle = idle
        self.reverse = reverse
        self.max_inflight = 0
        self.received: list[Msg] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        queue: list[Msg] = []
        conn.settimeout(self.idle)
        with conn:
            while True:
                try:
                    data = conn.recv(1 << 19)
                except TimeoutError:
                    for msg in reversed(queue) if self.reverse else queue:
                        for reply in self.handler(msg):
                            conn.send(encode(reply))
                    queue.clear()
                    continue
                except OSError:
                    return
                if not data:
                    return
                msg = decode(data)
                self.received.append(msg)
                queue.append(msg)
                self.max_inflight = max(self.max_inflight, len(queue))

    def close(self) -> None:
        self.listener.close()


def echo(msg: Msg, **changes: object) -> Msg:
    return dataclasses.replace(msg, **changes)  # type: ignore[arg-type]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[Handler], Path]]:
    servers: list[FakeNetkeyd] = []

    def start(handler: Handler) -> Path:
        path = tmp_path / f"fake{len(servers)}.sock"
        servers.append(FakeNetkeyd(path, handler))
        return path

    yield start
    for server in servers:
        server.close()


# ---------------------------------------------------------------- against the fake


def test_request_skips_broadcasts_and_keeps_them(fake: Callable[[Handler], Path]) -> None:
    def handler(msg: Msg) -> list[Msg]:
        return [
            echo(msg, pid=999),  # another socket's SPDADD, broadcast to all
            echo(msg, seq=msg.seq + 100),  # ours, but not this request
            Msg(MsgType.X_SPDEXPIRE, pid=0),  # to registered sockets
            echo(msg, reserved=0),  # the reply
        ]

    with PfkeyClient(str(fake(handler)), timeout=2) as client:
        reply = client.spdadd("10.0.1.0/24", "10.0.2.0/24", policy_type=PolicyType.NONE)
        assert (reply.type, reply.seq, reply.pid) == (MsgType.X_SPDADD, 1, os.getpid())
        skipped = [client.recv(0.5) for _ in range(3)]
        assert [(m.pid, m.seq) for m in skipped] == [(999, 1), (os.getpid(), 101), (0, 0)]
        assert skipped[2].type == MsgType.X_SPDEXPIRE
        assert client.request(messages.spdflush()).seq == 2


def test_error_reply_raises_with_errno(fake: Callable[[Handler], Path]) -> None:
    path = fake(lambda m: [echo(m, errno=Errno.EEXIST)])
    with PfkeyClient(str(path), timeout=2) as client, pytest.raises(PfkeyReplyError) as e:
        client.spdadd("10.0.1.0/24", "10.0.2.0/24")
    assert e.value.errno == Errno.EEXIST
    assert str(e.value) == "SPDADD: File exists (EEXIST)"
    assert e.value.exit_code == 1


def test_no_reply_times_out(fake: Callable[[Handler], Path]) -> None:
    with PfkeyClient(str(fake(lambda m: [])), timeout=0.2) as client:
        with pytest.raises(PfkeyTimeout, match="no SPDFLUSH reply"):
            client.spdflush()
        with pytest.raises(PfkeyTimeout):
            client.recv(0.05)


def test_pipeline_keeps_to_the_window_and_orders_replies(
    fake: Callable[[Handler], Path],
) -> None:
    def handler(msg: Msg) -> list[Msg]:
        assert msg.policy is not None
        return [echo(msg, errno=Errno.EEXIST if msg.policy.id % 3 == 0 else 0)]

    path = fake(handler)
    msgs = [messages.spdadd("10.0.0.1", "10.0.0.2", id=i + 1) for i in range(20)]
    with PfkeyClient(str(path), timeout=2) as client:
        replies = client.pipeline(msgs, window=4)
        assert [r.policy.id for r in replies if r.policy] == list(range(1, 21))
        assert [r.errno for r in replies] == [17 if (i + 1) % 3 == 0 else 0 for i in range(20)]
        assert [r.seq for r in replies] == list(range(1, 21))
        assert client.pipeline([], window=4) == []
        with pytest.raises(PfkeyError, match="use dump"):
            client.request(messages.spddump())


def test_pipeline_window_seen_by_the_server(tmp_path: Path) -> None:
    server = FakeNetkeyd(tmp_path / "w.sock", lambda m: [m])
    try:
        with PfkeyClient(str(tmp_path / "w.sock"), timeout=2) as client:
            client.pipeline([messages.spdflush() for _ in range(50)], window=8)
        assert server.max_inflight == 8
        assert len(server.received) == 50
    finally:
        server.close()


def test_spdget_reply_carries_seq_0(tmp_path: Path) -> None:
    # KAME builds the SPDGET answer with key_setdumpsp(sp, SPDGET, 0, pid).
    def handler(msg: Msg) -> list[Msg]:
        assert msg.policy is not None
        if msg.policy.id == 99:
            return [echo(msg, errno=Errno.ENOENT)]
        return [echo(msg, seq=0)]

    server = FakeNetkeyd(tmp_path / "g.sock", handler, reverse=False)
    try:
        with PfkeyClient(str(tmp_path / "g.sock"), timeout=2) as client:
            got = client.spdget(5)
            assert got.policy is not None and got.policy.id == 5
            with pytest.raises(PfkeyReplyError, match="ENOENT"):
                client.spdget(99)
            ids = [7, 99, 8, 9]
            replies = client.pipeline([messages.spdget(i) for i in ids], window=4)
            assert [r.policy.id for r in replies if r.policy] == ids
            assert [r.errno for r in replies] == [0, Errno.ENOENT, 0, 0]
    finally:
        server.close()


def dump_handler(seqs: list[int], errno: int = 0) -> Handler:
    def handler(msg: Msg) -> list[Msg]:
        if errno:
            return [echo(msg, errno=errno)]
        entries = []
        for s in seqs:
            entry = messages.spdadd(f"10.0.{s}.0/24", "10.9.0.0/16")
            entries.append(echo(entry, type=MsgType.X_SPDDUMP, seq=s, pid=msg.pid, reserved=s + 1))
        return entries

    return handler


def test_dump_collects_until_seq_0(fake: Callable[[Handler], Path]) -> None:
    with PfkeyClient(str(fake(dump_handler([2, 1, 0]))), timeout=2) as client:
        entries = client.spddump()
    assert [(m.seq, m.reserved) for m in entries] == [(2, 3), (1, 2), (0, 1)]


def test_dump_enoent_is_empty(fake: Callable[[Handler], Path]) -> None:
    with PfkeyClient(str(fake(dump_handler([], Errno.ENOENT))), timeout=2) as client:
        assert client.spddump() == []
        assert client.dump_sa() == []
        assert client.dump(MsgType.X_SPDDUMP) == []


def test_dump_with_a_gap_is_incomplete(fake: Callable[[Handler], Path]) -> None:
    client = PfkeyClient(str(fake(dump_handler([3, 1, 0]))), timeout=2)
    with client, pytest.raises(PfkeyDumpIncomplete) as e:
        client.spddump()
    assert [m.seq for m in e.value.entries] == [3, 1, 0]


def test_dump_without_its_last_entry_is_incomplete(fake: Callable[[Handler], Path]) -> None:
    client = PfkeyClient(str(fake(dump_handler([2, 1]))), timeout=0.3)
    with client, pytest.raises(PfkeyDumpIncomplete, match="nothing after seq 1"):
        client.spddump()


def spdlab(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_cli_reports_each_failed_statement(fake: Callable[[Handler], Path]) -> None:
    def handler(msg: Msg) -> list[Msg]:
        if msg.type == MsgType.X_SPDDUMP:
            return [echo(msg, errno=Errno.ENOENT)]
        if msg.src is not None and str(msg.src.ip) == "10.0.0.3":
            return [echo(msg, errno=Errno.EEXIST)]
        return [msg]

    path = fake(handler)
    text = (
        "spdadd 10.0.0.1 10.0.0.2 any -P out none;\n"
        "spdadd 10.0.0.2 10.0.0.1 any -P in none;\n"
        "spdadd 10.0.0.3 10.0.0.4 any -P out none;\n"
        "spddump;\n"
    )
    res = spdlab("setkey", "-s", str(path), "-c", stdin=text)
    assert res.returncode == 1
    assert res.stderr == "spdlab: line 3: SPDADD: File exists (EEXIST)\n"
    assert res.stdout == "No SPD entries.\n"


# ---------------------------------------------------------------- against a real netkeyd

NETKEYD = REPO / "firmware" / "build" / "netkey" / "netkeyd"


@pytest.fixture
def netkeyd(tmp_path: Path) -> Iterator[Path]:
    if not NETKEYD.exists():
        pytest.fail(f"{NETKEYD} is not built: make -C firmware BUILD=netkey")
    control = tmp_path / "control.sock"
    log = (tmp_path / "netkeyd.log").open("w")
    proc = subprocess.Popen(
        [str(NETKEYD), "--control", str(control), "--tick-ms", "0"], stdout=log, stderr=log
    )
    try:
        try:
            until(control.exists, "netkeyd's control socket", 60, alive=lambda: proc.poll() is None)
        except WaitTimeout as e:
            pytest.fail(f"netkeyd did not start: {e}: {(tmp_path / 'netkeyd.log').read_text()}")
        yield control
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


TUNNEL = IpsecRequest(50, 2, 2, 0, ip_address("192.0.2.1"), ip_address("192.0.2.2"))


def test_netkeyd_spdadd_dump_delete2(netkeyd: Path) -> None:
    with PfkeyClient(str(netkeyd)) as client:
        assert client.spddump() == []
        reply = client.spdadd(
            "10.0.1.0/24", "10.0.2.0/24", 255, Dir.OUT, PolicyType.IPSEC, [TUNNEL]
        )
        assert reply.type == MsgType.X_SPDADD and reply.errno == 0
        assert reply.policy is not None and reply.policy.id >= 0x4000
        pid = reply.policy.id

        (entry,) = client.spddump()
        assert (entry.seq, entry.pid, entry.reserved) == (0, os.getpid(), 1)
        assert entry.src == Address(ip_address("10.0.1.0"), 24)
        assert entry.dst == Address(ip_address("10.0.2.0"), 24)
        assert entry.policy == Policy(PolicyType.IPSEC, Dir.OUT, pid, [TUNNEL])
        assert ExtType.LIFETIME_CURRENT in entry.exts and ExtType.LIFETIME_HARD in entry.exts

        got = client.spdget(pid)
        assert got.policy is not None and got.policy.id == pid
        (again,) = client.pipeline([messages.spdget(pid)])
        assert again.policy == got.policy

        client.spddelete2(pid)
        assert client.spddump() == []
        with pytest.raises(PfkeyReplyError) as e:
            client.spdget(pid)
        assert e.value.errno == Errno.ENOENT


def test_netkeyd_errors(netkeyd: Path) -> None:
    with PfkeyClient(str(netkeyd)) as client:
        client.spdadd("10.0.1.0/24", "10.0.2.0/24", policy_type=PolicyType.NONE)
        with pytest.raises(PfkeyReplyError) as e:
            client.spdadd("10.0.1.0/24", "10.0.2.0/24", policy_type=PolicyType.DISCARD)
        assert e.value.errno == Errno.EEXIST
        assert str(e.value) == "SPDADD: File exists (EEXIST)"
        # KAME: SPDDELETE of a selector that is not there is EINVAL, not ENOENT.
        with pytest.raises(PfkeyReplyError) as e:
            client.spddelete("10.0.9.0/24", "10.0.2.0/24", 255, Dir.OUT)
        assert e.value.errno == Errno.EINVAL
        with pytest.raises(PfkeyReplyError) as e:
            client.spdadd("10.0.3.0/24", "10.0.2.0/24", policy_type=PolicyType.IPSEC)
        assert e.value.errno == Errno.EINVAL  # IPSEC with no request
        client.spddelete("10.0.1.0/24", "10.0.2.0/24", 255, Dir.OUT)
        assert client.spddump() == []


def test_netkeyd_pipeline_dump_flush(netkeyd: Path) -> None:
    msgs = [
        messages.spdadd(
            f"10.1.{i // 250}.{i % 250}", "10.2.0.0/16", 6, Dir.IN + i % 2, PolicyType.NONE, sport=i
        )
        for i in range(500)
    ]
    with PfkeyClient(str(netkeyd)) as client:
        replies = client.pipeline(msgs, window=32)
        assert [r.errno for r in replies] == [0] * 500
        entries = client.spddump()
        assert [m.seq for m in entries] == list(range(499, -1, -1))
        assert {m.src.port for m in entries if m.src} == set(range(500))
        # KAME lists dir 0, 1, 2 in order: every IN entry before every OUT one.
        dirs = [m.policy.dir for m in entries if m.policy]
        assert dirs == sorted(dirs)
        client.spdflush()
        assert client.spddump() == []


def test_netkeyd_sa_life_cycle(netkeyd: Path) -> None:
    key = bytes(range(16))
    with PfkeyClient(str(netkeyd)) as client:
        assert client.dump_sa() == []
        added = client.add_sa(
            "192.0.2.1", "192.0.2.2", 0x1000, encrypt=EncAlg.AES_CBC, enc_key=key, reqid=7
        )
        assert added.sa is not None and added.sa.spi == 0x1000
        assert ExtType.KEY_ENCRYPT not in added.exts  # the ADD reply omits keys
        got = client.get_sa("192.0.2.1", "192.0.2.2", 0x1000)
        assert got.satype == SaType.ESP and got.sa is not None and got.sa.spi == 0x1000
        (entry,) = client.dump_sa()
        assert entry.seq == 0
        client.delete_sa("192.0.2.1", "192.0.2.2", 0x1000)
        assert client.dump_sa() == []


def test_netkeyd_silently_drops_malformed(netkeyd: Path) -> None:
    bad = bytearray(encode(messages.spdflush()))
    bad[0] = 3  # version 3: rejected outright, no reply
    with PfkeyClient(str(netkeyd), timeout=0.3) as client:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        raw.connect(str(netkeyd))
        raw.send(bytes(bad))
        # netkeyd answers in order: had it answered the bad message, that answer would
        # come before the echo of this good one.
        raw.send(encode(dataclasses.replace(messages.spdflush(), seq=77)))
        raw.settimeout(30)
        first = decode(raw.recv(1 << 16))
        assert (first.type, first.seq) == (MsgType.X_SPDFLUSH, 77)
        raw.close()
        assert client.spddump() == []


def test_netkeyd_cli(netkeyd: Path, tmp_path: Path) -> None:
    conf = tmp_path / "spd.conf"
    conf.write_text(
        "spdadd 10.0.1.0/24[any] 10.0.2.0/24[any] any\n"
        "  -P out ipsec esp/tunnel/192.0.2.1-192.0.2.2/require ;\n"
        "spdadd 10.0.1.0/24[any] 10.0.2.0/24[any] any -P out none ;\n"
    )
    res = spdlab("setkey", "-s", str(netkeyd), "-f", str(conf))
    assert res.returncode == 1
    assert res.stderr == "spdlab: line 3: SPDADD: File exists (EEXIST)\n"
    res = spdlab("setkey", "-s", str(netkeyd), "-DP")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert lines[:3] == [
        "10.0.1.0/24[any] 10.0.2.0/24[any] any",
        "\tout ipsec",
        "\tesp/tunnel/192.0.2.1-192.0.2.2/require",
    ]
    assert lines[3] == "\tcreated: Jan  1 00:00:00 1970  lastused: Jan  1 00:00:00 1970"
    assert lines[-1] == "\trefcnt=1"
    res = spdlab("setkey", "-s", str(netkeyd), "-FP")
    assert res.returncode == 0
    res = spdlab("setkey", "-s", str(netkeyd), "-D", "-P", "--json")
    assert (res.returncode, res.stdout) == (0, "[]\n")
