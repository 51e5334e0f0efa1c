"""`spdlab serve LAB|RUN`: export a lab's metrics for Prometheus until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="export a lab's metrics for Prometheus", description=__doc__)
    p.add_argument("target", metavar="LAB|RUN", nargs="?",
                   help="a lab file (its newest up run), a run id or a runs/<id> folder "
                        "(default: the latest run)")  # fmt: skip
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="serve /metrics there (default 127.0.0.1:9464; port 0: any)")  # fmt: skip
    p.add_argument("--scrape-timeout", type=float, default=2.0, metavar="S",
                   help="seconds the targets get to answer one scrape (default 2)")  # fmt: skip
    p.add_argument("--pushgateway", metavar="URL",
                   help="also push the run summary there when result.json changes")  # fmt: skip
    p.add_argument("--no-file-sd", action="store_true",
                   help="do not write runs/<id>/prometheus-targets.json")  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.errors import ConfigError
    from orchestrator.export.exporter import DEFAULT_ADDR
    from orchestrator.export.serve import serve

    if args.scrape_timeout <= 0:
        raise ConfigError("--scrape-timeout must be positive")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def started(run_dir, url) -> None:
        print(f"serving {url} for run {run_dir.name}", file=sys.stderr, flush=True)

    serve(
        args.target,
        addr=args.metrics_addr or DEFAULT_ADDR,
        scrape_timeout=args.scrape_timeout,
        pushgateway=args.pushgateway,
        file_sd=not args.no_file_sd,
        stop=stop,
        on_start=started,
    )
    return 0
