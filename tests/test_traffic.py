"""orchestrator.traffic without namespaces: specs, scapy templates, the fast path, pacing.

The fast path must write scapy's exact bytes, and scapy must decrypt what it sends.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import IPSecIntegrityError

from orchestrator.cli.main import main as spdlab
from orchestrator.errors import ConfigError
from orchestrator.pfkey import setkey
from orchestrator.pfkey.codec import decode, encode
from orchestrator.pfkey.wire import Dir, MsgType
from orchestrator.traffic import fastpath, scenario, template
from orchestrator.traffic.fastpath import SEQ_MAX
from orchestrator.traffic.run import TrafficJob, targets_report
from orchestrator.traffic.sa import ALGORITHMS, FlowSpec, SaSpec, TrafficSpec
from orchestrator.traffic.sender import Pacing, Sender, load_seq_state, save_seq_state

SRC, DST = "192.0.2.1", "192.0.2.2"
SHAPES = list(itertools.product(ALGORITHMS, ("tunnel", "transport"), (False, True), (17, 6)))


def _sa(
    alg: str, mode: str = "tunnel", natt: bool = False, spi: int = 0x1234, i: int = 0
) -> SaSpec:
    a = ALGORITHMS[alg]
    return SaSpec(
        spi=spi,
        src=SRC,
        dst=DST,
        algorithm=alg,
        enc_key=bytes((i + k) & 0xFF for k in range(a.enc_key_len)),
        auth_key=bytes((i * 7 + k) & 0xFF for k in range(a.auth_key_len)),
        mode=mode,  # type: ignore[arg-type]
        natt_sport=4500 + i if natt else None,
        natt_dport=4500 if natt else None,
    )


def _flow(sa: SaSpec, proto: int = 17, i: int = 0) -> FlowSpec:
    if sa.mode == "transport":
        return FlowSpec(sa.src, sa.dst, sa, proto, 1000 + i, 2000 + i, 17)
    return FlowSpec(f"10.100.0.{i % 250 + 1}", "10.200.0.1", sa, proto, 1000 + i, 2000 + i, 17)


class FakeLink:
    """Collects what would be sent."""

    kind = "fake"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def frame(self, templates):
        return templates

    def sender(self, templates):
        def send(pkt: bytes) -> int:
            self.sent.append(pkt)
            return len(pkt)

        return send, None

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- specs


def test_sa_spec_rejects_bad_keys_and_spi():
    with pytest.raises(ConfigError, match="20/28/36-byte"):
        SaSpec(0x1000, SRC, DST, "aes-gcm-16", enc_key=b"x" * 16)
    with pytest.raises(ConfigError, match="0x100"):
        SaSpec(0x10, SRC, DST, "aes-gcm-16", enc_key=b"x" * 20)
    with pytest.raises(ConfigError, match="Supported are"):
        SaSpec(0x1000, SRC, DST, "rot13")
    with pytest.raises(ConfigError, match="transport SA"):
        FlowSpec("10.0.0.1", DST, _sa("aes-gcm-16", "transport"))


def test_merged_specs_keep_sas_apart_by_destination():
    one = scenario.generate(2, SRC, DST).spec
    two = scenario.generate(2, SRC, "192.0.2.3").spec  # the same SPIs, another gateway
    merged = TrafficSpec.merge([one, two])
    again = TrafficSpec.from_json(json.loads(json.dumps(merged.to_json())))
    assert [f.sa.dst for f in again.flows] == [DST, DST, "192.0.2.3", "192.0.2.3"]
    clash = scenario.generate(2, SRC, DST, seed=9).spec
    with pytest.raises(ConfigError, match="two different SAs"):
        TrafficSpec.merge([one, clash])


def test_traffic_spec_json_round_trip():
    sa = _sa("aes-cbc-hmac-sha256", natt=True)
    spec = TrafficSpec([sa], [_flow(sa)])
    again = TrafficSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    job = TrafficJob(spec, Pacing.keepalive(1, 5, 100), netns="x")
    assert TrafficJob.from_json(json.loads(json.dumps(job.to_json()))) == job


# ---------------------------------------------------------------- templates and fast path


@pytest.mark.parametrize(("alg", "mode", "natt", "proto"), SHAPES)
def test_fast_path_is_byte_identical_to_scapy(alg, mode, natt, proto):
    flow = _flow(_sa(alg, mode, natt), proto)
    t = template.build(flow)
    fastpath.check(t)  # first packet == scapy's, byte for byte
    assert t.length == len(template.scapy_sample(flow))


@pytest.mark.parametrize(("alg", "mode", "natt", "proto"), SHAPES)
def test_scapy_decrypts_fast_path_packets(alg, mode, natt, proto):
    flow = _flow(_sa(alg, mode, natt), proto)
    enc = fastpath.encoder(template.build(flow))
    want = template.inner_packet(flow)
    for seq in (1, 2, 3, 1000, SEQ_MAX):
        pkt = enc(seq)
        outer = IP(pkt)
        assert (outer.src, outer.dst) == (SRC, DST)
        assert outer.proto == (17 if natt else 50)
        esp_at = outer.ihl * 4 + (8 if natt else 0)
        assert struct.unpack_from("!II", pkt, esp_at) == (flow.sa.spi, seq)
        inner = template.scapy_decrypt(flow, pkt)
        if mode == "tunnel":
            assert bytes(inner) == bytes(want)
        else:
            assert bytes(inner.payload) == bytes(want.payload)


def test_gcm_iv_is_the_sequence_number():
    flow = _flow(_sa("aes-gcm-16"))
    t = template.build(flow)
    pkt = fastpath.encoder(t)(0xABCDEF)
    assert pkt[len(t.header) + 8 : len(t.header) + 16] == struct.pack("!Q", 0xABCDEF)


def test_cbc_iv_changes_every_packet():
    t = template.build(_flow(_sa("aes-cbc-hmac-sha256")))
    enc = fastpath.encoder(t)
    at = len(t.header) + 8
    ivs = {enc(s)[at : at + 16] for s in range(1, 50)}
    assert len(ivs) == 49


def test_flipped_icv_fails_scapy_verification():
    flow = _flow(_sa("null-hmac-sha256"))
    pkt = bytearray(fastpath.encoder(template.build(flow))(5))
    pkt[-1] ^= 1
    with pytest.raises(IPSecIntegrityError):
        template.scapy_decrypt(flow, bytes(pkt))


@pytest.mark.parametrize(("alg", "mode", "natt", "proto"), SHAPES)
def test_derived_templates_match_scapy(alg, mode, natt, proto):
    """build_all() builds one template per shape with scapy and derives the rest."""
    flows = [_flow(_sa(alg, mode, natt, spi=0x1000 + i, i=i), proto, i) for i in range(12)]
    templates = template.build_all(flows)
    assert fastpath.check_sample(templates, k=12) == 12


def test_scenario_templates_sample_check():
    sc = scenario.generate(300, SRC, DST, alg="aes-gcm-16")
    templates = template.build_all(sc.flows)
    assert fastpath.check_sample(templates, k=16, seed=1) == 16


# ---------------------------------------------------------------- scenario


def test_scenario_generates_one_sa_policy_and_flow_each():
    sc = scenario.generate(70000, SRC, DST)
    assert len(sc.sas) == len(sc.flows) == len(sc.sa_msgs) == len(sc.policy_msgs) == 70000
    assert len({s.spi for s in sc.sas}) == 70000
    assert sc.flows[0].src == "10.100.0.0"
    assert sc.flows[65536 + 258].src == "10.101.1.2"
    pol = sc.policy_msgs[5]
    assert pol.type == MsgType.X_SPDADD and pol.policy.dir == Dir.IN
    assert str(pol.src.ip) == "10.100.0.5" and pol.src.prefixlen == 32
    assert pol.policy.requests[0].reqid == sc.sas[5].reqid == 6
    assert str(pol.policy.requests[0].tunnel_src) == SRC
    for msg in (sc.sa_msgs[5], pol, sc.delete_msgs[5]):
        assert decode(encode(msg)).type == msg.type


def test_scenario_transport_and_natt():
    sc = scenario.generate(3, SRC, DST, mode="transport", natt=True, alg="null-hmac-sha256")
    f = sc.flows[2]
    assert (f.src, f.dst, f.sport) == (SRC, DST, 10002)
    assert sc.sas[2].natt_sport == 4500
    assert sc.policy_msgs[2].src.port == 10002


SETKEY = """
add 192.0.2.1 192.0.2.2 esp 0x2001 -m tunnel -u 7 -r 64 -E aes-gcm-16
    0x00112233445566778899aabbccddeeff00112233 ;
add 192.0.2.1 192.0.2.2 esp-udp 0x2002 -m tunnel -u 8 -r 64 -E aes-cbc
    0x00112233445566778899aabbccddeeff -A hmac-sha256
    0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff ;
spdadd 10.1.0.0/24 10.2.0.0/24 any -P in ipsec esp/tunnel/192.0.2.1-192.0.2.2/unique:8 ;
spdadd 10.3.0.5 10.4.0.0/16[80] tcp -P in ipsec esp/tunnel/192.0.2.1-192.0.2.2/unique:7 ;
spdadd 10.2.0.0/24 10.1.0.0/24 any -P out ipsec esp/tunnel/192.0.2.2-192.0.2.1/require ;
"""


def test_flows_from_setkey_statements():
    spec = scenario.from_messages(st.msg for st in setkey.parse(SETKEY))
    assert [f.sa.spi for f in spec.flows] == [0x2002, 0x2001]  # by reqid; out policy skipped
    a, b = spec.flows
    assert (a.src, a.dst, a.proto, a.sa.natt) == ("10.1.0.1", "10.2.0.1", 17, True)
    assert (b.src, b.dst, b.proto, b.dport) == ("10.3.0.5", "10.4.0.1", 6, 80)
    fastpath.check_sample(template.build_all(spec.flows))


def test_flows_from_setkey_needs_a_matching_sa():
    text = SETKEY.replace("unique:7", "unique:9")
    with pytest.raises(ConfigError, match="no ESP SA"):
        scenario.from_messages(st.msg for st in setkey.parse(text))


# ---------------------------------------------------------------- sender


def _sender(n_flows: int = 3, **kw) -> tuple[Sender, FakeLink]:
    sas = [_sa("aes-gcm-16", spi=0x100 + i, i=i) for i in range(2)]
    flows = [_flow(sas[i % 2], i=i) for i in range(n_flows)]  # flows share SAs
    link = FakeLink()
    return Sender(template.build_all(flows), link, **kw), link


def _seqs(link: FakeLink) -> list[tuple[int, int]]:
    return [struct.unpack_from("!II", p, 20) for p in link.sent]


def test_sender_round_robin_and_fresh_sequence_numbers_per_sa():
    sender, link = _sender()
    stats = sender.run(Pacing("count", count=9))
    assert stats.sent == 9 and stats.errors == 0 and stats.state == "done"
    assert _seqs(link) == [
        (0x100, 1), (0x101, 1), (0x100, 2), (0x100, 3), (0x101, 2), (0x100, 4),
        (0x100, 5), (0x101, 3), (0x100, 6),
    ]  # fmt: skip
    assert sender.seq_state() == {f"{DST}/0x00000100": 6, f"{DST}/0x00000101": 3}
    assert stats.per_dst == {DST: 9}
    assert stats.rounds == 3  # every flow sent three times: what settle() awaits


def test_sender_counts_packets_per_gateway():
    one = scenario.generate(3, SRC, DST)
    two = scenario.generate(2, SRC, "192.0.2.3")
    spec = TrafficSpec.merge([one.spec, two.spec])
    link = FakeLink()
    stats = Sender(template.build_all(spec.flows), link).run(Pacing("count", count=12))
    assert stats.per_dst == {DST: 8, "192.0.2.3": 4}
    assert [IP(p).dst for p in link.sent[:5]] == [DST, DST, DST, "192.0.2.3", "192.0.2.3"]
    doc = targets_report(stats, {"gw-a": DST, "gw-b": "192.0.2.3", "gw-c": "192.0.2.9"})
    assert {k: v["sent"] for k, v in doc["targets"].items()} == {"gw-a": 8, "gw-b": 4, "gw-c": 0}


def test_sender_continues_from_state(tmp_path: Path):
    sender, _ = _sender()
    sender.run(Pacing("count", count=10))
    path = tmp_path / "seq.json"
    save_seq_state(path, sender.seq_state())
    again, link = _sender(seq_start=load_seq_state(path))
    again.run(Pacing("count", count=2))
    assert _seqs(link) == [(0x100, 8), (0x101, 4)]
    assert load_seq_state(tmp_path / "missing.json") == {}


def test_sender_stops_at_the_end_of_the_sequence_space():
    sender, link = _sender(1, seq_base=SEQ_MAX - 2)
    stats = sender.run(Pacing("count", count=10))
    assert stats.sent == 3 and stats.exhausted == 1
    assert [s for _, s in _seqs(link)] == [SEQ_MAX - 2, SEQ_MAX - 1, SEQ_MAX]


def test_sender_never_outruns_its_rate():
    """A token bucket: at most one burst plus rate x elapsed, whatever else the machine runs.

    How close to the rate a sender gets is for `make bench` (bench/bench_pacing.py).
    """
    sender, link = _sender()
    rate = 400.0
    burst = max(1, int(rate * 0.005))  # the sender's burst: 5 ms worth
    stats = sender.run(Pacing("rate", rate=rate, count=60))
    assert stats.sent == len(link.sent) == 60 and stats.state == "done"
    assert stats.sent <= burst + rate * stats.elapsed, stats
    assert [s for spi, s in _seqs(link) if spi == 0x100] == list(range(1, 41))


def test_sender_stops_at_its_duration():
    sender, link = _sender()
    stats = sender.run(Pacing("rate", rate=400.0, duration=0.2))
    assert stats.elapsed >= 0.2 and stats.state == "done"
    assert stats.sent == len(link.sent) <= 2 + 400.0 * stats.elapsed


def test_sender_stops_on_event_and_records_a_pcap_sample():
    sender, link = _sender()
    stop = threading.Event()
    reports = []

    def report(s):
        reports.append(s.sent)
        if s.sent > 100:
            stop.set()

    stats = sender.run(Pacing("rate", rate=1000.0), stop, report, report_every=0.05, record=4)
    assert stats.state == "done" and stats.sent >= 100
    assert len(sender.recorded) == 4 and sender.recorded == link.sent[:4]


def test_keepalive_pacing_spreads_one_packet_per_flow_per_period():
    p = Pacing.keepalive(2000, keepalive_ticks=5, tick_ms=20)
    assert p.rate == pytest.approx(20000.0) and p.duration is None and p.mode == "keepalive"
    with pytest.raises(ConfigError):
        Pacing.keepalive(10, 0, 20)


# ---------------------------------------------------------------- CLI validation


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keepalive-ticks", "5"], "needs --tick-ms"),
        (["--rate", "10", "--tick-ms", "5"], "--tick-ms is for"),
        (["--flood"], "needs --duration or --count"),
        (["--rate", "10", "--install"], "needs --control"),
        (["--rate", "-1"], "must be > 0"),
    ],
)
def test_cli_flag_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    f = tmp_path / "sk.conf"
    f.write_text(SETKEY)
    assert spdlab(["traffic", "--setkey", str(f), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_setkey_errors_are_located(tmp_path, capsys):
    f = tmp_path / "sk.conf"
    f.write_text("spdadd 10.0.0.1 ;\n")
    assert spdlab(["traffic", "--setkey", str(f), "--rate", "1"]) == 2
    assert f"{f}:1:" in capsys.readouterr().err
    assert spdlab(["traffic", "--setkey", str(tmp_path / "nope"), "--rate", "1"]) == 2


def test_cli_unknown_namespace_is_an_infra_error(tmp_path, capsys):
    f = tmp_path / "sk.conf"
    f.write_text(SETKEY)
    rc = spdlab(["traffic", "--setkey", str(f), "--rate", "1", "--netns", f"nope-{os.getpid()}"])
    assert rc == 3 and "setns" in capsys.readouterr().err


def test_udp_of_natt_packets_is_port_4500():
    flow = _flow(_sa("aes-gcm-16", natt=True))
    pkt = IP(fastpath.encoder(template.build(flow))(1))
    assert pkt[UDP].dport == 4500 and pkt[UDP].chksum == 0


def test_seq_state_lease_covers_what_a_killed_sender_may_have_used():
    sender, _ = _sender(4)  # 2 flows per SA
    sender.run(Pacing("count", count=8))
    a, b = f"{DST}/0x00000100", f"{DST}/0x00000101"
    assert sender.seq_state() == {a: 4, b: 4}
    # 1000 pps over 4 flows, 2 per SA: 500 per SA per second
    assert sender.seq_state(ahead_s=3.0, rate=1000.0) == {a: 1505, b: 1505}


def test_per_gateway_counts_continue_across_runs():
    one = scenario.generate(3, SRC, DST)
    two = scenario.generate(1, SRC, "192.0.2.3")
    sender = Sender(template.build_all(TrafficSpec.merge([one.spec, two.spec]).flows), FakeLink())
    assert sender.run(Pacing("count", count=2)).per_dst == {DST: 2, "192.0.2.3": 0}
    again = sender.run(Pacing("count", count=3))
    assert again.per_dst == {DST: 2, "192.0.2.3": 1}
    assert again.rounds == 1  # the round begun by the first run, completed in this one


def test_one_raw_link_serves_senders_of_different_gateways() -> None:
    """Senders sharing a link (a deterministic run: one a gateway) keep their own
    destinations: the first connects the socket, the next ones address each packet."""
    from types import SimpleNamespace

    from orchestrator.traffic.link import RawIpLink

    def flow(dst: str) -> SimpleNamespace:
        return SimpleNamespace(header=bytes(IP(src="10.9.0.2", dst=dst, proto=50))[:20])

    link = RawIpLink()
    try:
        send_a, to_a = link.sender([flow("10.9.0.10")] * 3)
        send_b, to_b = link.sender([flow("10.9.0.11")] * 2)
        _, to_c = link.sender([flow("10.9.0.10")])
        assert to_a is None and send_a == link.sock.send
        assert to_b == [("10.9.0.11", 0)] * 2 and send_b == link.sock.sendto
        assert to_c is None  # the destination the socket is connected to
    finally:
        link.close()
