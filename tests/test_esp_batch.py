"""ESP input in batches: a burst read by recvmmsg counts exactly as packets one by one.

netkeyd (ASan+UBSan) is stopped with SIGSTOP while a burst of several hundred raw ESP
and ESP-in-UDP packets queues on its sockets; after SIGCONT it reads them 64 per
recvmmsg, several batches in one wakeup. The burst mixes runs of one inner flow (the
batch remembers the last flow), flows that alternate, replays, a forged ICV before
the genuine packet and packets without a policy, on the same SAs: every counter, the
flows opened and the policy lookups must come out as the sequential model says.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from test_esp_input import (
    DATA,
    IPPROTO_IPIP,
    IPPROTO_UDP,
    SPI_GCM,
    SPI_NATT,
    SPI_TUN,
    Gateway,
    _inner,
    binary,  # noqa: F401 (the module's ASan build fixture)
    esp_gcm,
    installed_gateway,
)

from orchestrator.wait import until

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def gwb(binary, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: F811
    with installed_gateway(tmp_path_factory.mktemp("espbatch"), binary) as g:
        yield g


def counters(g: Gateway) -> dict[str, int]:
    s = g.cmd("stats")
    return {
        **g.esp(),
        "opened": s["flows"]["opened"],
        "lookups": s["spd"]["lookups"],
        "walked": s["spd"]["lookup_walked"],
    }


def burst(g: Gateway, raw: list[bytes], udp: list[bytes], nonesp: int = 0) -> dict[str, int]:
    """Queue every packet while netkeyd is stopped, then let it read them; the deltas.

    `nonesp` UDP payloads are keepalives or IKE, which no ESP counter counts.
    """
    assert g.proc is not None
    before = counters(g)
    want = len(raw) + len(udp) - nonesp
    os.kill(g.proc.pid, signal.SIGSTOP)
    try:
        g.send_raw(raw)
        g.send_udp(udp)
    finally:
        os.kill(g.proc.pid, signal.SIGCONT)

    def moved() -> dict[str, int] | None:
        now = counters(g)
        delta = {k: now[k] - before[k] for k in now if now[k] != before[k]}
        esp = sum(v for k, v in delta.items() if k not in ("opened", "lookups", "walked"))
        return delta if esp >= want else None

    return until(moved, f"netkeyd reads a burst of {want} ESP packets", timeout=60)


def forged(p: bytes) -> bytes:
    return p[:-1] + bytes([p[-1] ^ 1])


def test_burst_counts_as_one_by_one(gwb: Gateway) -> None:
    raw: list[bytes] = []
    seq = 1000
    # 40 tunnel flows, in runs of 5 packets, then the same 40 alternating.
    for f in range(40):
        for _ in range(5):
            raw.append(esp_gcm(SPI_TUN, seq, _inner(f"172.16.1.{f + 1}"), IPPROTO_IPIP))
            seq += 1
    for _ in range(2):
        for f in range(40):
            raw.append(esp_gcm(SPI_TUN, seq, _inner(f"172.16.1.{f + 1}"), IPPROTO_IPIP))
            seq += 1
    # Inside one batch: replay of a packet seen, one that fell out of the window,
    # a forged ICV before the genuine packet, then the genuine one twice.
    raw += [raw[-1], raw[0]]
    good = esp_gcm(SPI_TUN, seq, _inner("172.16.1.1"), IPPROTO_IPIP)
    raw += [forged(good), good, good]
    # No policy: negative answers are not cached, each packet looks up again.
    for i in range(10):
        raw.append(esp_gcm(SPI_TUN, seq + 1 + i, _inner("172.16.5.1"), IPPROTO_IPIP))
    # Transport mode on its own SA, between the tunnel packets' batches.
    raw += [esp_gcm(SPI_GCM, 5000 + i, DATA, IPPROTO_UDP) for i in range(30)]
    udp = [esp_gcm(SPI_NATT, 100 + i, DATA, IPPROTO_UDP) for i in range(70)] + [b"\xff"]
    d = burst(gwb, raw, udp, nonesp=1)
    accepted = 200 + 80 + 1 + 30 + 70
    assert d.pop("ok") == accepted
    assert d.pop("replay") == 3  # raw[-1] again, raw[0] out of the window, good again
    assert d.pop("bad_icv") == 1
    assert d.pop("no_policy") == 10
    # 40 tunnel flows, the no-policy flow, and one transport flow: raw and NAT-T
    # packets carry the same outer addresses and inner ports.
    assert d.pop("opened") == 42
    # A flow looks its policy up once.  A flow without one looks up on every packet,
    # and its first packet twice (at open, then at the check), as one by one.
    assert d.pop("lookups") == 40 + 1 + 11
    assert d.pop("walked") > 0
    assert d == {}


def test_two_bursts_on_one_flow_keep_the_window(gwb: Gateway) -> None:
    """The window a batch leaves is the one the next batch starts from."""
    first = [esp_gcm(SPI_GCM, s, DATA, IPPROTO_UDP) for s in range(9000, 9130)]
    d = burst(gwb, first, [])
    assert (d["ok"], d.get("replay", 0)) == (130, 0)
    again = [*first[-70:], esp_gcm(SPI_GCM, 9130, DATA, IPPROTO_UDP)]
    d = burst(gwb, again, [])
    # 9060..9065 fell out of the 64-packet window (top 9129), 9066..9129 were seen.
    assert (d["ok"], d["replay"]) == (1, 70)
