"""Traffic against real netkeyd processes: namespaces, a veth, real ESP packets.

Each test brings up its own TrafficLab (tests/traffic_fixtures.py): netkeyd in a gateway
namespace with --esp/--natt, the sender in a traffic namespace. The fixture removes every
namespace and process afterwards, even when the test fails, and checks it did.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import traffic_fixtures
from scapy.layers.inet import IP, UDP
from scapy.utils import rdpcap
from traffic_fixtures import GW, TR, TrafficLab, needs_netns

from orchestrator.pfkey.wire import MsgType
from orchestrator.traffic import fastpath, scenario, template
from orchestrator.traffic.run import TrafficRun
from orchestrator.traffic.sa import ALGORITHMS, FlowSpec, SaSpec
from orchestrator.traffic.sender import Pacing
from orchestrator.wait import until

traffic_lab = traffic_fixtures.traffic_lab  # the fixture, by name
pytestmark = needs_netns
N = 2000


def _spd(lab: TrafficLab) -> list:
    with lab.pfkey() as c:
        return c.dump(MsgType.X_SPDDUMP)


def _held(lab: TrafficLab) -> list:
    """The SPD dump once every policy has refcnt >= 2, else empty."""
    dump = _spd(lab)
    return dump if dump and all(m.refcnt >= 2 for m in dump) else []


def _flows_open(lab: TrafficLab) -> int:
    return lab.admin.stats()["flows"]["open"]


# ---------------------------------------------------------------- keepalive holds every policy


def test_keepalive_references_every_policy_and_lets_go_after_idle(traffic_lab):
    tick_ms, idle = 50, 20
    lab = traffic_lab("netkey", tick_ms=tick_ms, flow_idle_ticks=idle)
    sc = scenario.generate(N, TR, GW)
    lab.install(sc)
    before = lab.esp()
    run = lab.traffic(sc.spec, Pacing.keepalive(N, keepalive_ticks=5, tick_ms=tick_ms))
    until(lambda: _flows_open(lab) == N, f"{N} flows", 60)
    # Every policy is held by its flow: the table's reference and the flow's.
    dump = until(lambda: _held(lab), "every policy referenced", 60)
    assert len(dump) == N
    pols = lab.admin.request("policies")["policies"]
    assert all(p["flowrefs"] >= 1 and p["state"] in (1, "alive") for p in pols), pols[:2]

    final = run.stop()
    assert final.errors == 0 and final.sent >= N
    moved = lab.wait_esp(final.sent, before)
    assert moved == {"ok": final.sent}, moved  # every packet accepted, nothing dropped

    stopped = lab.admin.stats()["ticks"]
    until(lambda: _flows_open(lab) == 0, "flows to idle out", 60)
    # Counted in ticks, from the tick ring: the last flows close `idle` ticks after their
    # last packet (one that lands between ticks L-1 and L is counted in L, used at L-1).
    ring = lab.admin.request(f"ticks {max(0, stopped - 2 * idle)}")["ticks"]
    last_packet = max(r["tick"] for r in ring if r["esp_ok"] > 0)
    all_closed = min(r["tick"] for r in ring if r["tick"] > last_packet and r["flows"] == 0)
    assert all_closed - (last_packet - 1) == idle, (last_packet, all_closed)
    assert all(m.refcnt == 1 for m in _spd(lab))  # only the table's reference is left


# ---------------------------------------------------------------- mass delete while traffic flows


def _drain_ticks(lab: TrafficLab, start: int, limit: int, step: int = 20) -> tuple[int, list]:
    """Run ticks `step` at a time (traffic keeps flowing) until no policy is linked."""
    records: list[dict] = []
    while records == [] or records[-1]["tick"] - start < limit:
        records += lab.admin.request(f"tick {step}")["ticks"]
        for r in records:
            if r["dead_in"] == 0 and r["alive_in"] == 0:
                return r["tick"] - start, records
    raise AssertionError(f"not drained after {limit} ticks: {records[-1]}")


@pytest.mark.parametrize(("build", "lo", "hi"), [("canary", N - 1, N + 1), ("canary+nextsp", 0, 1)])
def test_mass_delete_drain_ticks_match_the_spec(traffic_lab, build, lo, hi):
    """Spec §4: canary unlinks one DEAD entry per tick (≈ N ticks), canary+nextsp ≤ 1."""
    lab = traffic_lab(build, tick_ms=0, flow_idle_ticks=100_000)  # ticks only on `tick N`
    sc = scenario.generate(N, TR, GW)
    lab.install(sc)
    run = lab.traffic(sc.spec, Pacing.keepalive(N, keepalive_ticks=10, tick_ms=50))
    until(lambda: _flows_open(lab) == N, f"{N} flows", 60)
    assert all(m.refcnt >= 2 for m in _spd(lab))

    start = lab.admin.stats()["ticks"]
    esp_before = lab.esp()
    lab.pipeline(sc.delete_msgs)  # SPDDELETE all, traffic flowing
    drain, records = _drain_ticks(lab, start, limit=N + 100)
    print(f"{build}: drained in {drain} ticks")
    assert lo <= drain <= hi, f"{build}: drained in {drain} ticks"
    if build == "canary":
        assert all(r["unlinked"] == 1 for r in records if r["tick"] - start < drain)

    final = run.stop()
    assert final.errors == 0
    moved = lab.wait_esp(1, esp_before)
    # Flows let go lazily: after the delete their packets find no policy.
    assert set(moved) <= {"ok", "no_policy"}, moved
    assert lab.admin.stats()["spd"]["use_after_free"] == 0


# ---------------------------------------------------------------- interop per algorithm

COMBOS = [(a, m, n) for a in ALGORITHMS for m in ("tunnel", "transport") for n in (False, True)]


@pytest.mark.parametrize(("alg", "mode", "natt"), COMBOS)
def test_interop_scapy_packets_accepted_and_fast_path_decrypts_with_scapy(
    traffic_lab, tmp_path, alg, mode, natt
):
    lab = traffic_lab("netkey")
    sc = scenario.generate(8, TR, GW, alg=alg, mode=mode, natt=natt)
    lab.install(sc)

    # scapy's own SecurityAssociation, sent over a raw socket: netkeyd accepts all.
    link = lab.link()
    before = lab.esp()
    for flow in sc.flows:
        ssa = template.scapy_sa(flow.sa)  # scapy picks its own random IVs
        for seq in (1, 2):
            pkt = ssa.encrypt(template.inner_packet(flow), seq_num=seq)
            link.sock.sendto(bytes(pkt), (GW, 0))
    assert lab.wait_esp(16, before) == {"ok": 16}, alg

    # The fast path, continuing above scapy's numbers: accepted, and its pcap sample
    # decrypts with scapy.
    pcap = tmp_path / "sample.pcap"
    before = lab.esp()
    run = lab.traffic(sc.spec, Pacing("count", count=400), seq_base=3, pcap=pcap, pcap_count=16)
    final = run.wait(30)
    assert final.sent == 400 and final.errors == 0
    assert lab.wait_esp(400, before) == {"ok": 400}
    by_spi = {f.sa.spi: f for f in sc.flows}
    packets = rdpcap(str(pcap))
    assert len(packets) == 16
    for p in packets:
        raw = bytes(p)
        esp_at = (raw[0] & 0x0F) * 4 + (8 if natt else 0)
        spi, seq = struct.unpack_from("!II", raw, esp_at)
        flow = by_spi[spi]
        assert seq >= 3
        inner = template.scapy_decrypt(flow, raw)
        want = template.inner_packet(flow)
        assert bytes(inner if mode == "tunnel" else inner.payload) == bytes(
            want if mode == "tunnel" else want.payload
        )


# ---------------------------------------------------------------- every drop reason


def _ipv4(proto: int, payload: bytes, src: str = TR, dst: str = GW) -> bytes:
    return bytes(IP(src=src, dst=dst, proto=proto) / payload)


def test_every_drop_reason_counted_under_its_name(traffic_lab):
    lab = traffic_lab("netkey")
    sc = scenario.generate(4, TR, GW)  # tunnel, AES-GCM, level unique, reqid i+1
    natt = scenario.generate(1, TR, GW, natt=True, spi_base=0x20000, protected="10.201.0.0/16")
    natt.flows[0] = FlowSpec("10.150.0.1", "10.201.0.1", natt.sas[0])
    natt.policy_msgs[0] = scenario.messages.spdadd(
        "10.150.0.1/32", "10.201.0.0/16", dir=1, requests=natt.policy_msgs[0].policy.requests
    )
    lab.install(sc)
    lab.install(natt)
    link = lab.link()
    sa0 = sc.sas[0]
    enc = {i: fastpath.encoder(t) for i, t in enumerate(template.build_all(sc.flows))}

    def send(*packets: bytes) -> None:
        for p in packets:
            link.sock.sendto(p, (GW, 0))

    def expect(packets: list[bytes], **delta: int) -> None:
        before = lab.esp()
        send(*packets)
        assert lab.wait_esp(sum(delta.values()), before) == delta

    expect([enc[0](1)], ok=1)
    # unknown SPI: the same flow under an SA the gateway does not have
    stranger = SaSpec(0xBAD0, TR, GW, "aes-gcm-16", enc_key=sa0.enc_key, reqid=1)
    ghost = FlowSpec(sc.flows[0].src, sc.flows[0].dst, stranger)
    expect([fastpath.encoder(template.build(ghost))(1)], no_sa=1)
    # a flipped ICV bit
    bad = bytearray(enc[0](2))
    bad[-1] ^= 0x01
    expect([bytes(bad)], bad_icv=1)
    # a replayed sequence number
    expect([enc[0](3), enc[0](3)], ok=1, replay=1)
    # policy mismatch: policy 1's inner flow through SA 0 (reqid 1, policy wants 2)
    crossed = FlowSpec(sc.flows[1].src, sc.flows[1].dst, sa0)
    expect([fastpath.encoder(template.build(crossed))(4)], policy_mismatch=1)
    # no policy at all for the inner flow
    lost = FlowSpec("10.99.9.9", "10.200.0.1", sa0)
    expect([fastpath.encoder(template.build(lost))(5)], no_policy=1)
    # a tunnel SA carrying a transport payload cannot be decapsulated
    as_transport = SaSpec(sa0.spi, TR, GW, "aes-gcm-16", enc_key=sa0.enc_key, mode="transport")
    odd = FlowSpec(TR, GW, as_transport)
    expect([fastpath.encoder(template.build(odd))(6)], decrypt=1)
    # 1-byte and header-only ESP
    expect([_ipv4(50, b"\x01")], malformed=1)
    expect([_ipv4(50, struct.pack("!II", sa0.spi, 7))], malformed=1)
    # garbage on UDP 4500: too short for ESP, and an SPI nobody has
    udp = UDP(sport=4500, dport=4500, chksum=0)
    expect([_ipv4(17, bytes(udp / b"\x01\x02\x03"))], malformed=1)
    expect([_ipv4(17, bytes(udp / (b"\xde\xad\xbe\xef" + bytes(36))))], no_sa=1)
    # ESP-in-UDP for an SA that is not NAT-T
    natt_wrapped = _ipv4(17, bytes(udp / enc[0](8)[20:]))
    expect([natt_wrapped], no_sa=1)
    # and the NAT-T SA itself is fine
    nt = fastpath.encoder(template.build(natt.flows[0]))
    expect([nt(1)], ok=1)


# ---------------------------------------------------------------- the CLI, end to end

SETKEY = f"""
add {TR} {GW} esp 0x3001 -m tunnel -u 5 -r 64 -E aes-cbc
    0x00112233445566778899aabbccddeeff -A hmac-sha256
    0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff ;
spdadd 10.5.0.0/24 10.6.0.0/24 any -P in ipsec esp/tunnel/{TR}-{GW}/unique:5 ;
spdadd 10.5.1.7 10.6.0.0/24 udp -P in ipsec esp/tunnel/{TR}-{GW}/unique:5 ;
"""


def test_cli_installs_sends_and_reports_gateway_counters(traffic_lab, tmp_path):
    lab = traffic_lab("netkey")
    conf = tmp_path / "sk.conf"
    conf.write_text(SETKEY)
    assert lab.nk is not None
    argv = [
        sys.executable, "-m", "orchestrator.cli.main", "traffic", "--setkey", str(conf),
        "--netns", lab.tr_ns, "--control", str(lab.nk.control), "--install",
        "--admin", str(lab.nk.admin_path), "--rate", "500", "--duration", "1", "--json",
        "--seq-state", str(tmp_path / "seq.json"),
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    sent = res["sender"]["sent"]
    # Paced, never faster than asked (how close it gets is bench/bench_pacing.py).
    assert 0 < sent <= 2 + 500 * res["sender"]["elapsed"], res["sender"]
    assert res["sender"]["errors"] == 0 and res["sender"]["state"] == "done"
    # the counters were read right after sending: wait for netkeyd to count every packet
    assert lab.wait_esp(sent) == {"ok": sent}
    seq = json.loads((tmp_path / "seq.json").read_text())["last_seq"]
    assert seq[f"{GW}/0x00003001"] == sent


# ---------------------------------------------------------------- cleanup, even on failure


def test_lab_teardown_removes_everything_after_a_failure(tmp_path):
    lab = TrafficLab(tmp_path, "netkey", 0, 30)
    sc = scenario.generate(10, TR, GW)
    with pytest.raises(RuntimeError, match="boom"):
        try:
            lab.up()
            lab.install(sc)
            lab.traffic(sc.spec, Pacing("rate", rate=100.0))
            lab.link()
            raise RuntimeError("boom")
        finally:
            lab.down()
    assert lab.leftovers() == []
    assert all(not r.running() for r in lab.runs)


def test_killed_sender_restarts_without_replays(traffic_lab, tmp_path):
    """The sequence-number state is a lease: SIGKILL between saves loses no window."""
    lab = traffic_lab("netkey")
    sc = scenario.generate(50, TR, GW)
    lab.install(sc)
    work = tmp_path / "traffic"
    first = TrafficRun(sc.spec, work, lab.tr_ns, Pacing("rate", rate=2000.0), report_every=0.2)
    lab.runs.append(first)
    first.start()
    # Killed once it has saved a lease over packets the gateway accepted.
    until(lambda: (s := first.stats()) is not None and s.sent > 0 and lab.esp()["ok"] > 0,
          "the first sender's packets accepted", 60, alive=first.running)  # fmt: skip
    first.proc.kill()  # no final save
    first.proc.wait()
    before_esp = lab.esp()  # packets still in flight from the first add to "ok" only
    second = TrafficRun(sc.spec, work, lab.tr_ns, Pacing("count", count=500))
    lab.runs.append(second)
    second.start()
    final = second.wait(30)
    assert final.sent == 500 and final.errors == 0
    moved = lab.wait_esp(final.sent, before_esp)
    assert set(moved) == {"ok"} and moved["ok"] >= 500, moved  # no replay, no other drop
