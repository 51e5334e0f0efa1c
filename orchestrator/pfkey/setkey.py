"""setkey(8) statements (KAME setkey.8 v1.94) turned into PF_KEY messages.

    spdadd [-46n] src_range dst_range upperspec -P in|out discard|none|ipsec req... ;
    spdupdate ... ;   spddelete src_range dst_range upperspec -P in|out ;
    spdflush ;   spddump ;
    add|update [-46n] src dst esp|ah|ipcomp|esp-udp spi [-m mode] [-r size] [-u reqid]
        [-f pad|nocyclic-seq] [-lh|-ls secs] [-bh|-bs bytes]
        -E ealg key [-A aalg key] | -A aalg key | -C calg [-R] ;
    get|delete src dst proto spi ;   deleteall src dst proto ;   flush [proto] ;   dump [proto] ;

The whole input is parsed before anything is sent, so a typo never half-applies a file.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator import userfile
from orchestrator.errors import SpdlabError
from orchestrator.pfkey import messages, names, wire
from orchestrator.pfkey.codec import Address, IPAddress, IpsecRequest, Lifetime, Msg
from orchestrator.pfkey.wire import MsgType, PolicyType, SaType

MAX_SCRIPT_BYTES = 16 << 20  # about 100000 statements
# KAME SADB_X_EXT_RAWCPI: `-C alg -R` uses the SPI as the CPI as given.
SADB_X_EXT_RAWCPI = 0x0080
# KAME's `-f` SA flags: ESP padding (SADB_X_EXT_PSEQ/PRAND/PZERO) and, cleared by
# nocyclic-seq, SADB_X_EXT_CYCSEQ (never set here: a sequence number never wraps).
PAD_FLAGS = {"seq-pad": 0x0000, "random-pad": 0x0100, "zero-pad": 0x0200}
SADB_X_EXT_PMASK = 0x0300
NATT_PORT = 4500


class SetkeyError(SpdlabError):
    """A statement that cannot be parsed: 'FILE:LINE:COL: message' on one line."""

    def __init__(self, line: int, col: int, message: str, filename: str = "<stdin>"):
        self.line = line
        self.col = col
        self.message = message
        self.filename = filename
        super().__init__(f"{filename}:{line}:{col}: {message}")


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", ";" or "eof"
    text: str
    line: int
    col: int


@dataclass
class Statement:
    """One parsed statement: the message to send and where it came from."""

    verb: str
    msg: Msg
    line: int
    col: int

    @property
    def is_dump(self) -> bool:
        return self.msg.type in (MsgType.DUMP, MsgType.X_SPDDUMP)


def read_script(path: str | None) -> tuple[str, str]:
    """A script's text and its name for errors: the file at `path`, else stdin.

    Raises:
        UserFileError: 'FILE:LINE:COL: message' for a file that is missing, a directory,
            unreadable, larger than MAX_SCRIPT_BYTES or not UTF-8.
    """
    if path is None:
        data = userfile.read_stream(sys.stdin.buffer, "<stdin>", MAX_SCRIPT_BYTES)
        return userfile.decode(data, "<stdin>"), "<stdin>"
    return userfile.read_text(path, MAX_SCRIPT_BYTES), path


def tokenize(text: str, filename: str = "<stdin>") -> list[Token]:
    """Words, "strings" and ';' with 1-based line:col; '#' starts a comment."""
    tokens: list[Token] = []
    line, col, i = 1, 1, 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            line, col, i = line + 1, 1, i + 1
        elif c.isspace():
            col, i = col + 1, i + 1
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c == ";":
            tokens.append(Token(";", ";", line, col))
            col, i = col + 1, i + 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0 or "\n" in text[i:end]:
                raise SetkeyError(line, col, "unterminated string", filename)
            body = _checked(text[i + 1 : end], line, col, filename, quoted=True)
            tokens.append(Token("string", body, line, col))
            col, i = col + end + 1 - i, end + 1
        else:
            m = _WORD.match(text, i)
            assert m is not None
            tokens.append(Token("word", _checked(m.group(), line, col, filename), line, col))
            col, i = col + len(m.group()), m.end()
    tokens.append(Token("eof", "", line, col))
    return tokens


_WORD = re.compile(r'[^\s;#"]+')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_WORD = 4096  # characters; keys in hex are a few hundred


def _checked(word: str, line: int, col: int, filename: str, *, quoted: bool = False) -> str:
    """A word, or a quoted string's text, short enough to quote back in one error line."""
    bad = None if quoted else _CONTROL.search(word)
    if bad is not None:
        where = col + bad.start()
        raise SetkeyError(line, where, f"U+{ord(bad.group()):04X} is not allowed", filename)
    if len(word) > MAX_WORD:
        raise SetkeyError(line, col, f"{len(word)} characters: more than {MAX_WORD}", filename)
    return word


_RANGE = re.compile(r"^(?P<addr>[^/\[\]]+)(?:/(?P<plen>[^\[\]]*))?(?:\[(?P<port>[^\]]*)\])?$")


@dataclass
class _Range:
    ip: IPAddress
    prefixlen: int
    port: int


class _Parser:
    def __init__(self, text: str, filename: str):
        self.filename = filename
        self.tokens = tokenize(text, filename)
        self.pos = 0

    # ---------------------------------------------------------- token access

    def error(self, tok: Token, message: str, offset: int = 0) -> SetkeyError:
        return SetkeyError(tok.line, tok.col + offset, message, self.filename)

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def word(self, what: str) -> Token:
        tok = self.take()
        if tok.kind != "word":
            found = "end of input" if tok.kind == "eof" else repr(tok.text)
            raise self.error(tok, f"expected {what}, found {found}")
        return tok

    def end(self) -> None:
        tok = self.take()
        if tok.kind == "eof":
            raise self.error(tok, "missing ';' at end of input")
        if tok.kind != ";":
            raise self.error(tok, f"expected ';', found {tok.text!r}")

    def number(self, tok: Token, what: str, lo: int, hi: int) -> int:
        try:
            value = int(tok.text, 0)
        except ValueError:
            raise self.error(tok, f"{what} must be a number, not {tok.text!r}") from None
        if not lo <= value <= hi:
            raise self.error(tok, f"{what} {value} out of range {lo}..{hi}")
        return value

    def choice(self, tok: Token, table: dict, what: str) -> int:
        entry = table.get(tok.text.lower())
        if entry is None:
            raise self.error(
                tok, f"unknown {what} {tok.text!r}; expected one of {', '.join(table)}"
            )
        return entry[0] if isinstance(entry, tuple) else entry

    # ---------------------------------------------------------- pieces

    def flags(self) -> set[str]:
        found = set()
        while self.peek().kind == "word" and self.peek().text in ("-4", "-6", "-n"):
            found.add(self.take().text)
        return found

    def address(self, tok: Token, text: str, offset: int = 0) -> IPAddress:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise self.error(tok, f"not an IP address: {text!r}", offset) from None

    def range(self, what: str, allow_prefix: bool = True) -> _Range:
        tok = self.word(what)
        m = _RANGE.match(tok.text)
        if m is None:
            raise self.error(tok, f"bad {what} {tok.text!r}; expected addr[/plen][[port]]")
        ip = self.address(tok, m["addr"])
        plen = ip.max_prefixlen
        if m["plen"] is not None:
            at = m.start("plen")
            if not allow_prefix:
                raise self.error(tok, "an SA address takes no prefix length", at - 1)
            if not m["plen"].isdigit() or int(m["plen"]) > ip.max_prefixlen:
                raise self.error(
                    tok, f"prefix {m['plen']!r} out of range 0..{ip.max_prefixlen}", at
                )
            plen = int(m["plen"])
        port = wire.IPSEC_PORT_ANY
        if m["port"] is not None and m["port"] != "any":
            at = m.start("port")
            if not m["port"].isdigit() or int(m["port"]) > 0xFFFF:
                raise self.error(tok, f"port {m['port']!r} out of range 0..65535", at)
            port = int(m["port"])
        return _Range(ip, plen, port)

    def pair(self, flags: set[str], allow_prefix: bool) -> tuple[_Range, _Range]:
        src = self.range("source address", allow_prefix)
        dst_tok = self.peek()
        dst = self.range("destination address", allow_prefix)
        if src.ip.version != dst.ip.version:
            raise self.error(dst_tok, "source and destination address families differ")
        for flag, version in (("-4", 4), ("-6", 6)):
            if flag in flags and src.ip.version != version:
                raise self.error(dst_tok, f"{flag} given but the addresses are IPv{src.ip.version}")
        return src, dst

    def upperspec(self) -> int:
        tok = self.word("upper-layer protocol")
        if tok.text.isdigit():
            return self.number(tok, "upper-layer protocol", 0, 255)
        return self.choice(tok, names.UPPER, "upper-layer protocol")

    def key(self, alg_name: str, sizes: tuple[int, ...]) -> bytes:
        tok = self.peek()
        if tok.kind == "string":
            data = self.take().text.encode()
        elif tok.kind == "word" and tok.text.lower().startswith("0x"):
            self.take()
            digits = tok.text[2:]
            if len(digits) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", digits):
                raise self.error(tok, "a hex key needs an even number of hex digits")
            data = bytes.fromhex(digits)
        elif sizes == (0,):
            return b""  # null algorithms take no key
        else:
            raise self.error(tok, f'{alg_name} needs a key: 0x-hex or a "quoted string"')
        if len(data) * 8 not in sizes:
            allowed = ", ".join(str(s) for s in sizes)
            raise self.error(tok, f"{alg_name} key is {len(data) * 8} bits; allowed {allowed}")
        return data

    # ---------------------------------------------------------- policies

    def request(self, tok: Token) -> IpsecRequest:
        parts = tok.text.split("/")
        offs = [sum(len(p) + 1 for p in parts[:i]) for i in range(len(parts))]
        if len(parts) < 2 or len(parts) > 4 or not parts[1]:
            raise self.error(tok, "expected proto/mode/src-dst/level")
        proto = self.choice(
            Token("word", parts[0], tok.line, tok.col), names.REQ_PROTOS, "protocol"
        )
        mode_tok = Token("word", parts[1], tok.line, tok.col + offs[1])
        mode = self.choice(mode_tok, {"transport": 1, "tunnel": 2}, "mode")
        req = IpsecRequest(proto, mode)
        ends = parts[2] if len(parts) > 2 else ""
        if ends:
            if mode != wire.Mode.TUNNEL:
                raise self.error(tok, "endpoints are only for tunnel mode", offs[2])
            src, sep, dst = ends.partition("-")
            if not sep:
                raise self.error(tok, f"expected src-dst, found {ends!r}", offs[2])
            req.tunnel_src = self.address(tok, src, offs[2])
            req.tunnel_dst = self.address(tok, dst, offs[2] + len(src) + 1)
            if req.tunnel_src.version != req.tunnel_dst.version:
                raise self.error(tok, "tunnel endpoint families differ", offs[2])
        elif mode == wire.Mode.TUNNEL:
            raise self.error(tok, "tunnel mode needs src-dst endpoints", offs[1])
        if len(parts) == 4 and parts[3]:
            req.level, req.reqid = self.level(tok, parts[3], offs[3])
        return req

    def level(self, tok: Token, text: str, offset: int) -> tuple[int, int]:
        name, sep, reqid = text.partition(":")
        if name not in names.LEVELS or (sep and name != "unique"):
            expected = f"{', '.join(names.LEVELS)} or unique:N"
            raise self.error(tok, f"unknown level {text!r}; expected {expected}", offset)
        if not sep:
            return names.LEVELS[name], 0
        if not reqid.isdigit() or not 1 <= int(reqid) <= wire.IPSEC_MANUAL_REQID_MAX:
            raise self.error(tok, f"reqid {reqid!r} out of range 1..16383", offset + len(name) + 1)
        return wire.Level.UNIQUE, int(reqid)

    def policy(self, need_type: bool) -> tuple[int, int, list[IpsecRequest]]:
        tok = self.take()
        if tok.kind != "word" or tok.text != "-P":
            raise self.error(tok, "expected -P in|out ...")
        dir_tok = self.word("direction")
        pdir = self.choice(dir_tok, {"in": 1, "out": 2}, "direction")
        if self.peek().kind != "word":
            if need_type:
                raise self.error(self.peek(), "expected a policy: discard, none or ipsec ...")
            return PolicyType.DISCARD, pdir, []
        type_tok = self.take()
        ptype = self.choice(type_tok, names.POLICY_TYPES, "policy")
        requests = []
        # A verb here means a forgotten ';': leave it for end() to say so.
        while self.peek().kind == "word" and self.peek().text not in _VERBS:
            tok = self.take()
            if ptype != PolicyType.IPSEC:
                raise self.error(tok, f"'{type_tok.text}' takes no requests")
            requests.append(self.request(tok))
        return ptype, pdir, requests

    # ---------------------------------------------------------- statements

    def spdadd(self, verb: Token) -> Msg:
        flags = self.flags()
        src, dst = self.pair(flags, True)
        proto = self.upperspec()
        ptype, pdir, requests = self.policy(need_type=True)
        return messages.spdadd(
            Address(src.ip, src.prefixlen, src.port),
            Address(dst.ip, dst.prefixlen, dst.port),
            proto,
            pdir,
            ptype,
            requests,
            update=verb.text == "spdupdate",
        )

    def spddelete(self, verb: Token) -> Msg:
        flags = self.flags()
        src, dst = self.pair(flags, True)
        proto = self.upperspec()
        ptype, pdir, _ = self.policy(need_type=False)
        return messages.spddelete(
            Address(src.ip, src.prefixlen, src.port),
            Address(dst.ip, dst.prefixlen, dst.port),
            proto,
            pdir,
            policy_type=ptype,
        )

    def sa_proto(self) -> tuple[str, int]:
        tok = self.word("protocol (esp, ah, ipcomp, esp-udp)")
        return tok.text.lower(), self.choice(tok, names.SA_PROTOS, "protocol")

    def spi(self) -> int:
        return self.number(self.word("SPI"), "SPI", 0, 0xFFFFFFFF)

    def add(self, verb: Token) -> Msg:
        flags = self.flags()
        src, dst = self.pair(flags, False)
        proto_name, satype = self.sa_proto()
        spi = self.spi()
        opts = _SaOptions()
        while self.peek().kind == "word" and self.peek().text not in _VERBS:
            self.sa_option(opts)
        self.check_sa(verb, proto_name, opts)
        natt = proto_name == "esp-udp"
        return messages.add_sa(
            Address(src.ip, None, src.port),
            Address(dst.ip, None, dst.port),
            spi,
            satype=satype,
            mode=opts.mode,
            reqid=opts.reqid,
            encrypt=opts.encrypt,
            enc_key=opts.enc_key,
            auth=opts.auth,
            auth_key=opts.auth_key,
            replay=opts.replay,
            flags=opts.flags,
            hard=opts.hard,
            soft=opts.soft,
            natt_type=wire.UdpEncap.ESPINUDP if natt else 0,
            natt_sport=(src.port or NATT_PORT) if natt else 0,
            natt_dport=(dst.port or NATT_PORT) if natt else 0,
            update=verb.text == "update",
        )

    def sa_option(self, opts: _SaOptions) -> None:
        tok = self.take()
        if tok.text in opts.seen and tok.text != "-f":
            raise self.error(tok, f"{tok.text} given twice")
        opts.seen[tok.text] = tok
        if tok.text == "-f":
            what = self.word("-f option")
            if what.text.lower() == "nocyclic-seq":
                return
            pad = self.choice(what, {**PAD_FLAGS, "nocyclic-seq": 0}, "-f option")
            opts.flags = (opts.flags & ~SADB_X_EXT_PMASK) | pad
        elif tok.text == "-m":
            opts.mode = self.choice(self.word("mode"), names.MODES, "mode")
        elif tok.text == "-r":
            opts.replay = self.number(self.word("replay window size"), "replay window", 0, 255)
        elif tok.text == "-u":
            opts.reqid = self.number(self.word("reqid"), "reqid", 0, 0xFFFFFFFF)
        elif tok.text in ("-lh", "-ls", "-bh", "-bs"):
            value = self.number(self.word("lifetime"), "lifetime", 0, 2**64 - 1)
            which = "hard" if tok.text.endswith("h") else "soft"
            life = getattr(opts, which) or Lifetime()
            setattr(opts, which, life)
            if tok.text.startswith("-l"):
                life.addtime = value
            else:
                life.bytes = value
        elif tok.text == "-E":
            alg = self.word("encryption algorithm")
            opts.encrypt = self.choice(alg, names.ENC_ALGS, "encryption algorithm")
            opts.enc_key = self.key(alg.text, names.ENC_ALGS[alg.text.lower()][1])
        elif tok.text == "-A":
            alg = self.word("authentication algorithm")
            opts.auth = self.choice(alg, names.AUTH_ALGS, "authentication algorithm")
            opts.auth_key = self.key(alg.text, names.AUTH_ALGS[alg.text.lower()][1])
        elif tok.text == "-C":
            opts.encrypt = self.choice(self.word("compression"), names.COMP_ALGS, "compression")
        elif tok.text == "-R":
            opts.flags |= SADB_X_EXT_RAWCPI
        else:
            raise self.error(tok, f"unknown option {tok.text!r}")

    def check_sa(self, verb: Token, proto: str, opts: _SaOptions) -> None:
        has = opts.seen
        if proto in ("esp", "esp-udp"):
            if "-E" not in has:
                raise self.error(verb, f"{proto} needs -E ealg key")
            if "-C" in has:
                raise self.error(has["-C"], f"-C is for ipcomp, not {proto}")
            if opts.encrypt in names.AEAD and "-A" in has:
                raise self.error(has["-A"], "a combined-mode (GCM) cipher takes no -A")
        elif proto == "ah":
            if "-A" not in has:
                raise self.error(verb, "ah needs -A aalg key")
            for flag in ("-E", "-C"):
                if flag in has:
                    raise self.error(has[flag], f"{flag} is not for ah")
        else:
            if "-C" not in has:
                raise self.error(verb, "ipcomp needs -C calg")
            for flag in ("-E", "-A"):
                if flag in has:
                    raise self.error(has[flag], f"{flag} is not for ipcomp")

    def by_spi(self, verb: Token) -> Msg:
        flags = self.flags()
        src, dst = self.pair(flags, False)
        _, satype = self.sa_proto()
        spi = self.spi()
        build = messages.get_sa if verb.text == "get" else messages.delete_sa
        return build(Address(src.ip), Address(dst.ip), spi, satype)

    def deleteall(self, verb: Token) -> Msg:
        flags = self.flags()
        src, dst = self.pair(flags, False)
        _, satype = self.sa_proto()
        return messages.deleteall_sa(Address(src.ip), Address(dst.ip), satype)

    def satype_opt(self) -> int:
        if self.peek().kind != "word":
            return SaType.UNSPEC
        return self.sa_proto()[1]

    def flush(self, verb: Token) -> Msg:
        return messages.flush_sa(self.satype_opt())

    def dump(self, verb: Token) -> Msg:
        return messages.dump_sa(self.satype_opt())

    def spdflush(self, verb: Token) -> Msg:
        return messages.spdflush()

    def spddump(self, verb: Token) -> Msg:
        return messages.spddump()

    def statements(self) -> list[Statement]:
        out = []
        while self.peek().kind != "eof":
            verb = self.take()
            handler = _VERBS.get(verb.text) if verb.kind == "word" else None
            if handler is None:
                raise self.error(
                    verb, f"unknown command {verb.text!r}; expected {', '.join(_VERBS)}"
                )
            msg = handler(self, verb)
            self.end()
            out.append(Statement(verb.text, msg, verb.line, verb.col))
        return out


@dataclass
class _SaOptions:
    mode: int = wire.Mode.ANY
    replay: int = 0
    reqid: int = 0
    flags: int = 0
    encrypt: int = wire.EncAlg.NONE
    enc_key: bytes = b""
    auth: int = wire.AuthAlg.NONE
    auth_key: bytes = b""
    hard: Lifetime | None = None
    soft: Lifetime | None = None
    seen: dict[str, Token] = field(default_factory=dict)


_VERBS: dict[str, Callable[[_Parser, Token], Msg]] = {
    "add": _Parser.add,
    "update": _Parser.add,
    "get": _Parser.by_spi,
    "delete": _Parser.by_spi,
    "deleteall": _Parser.deleteall,
    "flush": _Parser.flush,
    "dump": _Parser.dump,
    "spdadd": _Parser.spdadd,
    "spdupdate": _Parser.spdadd,
    "spddelete": _Parser.spddelete,
    "spdflush": _Parser.spdflush,
    "spddump": _Parser.spddump,
}


def parse(text: str, filename: str = "<stdin>") -> list[Statement]:
    """Every statement of text, or the first error.

    Raises:
        SetkeyError: 'FILE:LINE:COL: message'.
    """
    return _Parser(text, filename).statements()
