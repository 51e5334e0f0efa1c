"""`spdlab setkey -s SOCKET ...`: setkey(8) against a netkeyd control socket.

`--target NAME [--run RUN]` instead of `-s`: that target's PF_KEY socket in a run (default:
the latest run).

-c reads statements from stdin, -f FILE from a file; -D/-DP dump the SAD/SPD, -F/-FP flush
them; as in KAME's setkey, -D leaves out DEAD SAs unless -a is given. A statement that
does not parse stops everything before anything is sent (exit 2); an error reply is
reported per statement and gives exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.errors import ConfigError
from orchestrator.pfkey import fmt, script, setkey
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Msg
from orchestrator.pfkey.script import Outcome
from orchestrator.pfkey.wire import MsgType, SaState


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "setkey",
        help="setkey(8) statements and dumps over a netkeyd control socket",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("-s", "--socket", metavar="SOCKET", help="netkeyd --control socket")
    where.add_argument("--target", metavar="NAME", help="a target of a run, instead of -s")
    p.add_argument("--run", metavar="RUN", help="with --target: run id or prefix (default: latest)")
    act = p.add_mutually_exclusive_group(required=True)
    act.add_argument(
        "-c", dest="action", action="store_const", const="stdin", help="read statements from stdin"
    )
    act.add_argument("-f", dest="file", metavar="FILE", help="read statements from FILE")
    act.add_argument(
        "-D",
        dest="action",
        action="store_const",
        const="dump",
        help="dump the SAD (with -P: the SPD)",
    )
    act.add_argument(
        "-DP", dest="action", action="store_const", const="spddump", help="dump the SPD"
    )
    act.add_argument(
        "-F",
        dest="action",
        action="store_const",
        const="flush",
        help="flush the SAD (with -P: the SPD)",
    )
    act.add_argument(
        "-FP", dest="action", action="store_const", const="spdflush", help="flush the SPD"
    )
    p.add_argument("-P", dest="policy", action="store_true", help="with -D or -F: the SPD")
    p.add_argument(
        "-a", dest="all", action="store_true", help="with -D: dead SAs too (KAME setkey -D -a)"
    )
    p.add_argument("--json", action="store_true", help="print dumps as JSON")
    p.add_argument("--check", action="store_true", help="with -c/-f: parse only, send nothing")
    p.add_argument(
        "--window",
        type=int,
        default=64,
        metavar="N",
        help="requests in flight at once (default 64)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECS",
        help="wait this long for each reply (default 5)",
    )
    p.set_defaults(func=run, action=None)
    return p


def _render(dump_type: int, entries: list[Msg], as_json: bool) -> str:
    spd = dump_type == MsgType.X_SPDDUMP
    if as_json:
        to_json = fmt.policy_json if spd else fmt.sa_json
        return json.dumps([to_json(m) for m in entries], indent=2) + "\n"
    return fmt.format_spd_dump(entries) if spd else fmt.format_sad_dump(entries)


def visible(entries: list[Msg], show_dead: bool) -> list[Msg]:
    """A SAD dump as setkey -D shows it: DEAD SAs only with -a."""
    if show_dead:
        return entries
    return [m for m in entries if m.sa is None or m.sa.state != SaState.DEAD]


def _report(outcomes: list[Outcome], as_json: bool) -> int:
    failed = 0
    for out in outcomes:
        st = out.statement
        if out.error is not None:
            print(f"spdlab: {out.error}", file=sys.stderr)
            failed += 1
        elif st.is_dump:
            sys.stdout.write(_render(st.msg.type, out.replies, as_json))
        elif st.verb == "get":
            sys.stdout.write(_render(MsgType.DUMP, out.replies, as_json))
    return 1 if failed else 0


def _statements(args: argparse.Namespace) -> int:
    text, name = setkey.read_script(args.file)
    statements = setkey.parse(text, name)
    if args.check:
        print(f"{name}: ok: {len(statements)} statements")
        return 0
    with PfkeyClient(args.socket, timeout=args.timeout, flavour=args.flavour) as client:
        outcomes = script.run(client, statements, args.window)
    return _report(outcomes, args.json)


def _endpoint_of(target: str, run_id: str | None):
    """The PF_KEY endpoint of `target` in a run (None: the latest run)."""
    from orchestrator.targets.session import LabRun

    lr = LabRun.open(run_id)
    if lr.state.phase != "up":  # its sockets are gone or stale: say what was recorded
        from orchestrator.cli.status import state_line
        from orchestrator.errors import InfraError

        raise InfraError(state_line(lr.state))
    if target not in lr.targets():
        names = ", ".join(lr.targets()) or "none"
        raise ConfigError(f"no target '{target}' in run {lr.run_id}: targets are {names}")
    return lr.pfkey_endpoint(target)


def run(args: argparse.Namespace) -> int:
    action = args.action
    if args.run is not None and args.target is None:
        raise ConfigError("--run goes with --target")
    args.flavour = "bsd"  # netkeyd's sockaddrs; a target's endpoint says its own
    if args.target is not None and not args.check:
        ep = _endpoint_of(args.target, args.run)
        args.socket, args.flavour = ep.address, getattr(ep, "flavour", "bsd")
    if args.policy and action in ("dump", "flush"):
        action = "spd" + action
    if args.all and action != "dump":
        raise ConfigError("-a goes with -D (the SAD dump)")
    if args.check and args.file is None and action != "stdin":
        raise ConfigError("--check goes with -c or -f")
    if args.socket is None and not args.check:
        raise ConfigError("setkey needs -s SOCKET (netkeyd's --control socket) or --target NAME")
    if args.file is not None or action == "stdin":
        return _statements(args)
    with PfkeyClient(args.socket, timeout=args.timeout, flavour=args.flavour) as client:
        if action == "dump":
            entries = visible(client.dump_sa(), args.all)
            sys.stdout.write(_render(MsgType.DUMP, entries, args.json))
        elif action == "spddump":
            sys.stdout.write(_render(MsgType.X_SPDDUMP, client.spddump(), args.json))
        elif action == "flush":
            client.flush_sa()
        else:
            client.spdflush()
    return 0
