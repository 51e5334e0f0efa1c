"""netkeyd's PF_KEY semantics against spec §2, §3 and §5: errors, ids, routing, robustness.

Each test runs on the plain and the ASan+UBSan binary.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.netkeyd import Netkeyd
from orchestrator.pfkey import messages
from orchestrator.pfkey.client import PfkeyClient, PfkeyReplyError, PfkeyTimeout
from orchestrator.pfkey.codec import IpsecRequest, Msg, decode, encode
from orchestrator.pfkey.wire import Dir, MsgType, PolicyType, SaType

REQ = IpsecRequest(
    50, 2, 2, 0, ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
)


@pytest.fixture(params=[False, True], ids=["plain", "asan"])
def asan(request: pytest.FixtureRequest) -> bool:
    return request.param


def start(build: str, tmp_path: Path, asan: bool) -> Iterator[Netkeyd]:
    nk = Netkeyd(build, tmp_path / build, tick_ms=0, asan=asan).start()
    try:
        yield nk
    finally:
        status = nk.stop()
        assert nk.sanitizer_report() == ""
        assert status == 0


@pytest.fixture
def netkey(tmp_path: Path, asan: bool) -> Iterator[Netkeyd]:
    yield from start("netkey", tmp_path, asan)


@pytest.fixture
def netipsec(tmp_path: Path, asan: bool) -> Iterator[Netkeyd]:
    yield from start("netipsec", tmp_path, asan)


def add(c: PfkeyClient, i: int, **kw: object) -> int:
    r = c.request(messages.spdadd(f"10.1.0.{i}/32", "10.2.0.0/16", requests=[REQ], **kw))
    assert r.policy is not None
    return r.policy.id


def err(c: PfkeyClient, msg: Msg) -> int:
    with pytest.raises(PfkeyReplyError) as e:
        c.request(msg)
    return e.value.errno


def test_error_answers(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        add(c, 1)
        assert err(c, messages.spdadd("10.1.0.1/32", "10.2.0.0/16", requests=[REQ])) == errno.EEXIST
        assert err(c, messages.spddelete("10.1.0.9/32", "10.2.0.0/16")) == errno.EINVAL
        assert err(c, messages.spddelete2(0x7777)) == errno.EINVAL
        assert err(c, messages.spdget(0x7777)) == errno.ENOENT
        for ptype in (PolicyType.ENTRUST, PolicyType.BYPASS):
            assert err(c, messages.spdadd("10.3.0.0/16", "10.4.0.0/16", policy_type=ptype)) == (
                errno.EINVAL
            )
        # IPSEC with no request; a direction other than in/out.
        assert err(c, messages.spdadd("10.3.0.0/16", "10.4.0.0/16")) == errno.EINVAL
        assert err(c, messages.spdadd("10.3.0.0/16", "10.4.0.0/16", dir=Dir.ANY)) == errno.EINVAL
        # More requests than a policy holds.
        assert err(c, messages.spdadd("10.3.0.0/16", "10.4.0.0/16", requests=[REQ] * 5)) == (
            errno.EINVAL
        )
        c.request(messages.spdflush())
        assert c.spddump() == []  # ENOENT on an empty SPD is an empty dump


def test_empty_spddump_is_enoent(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        c.send(Msg(MsgType.X_SPDDUMP, seq=5, pid=1))
        reply = c.recv()
        assert (reply.type, reply.errno, reply.seq) == (MsgType.X_SPDDUMP, errno.ENOENT, 5)


def test_echoed_errors(netkey: Netkeyd) -> None:
    """Semantic faults come back to the sender with sadb_msg_errno set."""
    with netkey.pfkey() as c:
        ok = messages.spdadd("10.3.0.0/16", "10.4.0.0/16", requests=[REQ])
        assert err(c, Msg(MsgType.X_SPDADD, satype=SaType.ESP, exts=ok.exts)) == errno.EINVAL
        assert err(c, Msg(MsgType.GET, satype=SaType.UNSPEC)) == errno.EINVAL
        v6 = messages.spdadd("10.3.0.0/16", "2001:db8::/32", requests=[REQ])
        assert err(c, v6) == errno.EINVAL  # family mismatch
        proto = messages.spdadd("10.3.0.0/16", "10.4.0.0/16", requests=[REQ])
        proto.exts[6].proto = 6  # upper layer differs between src and dst
        assert err(c, proto) == errno.EINVAL
        # Type 23 is past SADB_MAX: echoed, with no extension parsing.
        raw = bytearray(encode(Msg(MsgType.X_SPDDUMP, seq=9, pid=1)))
        raw[1] = 23
        c._sock.send(bytes(raw))
        assert decode(c._sock.recv(65536)).errno == errno.EINVAL


def test_prefix_over_address_bits(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        raw = bytearray(encode(messages.spdadd("10.3.0.0/16", "10.4.0.0/16", requests=[REQ])))
        raw[16 + 5] = 33  # sadb_address_prefixlen of ADDRESS_SRC
        c._sock.send(bytes(raw))
        assert decode(c._sock.recv(65536)).errno == errno.EINVAL


def test_spdflush_must_be_16_bytes(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        add(c, 1)
        long = Msg(MsgType.X_SPDFLUSH, exts=messages.spdget(1).exts)
        assert err(c, long) == errno.EINVAL
        assert len(c.spddump()) == 1


def test_persist_is_eperm(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        pid = add(c, 1)
        assert netkey.admin.request(f"persist {pid}") == {"ok": True}
        assert err(c, messages.spddelete("10.1.0.1/32", "10.2.0.0/16")) == errno.EPERM
        assert err(c, messages.spddelete2(pid)) == errno.EPERM
        assert err(c, messages.spdadd("10.1.0.1/32", "10.2.0.0/16", requests=[REQ])) == errno.EPERM
        c.request(messages.spdflush())  # flush skips persistent entries
        assert [m.policy.id for m in c.spddump() if m.policy] == [pid]


def test_netkey_ids(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        assert add(c, 1) == 0x4000
        assert add(c, 2, id=0x10) == 0x10  # a user id below 0x4000 is kept
        assert err(c, messages.spdadd("10.1.0.3/32", "10.2.0.0/16", requests=[REQ], id=0x10)) == (
            errno.EEXIST
        )
        assert add(c, 3, id=0x5000) == 0x4001  # above the manual range: assigned
        # A deleted policy still held by a flow keeps its id on sptailq.
        netkey.admin.request("flow open 10.1.0.1 10.2.0.1 6 1 2")
        c.request(messages.spddelete2(0x4000))
        c.request(messages.spdflush())
        assert add(c, 4) == 0x4002


def test_netipsec_ids_count_from_one(netipsec: Netkeyd) -> None:
    with netipsec.pfkey() as c:
        assert [add(c, i) for i in range(3)] == [1, 2, 3]
        assert add(c, 9, id=0x10) == 4  # no user ids in this tree


def test_spddump_reserved_carries_refcnt(netkey: Netkeyd) -> None:
    with netkey.pfkey() as c:
        for i in range(4):
            add(c, i)
        netkey.admin.request("flow open 10.1.0.1 10.2.0.9 6 1 2")
        netkey.admin.request("flow open 10.1.0.3 10.2.0.9 6 1 2")
        refs = {str(m.src.ip): m.reserved for m in c.spddump() if m.src}
        assert refs == {"10.1.0.0": 1, "10.1.0.1": 2, "10.1.0.2": 1, "10.1.0.3": 2}


def nothing_before_a_barrier(c: PfkeyClient) -> None:
    """`c` was sent nothing so far: an SPDGET's error reply to it is the next message.

    netkeyd answers in order on one thread, so anything sent to `c` earlier would be
    queued ahead of the reply (the client keeps what it skips while waiting).
    """
    assert err(c, messages.spdget(0x7777)) == errno.ENOENT
    with pytest.raises(PfkeyTimeout):
        c.recv(timeout=0.01)  # nothing was skipped on the way to the reply


def test_reply_routing(netkey: Netkeyd) -> None:
    """SPDADD replies go to every socket; SPDGET only to the sender; errors too."""
    with netkey.pfkey() as a, netkey.pfkey() as b:
        pid = add(a, 1)
        seen = b.recv(timeout=2)
        assert (seen.type, seen.policy.id if seen.policy else None) == (MsgType.X_SPDADD, pid)
        a.request(messages.spdget(pid))
        err(a, messages.spdget(0x7777))
        nothing_before_a_barrier(b)


def test_spdexpire_only_to_registered(netkey: Netkeyd) -> None:
    with netkey.pfkey() as reg, netkey.pfkey() as plain:
        reg.request(messages.register(SaType.ESP))
        add(reg, 1, lifetime=2)
        plain.recv(timeout=2)  # the SPDADD broadcast
        netkey.admin.request("tick 3")
        expire = reg.recv(timeout=2)
        assert expire.type == MsgType.X_SPDEXPIRE
        assert expire.exts[3].addtime == 2  # LIFETIME_HARD
        nothing_before_a_barrier(plain)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def malformed(i: int) -> tuple[bytes, int | None]:
    """The i-th bad message and the errno it is answered with (None = dropped)."""
    good = encode(messages.spdadd("10.9.0.0/16", "10.8.0.0/16", requests=[REQ]))
    kind = i % 10
    if kind == 0:
        return good[:9], None  # truncated header
    if kind == 1:
        return good[:-8], None  # length mismatch
    if kind == 2:
        return bytes([3]) + good[1:], None  # version 3
    if kind == 3:  # an extension length of 0
        return good[:16] + struct.pack("<HH", 0, 5) + good[20:], None
    if kind == 4:  # a duplicate extension
        ext = good[16:40]
        n = (len(good) + 24) // 8
        return good[:4] + struct.pack("<H", n) + good[6:] + ext, None
    if kind == 5:  # an unknown extension type
        return good[:16] + good[16:18] + struct.pack("<H", 99) + good[20:], None
    if kind == 6:  # a sockaddr whose length does not match its family
        return good[:24] + bytes([15]) + good[25:], None
    if kind == 7:  # a request length overrunning the policy extension
        off = good.index(struct.pack("<HBBII", 2, 2, 0, 0, 0)) + 12
        return good[:off] + struct.pack("<H", 4096) + good[off + 2 :], None
    if kind == 8:  # an unknown message type
        return struct.pack("<BBBBHHII", 2, 99, 0, 0, 2, 0, i, 1), errno.EINVAL
    return bytes([2, 14, 0, 3]) + good[4:], errno.EINVAL  # SPDADD with satype ESP


def test_thousand_malformed_messages(netkey: Netkeyd) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(netkey.control))
    sock.settimeout(2)
    with sock, netkey.pfkey() as c:
        rss = []
        for i in range(1000):
            data, answer = malformed(i)
            sock.send(data)
            if answer is not None:
                assert decode(sock.recv(65536)).errno == answer, i
            if i % 100 == 99:
                add(c, i // 100)  # still serving, between the bad ones
                assert decode(sock.recv(65536)).type == MsgType.X_SPDADD  # its broadcast
                rss.append(rss_kb(netkey.pid))
        stats = netkey.admin.stats()
        rej = stats["rejects"]
        assert rej["short"] == 100 and rej["length"] == 100 and rej["version"] == 100
        assert rej["ext_len"] >= 100 and rej["ext_dup"] == 100 and rej["ext_unknown"] == 100
        assert rej["addr"] == 100 and rej["policy"] == 100
        assert stats["spd"]["allocated"] == 10
        with pytest.raises(socket.timeout):
            sock.recv(65536)  # nothing else was sent to us
        if not netkey.asan:  # ASan's allocator makes RSS meaningless
            assert rss[-1] - rss[1] < 256, rss
