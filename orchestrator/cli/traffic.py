"""`spdlab traffic`: send ESP for the SAs and inbound policies of a setkey file.

One flow per inbound (-P in) IPsec policy, over the first SA that satisfies it. Pace with
--rate (until --duration, --count or Ctrl-C), --flood (as fast as possible), or
--keepalive-ticks N --tick-ms M (one packet per flow every N ticks, until Ctrl-C).
With --install the file is first sent to the target's control socket; with --admin the
gateway's ESP counters are read before and after, and their change is printed.

Sequence numbers start at --seq-base for every SA; a second run against the same SAs is
a replay unless it continues from --seq-state FILE (or starts above the first's numbers).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "traffic",
        help="send ESP traffic for a setkey file's SAs and inbound policies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--setkey", required=True, metavar="FILE", help="SAs and policies (setkey -f)")
    p.add_argument("--netns", metavar="NS", help="send from this network namespace")
    p.add_argument("--control", metavar="SOCK", help="the target's netkeyd --control socket")
    p.add_argument("--install", action="store_true", help="send FILE to --control first")
    p.add_argument("--admin", metavar="SOCK", help="the target's --admin socket, for counters")
    pace = p.add_mutually_exclusive_group(required=True)
    pace.add_argument("--rate", type=float, metavar="PPS", help="packets per second")
    pace.add_argument("--flood", action="store_true", help="as fast as possible")
    pace.add_argument(
        "--keepalive-ticks", type=int, metavar="N", help="one packet per flow every N ticks"
    )
    p.add_argument("--tick-ms", type=int, metavar="MS", help="the target's tick, for keepalive")
    p.add_argument("--duration", type=float, metavar="SECS", help="stop after SECS")
    p.add_argument("--count", type=int, metavar="N", help="stop after N packets")
    p.add_argument(
        "--link", choices=("ip", "packet"), default="ip", help="raw IPv4 or AF_PACKET socket"
    )
    p.add_argument("--seq-state", metavar="FILE", help="continue sequence numbers kept here")
    p.add_argument("--seq-base", type=int, default=1, metavar="N", help="first sequence number")
    p.add_argument("--pcap", metavar="FILE", help="write the first packets to FILE")
    p.add_argument("--pcap-count", type=int, default=32, metavar="K", help="packets in --pcap")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def _check(args: argparse.Namespace) -> None:
    """Conflicting or incomplete flags, as one-line ConfigErrors."""
    if args.install and not args.control:
        raise ConfigError("--install needs --control SOCK")
    if args.keepalive_ticks is not None:
        if args.tick_ms is None:
            raise ConfigError("--keepalive-ticks needs --tick-ms (the target's tick length)")
        if args.keepalive_ticks < 1 or args.tick_ms < 1:
            raise ConfigError("--keepalive-ticks and --tick-ms must be >= 1")
        if args.duration is not None or args.count is not None:
            raise ConfigError("keepalive runs until Ctrl-C: drop --duration/--count")
    elif args.tick_ms is not None:
        raise ConfigError("--tick-ms is for --keepalive-ticks")
    if args.flood and args.duration is None and args.count is None:
        raise ConfigError("--flood needs --duration or --count")
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate must be > 0")
    if args.pcap_count < 1:
        raise ConfigError("--pcap-count must be >= 1")


def _esp(admin: Any) -> dict[str, Any]:
    esp = admin.stats()["esp"]
    return {"ok": esp["ok"], **{f"drop.{k}": v for k, v in esp["drop"].items()}}


def run(args: argparse.Namespace) -> int:
    from orchestrator.pfkey import script, setkey
    from orchestrator.traffic.run import TrafficJob, execute
    from orchestrator.traffic.scenario import from_messages
    from orchestrator.traffic.sender import Pacing

    _check(args)
    text, name = setkey.read_script(args.setkey)
    statements = setkey.parse(text, name)
    spec = from_messages(st.msg for st in statements)
    if args.keepalive_ticks is not None:
        pacing = Pacing.keepalive(len(spec.flows), args.keepalive_ticks, args.tick_ms)
    else:
        mode = "flood" if args.flood else "rate"
        pacing = Pacing(mode, rate=args.rate, duration=args.duration, count=args.count)
    if args.install:
        _install(args.control, statements, script)
    admin = None
    if args.admin:
        from orchestrator.targets.admin import AdminClient

        admin = AdminClient(args.admin)
        before = _esp(admin)
    job = TrafficJob(
        spec,
        pacing,
        netns=args.netns,
        link=args.link,
        seq_state=args.seq_state,
        seq_base=args.seq_base,
        pcap=args.pcap,
        pcap_count=args.pcap_count,
    )
    from orchestrator.interrupts import interrupts

    with interrupts(raise_first=False) as stop:  # Ctrl-C ends the run cleanly
        stats = execute(job, stop)
    result: dict[str, Any] = {"sender": stats.to_json()}
    if admin is not None:
        after = _esp(admin)
        result["gateway"] = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        admin.close()
    _print(result, args.json)
    return 0


def _install(control: str, statements: list, script: Any) -> None:
    from orchestrator.pfkey.client import PfkeyClient

    with PfkeyClient(control) as client:
        outcomes = script.run(client, statements)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise ConfigError(f"--install: {len(failed)} statements failed, first: {failed[0].error}")


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    s = result["sender"]
    target = f" (target {s['target_pps']:.0f})" if s["target_pps"] else ""
    print(
        f"sent {s['sent']} packets on {s['flows']} flows / {s['sas']} SAs in "
        f"{s['elapsed']:.2f}s: {s['rate_pps']:.0f} pps{target}, {s['errors']} send errors"
    )
    if "gateway" in result:
        g = result["gateway"]
        print("gateway: " + (", ".join(f"{k} +{v}" for k, v in g.items()) or "no change"))
