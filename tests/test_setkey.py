"""setkey(8) parser, the setkey -D/-DP formatter, and `spdlab setkey` without a daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import pytest

from orchestrator.pfkey import fmt, messages
from orchestrator.pfkey.codec import (
    Address,
    IpsecRequest,
    Key,
    Lifetime,
    Msg,
    NatTPort,
    NatTType,
    Policy,
    Sa,
    Sa2,
    decode,
    encode,
)
from orchestrator.pfkey.setkey import SetkeyError, parse, tokenize
from orchestrator.pfkey.wire import (
    AuthAlg,
    CompAlg,
    Dir,
    EncAlg,
    ExtType,
    IpsecProto,
    Level,
    Mode,
    MsgType,
    PolicyType,
    SaState,
    SaType,
)

KEY128 = "0x00112233445566778899aabbccddeeff"


def one(text: str) -> Msg:
    (st,) = parse(text)
    # Whatever the parser builds must survive the wire.
    assert decode(encode(st.msg)) == st.msg
    return st.msg


# ---------------------------------------------------------------- parser: SPD


def test_spdadd_tunnel() -> None:
    msg = one(
        "spdadd 10.0.1.0/24[any] 10.0.2.0/24[any] any\n"
        "\t-P out ipsec esp/tunnel/192.0.2.1-192.0.2.2/require ;"
    )
    req = IpsecRequest(IpsecProto.ESP, Mode.TUNNEL, Level.REQUIRE, 0, "192.0.2.1", "192.0.2.2")
    assert msg == messages.spdadd(
        "10.0.1.0/24", "10.0.2.0/24", 255, Dir.OUT, PolicyType.IPSEC, [req]
    )
    assert msg.satype == SaType.UNSPEC


def test_spdadd_ports_proto_levels() -> None:
    msg = one(
        "spdadd 10.0.1.1[1234] 10.0.2.0/24[80] tcp -P in ipsec "
        "esp/transport//unique:5 ah/transport/ ipcomp/transport//use ;"
    )
    assert msg.src == Address(ip_address("10.0.1.1"), 32, 1234, 6)
    assert msg.dst == Address(ip_address("10.0.2.0"), 24, 80, 6)
    assert msg.policy == Policy(
        PolicyType.IPSEC,
        Dir.IN,
        0,
        [
            IpsecRequest(IpsecProto.ESP, Mode.TRANSPORT, Level.UNIQUE, 5),
            IpsecRequest(IpsecProto.AH, Mode.TRANSPORT, Level.DEFAULT),
            IpsecRequest(IpsecProto.IPCOMP, Mode.TRANSPORT, Level.USE),
        ],
    )


@pytest.mark.parametrize(
    ("upper", "number"), [("any", 255), ("udp", 17), ("icmp6", 58), ("47", 47), ("0", 0)]
)
def test_upperspec(upper: str, number: int) -> None:
    msg = one(f"spdadd ::/0 2001:db8::/32 {upper} -P out none;")
    assert msg.src is not None and msg.src.proto == number
    assert msg.dst is not None and msg.dst.proto == number


def test_spdadd_ipv6_and_policy_types() -> None:
    msg = one("spdadd -6 2001:db8::1 2001:db8:1::/48[any] any -P in discard ;")
    assert msg.src == Address(ip_address("2001:db8::1"), 128)
    assert msg.policy == Policy(PolicyType.DISCARD, Dir.IN)
    assert one("spdadd 1.1.1.1 2.2.2.2 any -P out bypass;").policy == Policy(PolicyType.BYPASS, 2)
    # KAME's libipsec accepts ipsec with no request; netkeyd answers EINVAL.
    assert one("spdadd 1.1.1.1 2.2.2.2 any -P out ipsec;").policy == Policy(PolicyType.IPSEC, 2)


def test_spdupdate_spddelete_flush_dump() -> None:
    assert one("spdupdate 1.1.1.1 2.2.2.2 any -P out none;").type == MsgType.X_SPDUPDATE
    delete = one("spddelete 10.0.1.0/24 10.0.2.0/24 any -P out;")
    assert delete == messages.spddelete("10.0.1.0/24", "10.0.2.0/24", 255, Dir.OUT)
    # A full policy after the direction is accepted, as setkey users paste it.
    full = one("spddelete 1.1.1.1 2.2.2.2 any -P in ipsec esp/transport//require;")
    assert full.policy is not None and full.policy.dir == Dir.IN
    assert encode(one("spdflush;")) == encode(messages.spdflush())
    assert one("spddump ;").type == MsgType.X_SPDDUMP


# ---------------------------------------------------------------- parser: SAD


def test_add_esp_full() -> None:
    msg = one(
        "add 192.0.2.1 192.0.2.2 esp 0x1000 -m tunnel -r 32 -u 7\n"
        f'  -E aes-cbc {KEY128} -A hmac-sha1 "01234567890123456789" -lh 3600 -ls 3000 -bh 1000 ;'
    )
    assert msg.type == MsgType.ADD and msg.satype == SaType.ESP
    assert msg.sa == Sa(0x1000, 32, SaState.LARVAL, AuthAlg.HMAC_SHA1, EncAlg.AES_CBC)
    assert msg.exts[ExtType.X_SA2] == Sa2(Mode.TUNNEL, 0, 7)
    assert msg.exts[ExtType.KEY_ENCRYPT] == Key(bytes.fromhex(KEY128[2:]))
    assert msg.exts[ExtType.KEY_AUTH] == Key(b"01234567890123456789")
    assert msg.exts[ExtType.LIFETIME_HARD] == Lifetime(0, 1000, 3600, 0)
    assert msg.exts[ExtType.LIFETIME_SOFT] == Lifetime(0, 0, 3000, 0)


def test_add_variants() -> None:
    gcm = one("update 10.0.0.1 10.0.0.2 esp 4097 -E rfc4106-gcm-aes 0x" + "ab" * 20 + ";")
    assert gcm.type == MsgType.UPDATE and gcm.sa is not None
    assert gcm.sa.encrypt == EncAlg.AES_GCM16 and ExtType.KEY_AUTH not in gcm.exts
    null = one("add 10.0.0.1 10.0.0.2 esp 300 -E null -A hmac-sha256 0x" + "00" * 32 + ";")
    assert null.sa is not None and null.sa.encrypt == EncAlg.NULL
    assert ExtType.KEY_ENCRYPT not in null.exts
    assert one("add 10.0.0.1 10.0.0.2 esp 300 -E rijndael-cbc " + KEY128 + ";").sa == Sa(
        300, encrypt=EncAlg.AES_CBC
    )
    ah = one("add 2001:db8::1 2001:db8::2 ah 0x200 -A hmac-md5 " + KEY128 + ";")
    assert ah.satype == SaType.AH and ah.sa is not None and ah.sa.auth == AuthAlg.HMAC_MD5
    comp = one("add 10.0.0.1 10.0.0.2 ipcomp 0x4000 -C deflate -R;")
    assert comp.sa == Sa(0x4000, encrypt=CompAlg.DEFLATE, flags=0x80)


def test_add_esp_udp() -> None:
    msg = one("add 192.0.2.1[4500] 192.0.2.2[14500] esp-udp 0x10 -E aes-ctr 0x" + "11" * 20 + ";")
    assert msg.exts[ExtType.X_NAT_T_TYPE] == NatTType(2)
    assert msg.exts[ExtType.X_NAT_T_SPORT] == NatTPort(4500)
    assert msg.exts[ExtType.X_NAT_T_DPORT] == NatTPort(14500)


def test_get_delete_deleteall_flush_dump() -> None:
    get = one("get 192.0.2.1 192.0.2.2 esp 0x1000 ;")
    assert get == messages.get_sa("192.0.2.1", "192.0.2.2", 0x1000)
    assert one("delete 192.0.2.1 192.0.2.2 ah 5;") == messages.delete_sa(
        "192.0.2.1", "192.0.2.2", 5, SaType.AH
    )
    deleteall = one("deleteall 192.0.2.1 192.0.2.2 esp;")
    assert deleteall.type == MsgType.DELETE and ExtType.SA not in deleteall.exts
    assert one("flush;") == messages.flush_sa()
    assert one("flush esp;").satype == SaType.ESP
    assert one("dump ah ;") == messages.dump_sa(SaType.AH)


def test_statements_lines_comments_and_strings() -> None:
    text = (
        "# a comment ; with a semicolon\n"
        "spdflush; spddump;\n"
        "\n"
        "  add 1.1.1.1 1.1.1.2 esp 1   # trailing comment\n"
        '     -E 3des-cbc "abcdefghijklmnop#;;;;;;;" ;\n'
    )
    sts = parse(text)
    assert [(s.verb, s.line, s.col) for s in sts] == [
        ("spdflush", 2, 1),
        ("spddump", 2, 11),
        ("add", 4, 3),
    ]
    assert [s.is_dump for s in sts] == [False, True, False]
    assert sts[2].msg.exts[ExtType.KEY_ENCRYPT] == Key(b"abcdefghijklmnop#;;;;;;;")


def test_tokenize_positions() -> None:
    toks = tokenize('a  "b c";\n  d')
    assert [(t.kind, t.text, t.line, t.col) for t in toks] == [
        ("word", "a", 1, 1),
        ("string", "b c", 1, 4),
        (";", ";", 1, 9),
        ("word", "d", 2, 3),
        ("eof", "", 2, 4),
    ]


# ---------------------------------------------------------------- parser errors


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("spdadd 10.0.1.0/33 1.1.1.1 any -P out none;", "1:17", "prefix '33' out of range 0..32"),
        ("spdadd ::/129 ::1 any -P out none;", "1:11", "prefix '129' out of range 0..128"),
        ("spdadd 1.1.1.1 1.1.1.2[70000] any -P out none;", "1:24", "port '70000' out of range"),
        ("spdadd 1.1.1.1 ::1 any -P out none;", "1:16", "address families differ"),
        ("spdadd 1.1.1 2.2.2.2 any -P out none;", "1:8", "not an IP address: '1.1.1'"),
        ("spdadd 1.1.1.1 2.2.2.2 bogus -P out none;", "1:24", "unknown upper-layer protocol"),
        ("spdadd 1.1.1.1 2.2.2.2 256 -P out none;", "1:24", "out of range 0..255"),
        ("spdadd 1.1.1.1 2.2.2.2 any out none;", "1:28", "expected -P"),
        ("spdadd 1.1.1.1 2.2.2.2 any -P fwd none;", "1:31", "unknown direction 'fwd'"),
        ("spdadd 1.1.1.1 2.2.2.2 any -P out;", "1:34", "expected a policy"),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out none esp/transport//require;",
            "1:40",
            "'none' takes no requests",
        ),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/tunnel//require;",
            "1:45",
            "tunnel mode needs src-dst endpoints",
        ),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/transport/1.1.1.1-1.1.1.2/require;",
            "1:55",
            "endpoints are only for tunnel mode",
        ),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/tunnel/1.1.1.1-1.1.1.x/require;",
            "1:60",
            "not an IP address: '1.1.1.x'",
        ),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/tunnel/1.1.1.1-::1/use;",
            "1:52",
            "tunnel endpoint families differ",
        ),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/transport//unique:99999;",
            "1:63",
            "reqid '99999' out of range 1..16383",
        ),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/transport//sometimes;",
            "1:56",
            "unknown level 'sometimes'",
        ),
        ("spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp;", "1:41", "expected proto/mode"),
        (
            "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec gre/transport//use;",
            "1:41",
            "unknown protocol 'gre'",
        ),
        ("spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/beet//use;", "1:45", "unknown mode 'beet'"),
        ("spdadd -4 ::1 ::2 any -P out none;", "1:15", "-4 given but the addresses are IPv6"),
        ("spdflush", "1:9", "missing ';' at end of input"),
        ("spdflush now;", "1:10", "expected ';', found 'now'"),
        ("foo;", "1:1", "unknown command 'foo'"),
        (";", "1:1", "unknown command ';'"),
        ("add 1.1.1.1/24 1.1.1.2 esp 1 -E null;", "1:12", "an SA address takes no prefix"),
        ("add 1.1.1.1 1.1.1.2 esp 0x1ffffffff -E null;", "1:25", "SPI 8589934591 out of range"),
        (
            "add 1.1.1.1 1.1.1.2 esp 1 -E aes-cbc 0x0011;",
            "1:38",
            "aes-cbc key is 16 bits; allowed 128, 192, 256",
        ),
        ("add 1.1.1.1 1.1.1.2 esp 1 -E aes-cbc 0x001;", "1:38", "even number of hex digits"),
        ("add 1.1.1.1 1.1.1.2 esp 1 -E aes-cbc;", "1:37", "aes-cbc needs a key"),
        (
            "add 1.1.1.1 1.1.1.2 esp 1 -E blowfish-cbc 0x00;",
            "1:30",
            "unknown encryption algorithm 'blowfish-cbc'",
        ),
        ("add 1.1.1.1 1.1.1.2 esp 1 -A hmac-md5 " + KEY128 + ";", "1:1", "esp needs -E"),
        ("add 1.1.1.1 1.1.1.2 esp 1 -m tunnel -m transport -E null;", "1:37", "-m given twice"),
        ("add 1.1.1.1 1.1.1.2 esp 1 -r 256 -E null;", "1:30", "replay window 256 out of range"),
        ("add 1.1.1.1 1.1.1.2 esp 1 -f odd-pad -E null;", "1:30", "unknown -f option 'odd-pad'"),
        ("add 1.1.1.1 1.1.1.2 esp 1 -g -E null;", "1:27", "unknown option '-g'"),
        (
            "add 1.1.1.1 1.1.1.2 esp 1 -E aes-gcm-16 0x"
            + "00" * 20
            + " -A hmac-sha1 0x"
            + "0" * 40
            + ";",
            "1:84",
            "combined-mode (GCM) cipher takes no -A",
        ),
        ("add 1.1.1.1 1.1.1.2 ah 1 -E null -A null;", "1:26", "-E is not for ah"),
        ("add 1.1.1.1 1.1.1.2 ipcomp 1;", "1:1", "ipcomp needs -C"),
        ("add 1.1.1.1 1.1.1.2 gre 1 -E null;", "1:21", "unknown protocol 'gre'"),
        ("get 1.1.1.1 1.1.1.2 esp;", "1:24", "expected SPI, found ';'"),
        ('add 1.1.1.1 1.1.1.2 esp 1 -E 3des-cbc "abc;\n', "1:39", "unterminated string"),
    ],
)
def test_errors_are_located(text: str, where: str, message: str) -> None:
    with pytest.raises(SetkeyError) as e:
        parse(text, "conf")
    rendered = str(e.value)
    assert "\n" not in rendered
    assert rendered.startswith(f"conf:{where}: "), rendered
    assert message in rendered, rendered
    assert (e.value.line, e.value.col) == tuple(int(p) for p in where.split(":"))


@pytest.mark.parametrize(
    "text",
    [
        "spdadd 1.1.1.1 2.2.2.2 any -P out ipsec esp/transport//use\nspdadd 1.1.1.1 2.2.2.3 any;",
        "spdadd 1.1.1.1 2.2.2.2 any -P out none\nspdadd 1.1.1.1 2.2.2.3 any;",
        "add 1.1.1.1 1.1.1.2 esp 1 -E null\nspdadd 1.1.1.1 2.2.2.3 any;",
    ],
)
def test_forgotten_semicolon_names_the_next_statement(text: str) -> None:
    with pytest.raises(SetkeyError, match=r"^<stdin>:2:1: expected ';', found 'spdadd'$"):
        parse(text)


def test_error_on_a_later_line() -> None:
    text = (
        "spdflush;\n\n# comment\n  spdadd 1.1.1.1 2.2.2.2 any\n    -P out ipsec esp/tunnel/x-y;\n"
    )
    with pytest.raises(SetkeyError, match=r"^f\.conf:5:29: not an IP address: 'x'$"):
        parse(text, "f.conf")


# ---------------------------------------------------------------- formatter


def spd_entry() -> Msg:
    msg = messages.spdadd(
        "10.0.1.0/24",
        "10.0.2.0/24",
        requests=[
            IpsecRequest(IpsecProto.ESP, Mode.TUNNEL, Level.REQUIRE, 0, "192.0.2.1", "192.0.2.2")
        ],
    )
    msg.type = MsgType.X_SPDDUMP
    assert msg.policy is not None
    msg.policy.id = 16385
    msg.exts[ExtType.LIFETIME_CURRENT] = Lifetime(addtime=0, usetime=5)
    msg.exts[ExtType.LIFETIME_HARD] = Lifetime()
    msg.seq, msg.pid, msg.reserved = 1, 1234, 2
    return msg


def test_format_spd_entry_as_setkey_dp() -> None:
    assert fmt.format_spd_dump([spd_entry()]) == (
        "10.0.1.0/24[any] 10.0.2.0/24[any] any\n"
        "\tout ipsec\n"
        "\tesp/tunnel/192.0.2.1-192.0.2.2/require\n"
        "\tcreated: Jan  1 00:00:00 1970  lastused: Jan  1 00:00:05 1970\n"
        "\tlifetime: 0(s) validtime: 0(s)\n"
        "\tspid=16385 seq=1 pid=1234\n"
        "\trefcnt=2\n"
    )


def test_format_spd_entry_variants() -> None:
    msg = messages.spdadd(
        "10.0.1.1",
        "2001:db8::/32",
        6,
        Dir.IN,
        PolicyType.IPSEC,
        [
            IpsecRequest(IpsecProto.ESP, Mode.TRANSPORT, Level.UNIQUE, 5),
            IpsecRequest(IpsecProto.AH, Mode.TRANSPORT, Level.USE),
        ],
        sport=22,
    )
    msg.exts[ExtType.LIFETIME_HARD] = Lifetime(addtime=60, usetime=30)
    assert fmt.format_policy_entry(msg) == (
        "10.0.1.1[22] 2001:db8::/32[any] tcp\n"
        "\tin ipsec\n"
        "\tesp/transport//unique:5\n"
        "\tah/transport//use\n"
        "\tlifetime: 60(s) validtime: 30(s)\n"
        "\tspid=0 seq=0 pid=0\n"
        "\trefcnt=0\n"
    )
    assert fmt.format_spd_dump([]) == "No SPD entries.\n"
    assert fmt.format_policy_entry(Msg(MsgType.X_SPDDUMP)) == "no ADDRESS_SRC extension.\n"


def sa_entry() -> Msg:
    msg = messages.add_sa(
        "192.0.2.1",
        "192.0.2.2",
        0x1000,
        mode=Mode.TUNNEL,
        reqid=7,
        encrypt=EncAlg.AES_CBC,
        enc_key=bytes(range(16)),
        auth=AuthAlg.HMAC_SHA1,
        auth_key=bytes(range(20)),
        replay=32,
        hard=Lifetime(addtime=3600),
    )
    msg.type = MsgType.DUMP
    assert msg.sa is not None
    msg.sa.state = SaState.MATURE
    msg.exts[ExtType.LIFETIME_CURRENT] = Lifetime(2, 300, 10, 12)
    msg.seq, msg.pid = 0, 99
    return msg


def test_format_sa_entry_as_setkey_d() -> None:
    assert fmt.format_sad_dump([sa_entry()], now=15) == (
        "192.0.2.1 192.0.2.2\n"
        "\tesp mode=tunnel spi=4096(0x00001000) reqid=7(0x00000007)\n"
        "\tE: aes-cbc  00010203 04050607 08090a0b 0c0d0e0f\n"
        "\tA: hmac-sha1  00010203 04050607 08090a0b 0c0d0e0f 10111213\n"
        "\tseq=0x00000000 replay=32 flags=0x00000000 state=mature\n"
        "\tcreated: Jan  1 00:00:10 1970\tcurrent: Jan  1 00:00:15 1970\n"
        "\tdiff: 5(s)\thard: 3600(s)\tsoft: 0(s)\n"
        "\tlast: Jan  1 00:00:12 1970\thard: 0(s)\tsoft: 0(s)\n"
        "\tcurrent: 300(bytes)\thard: 0(bytes)\tsoft: 0(bytes)\n"
        "\tallocated: 2\thard: 0\tsoft: 0\n"
        "\tsadb_seq=0 pid=99 refcnt=0\n"
    )
    # Without netkeyd's clock there is no "current:" and no "diff:".
    text = fmt.format_sa_entry(sa_entry())
    assert "\tcreated: Jan  1 00:00:10 1970\n\thard: 3600(s)\tsoft: 0(s)\n" in text
    assert fmt.format_sad_dump([]) == "No SAD entries.\n"


def test_format_long_key_wraps_and_natt() -> None:
    msg = messages.add_sa(
        "10.0.0.1",
        "10.0.0.2",
        1,
        encrypt=EncAlg.AES_CBC,
        enc_key=bytes(32),
        auth=AuthAlg.HMAC_SHA512,
        auth_key=bytes(64),
        natt_type=2,
        natt_sport=4500,
        natt_dport=4500,
    )
    text = fmt.format_sa_entry(msg)
    assert "\tA: hmac-sha512 " + " 00000000" * 8 + "\n\t  " + " 00000000" * 8 + "\n" in text
    assert "\tesp-udp mode=any spi=1(0x00000001)" in text
    assert "\tnat-t: type=2 sport=4500 dport=4500\n" in text


def test_json() -> None:
    pol = fmt.policy_json(spd_entry())
    assert pol["id"] == 16385 and pol["refcnt"] == 2 and pol["dir"] == "out"
    assert pol["requests"] == [
        {
            "proto": "esp",
            "mode": "tunnel",
            "src": "192.0.2.1",
            "dst": "192.0.2.2",
            "level": "require",
            "reqid": 0,
        }
    ]
    assert (pol["created"], pol["lastused"], pol["src"]) == (0, 5, "10.0.1.0/24")
    sa = fmt.sa_json(sa_entry())
    assert sa["spi"] == 0x1000 and sa["encrypt"] == "aes-cbc" and sa["auth"] == "hmac-sha1"
    assert sa["enc_key"] == bytes(range(16)).hex() and sa["hard"]["addtime"] == 3600
    json.dumps([pol, sa])


# ---------------------------------------------------------------- CLI without a daemon

REPO = Path(__file__).resolve().parents[1]


def spdlab(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI in a child process: real exit codes, real stderr."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_cli_check_counts_statements(tmp_path: Path) -> None:
    conf = tmp_path / "spd.conf"
    conf.write_text("spdflush;\nspdadd 1.1.1.1 2.2.2.2 any -P out none;\n")
    res = spdlab("setkey", "-f", str(conf), "--check")
    assert (res.returncode, res.stdout) == (0, f"{conf}: ok: 2 statements\n")
    res = spdlab("setkey", "-c", "--check", stdin="spddump;")
    assert (res.returncode, res.stdout) == (0, "<stdin>: ok: 1 statements\n")


def test_cli_parse_error_is_one_line_exit_2(tmp_path: Path) -> None:
    conf = tmp_path / "spd.conf"
    conf.write_text("spdflush;\nspdadd 1.1.1.1 2.2.2.2 any -P up none;\n")
    res = spdlab("setkey", "-s", str(tmp_path / "nosock"), "-f", str(conf))
    assert res.returncode == 2
    assert res.stderr == f"spdlab: {conf}:2:31: unknown direction 'up'; expected one of in, out\n"


def test_cli_needs_a_socket() -> None:
    res = spdlab("setkey", "-DP")
    assert res.returncode == 2 and "needs -s SOCKET" in res.stderr


def test_cli_missing_socket_is_an_infra_error(tmp_path: Path) -> None:
    res = spdlab("setkey", "-s", str(tmp_path / "nosock"), "-D")
    assert res.returncode == 3
    assert (
        res.stderr.count("\n") == 1 and "nosock: no such socket (is the target up?)" in res.stderr
    )


@pytest.mark.parametrize(
    ("option", "flags"),
    [("", 0), ("-f zero-pad", 0x200), ("-f random-pad", 0x100), ("-f seq-pad", 0),
     ("-f zero-pad -f nocyclic-seq", 0x200), ("-f random-pad -f zero-pad", 0x200)],
)  # fmt: skip
def test_sa_pad_flags_as_kame(option: str, flags: int) -> None:
    (st,) = parse(f"add 1.1.1.1 1.1.1.2 esp 1 {option} -E null;")
    assert st.msg.sa is not None and st.msg.sa.flags == flags


def test_dump_leaves_out_dead_sas_unless_all() -> None:
    from orchestrator.cli.setkey import visible

    sas = [Msg(MsgType.DUMP, exts={ExtType.SA: Sa(spi, state=st)}) for spi, st in
           ((1, SaState.MATURE), (2, SaState.DEAD), (3, SaState.DYING))]  # fmt: skip
    assert [m.sa.spi for m in visible(sas, False)] == [1, 3]
    assert [m.sa.spi for m in visible(sas, True)] == [1, 2, 3]


def test_cli_all_goes_with_sad_dump(tmp_path: Path) -> None:
    res = spdlab("setkey", "-s", str(tmp_path / "nosock"), "-DP", "-a")
    assert res.returncode == 2 and "-a goes with -D" in res.stderr
    assert "Traceback" not in res.stderr
    # -D -a is parsed: it fails only at the missing socket.
    res = spdlab("setkey", "-s", str(tmp_path / "nosock"), "-D", "-a")
    assert res.returncode == 3 and "nosock" in res.stderr
