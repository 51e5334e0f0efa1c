"""`spdlab monitor`: run Prometheus (Debian's package) with spdlab's config; prints its URL."""

from __future__ import annotations

import argparse
import signal
import threading


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("monitor", help="run Prometheus for spdlab's runs", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:9090", metavar="HOST:PORT",
                   help="Prometheus web UI and API (default 127.0.0.1:9090)")  # fmt: skip
    p.add_argument("--scrape-interval", metavar="DURATION",
                   help="override the config's scrape and rule interval, e.g. 1s")  # fmt: skip
    p.add_argument("--data", metavar="DIR",
                   help="TSDB and rendered config (default .cache/monitor)")  # fmt: skip
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.export.monitor import Prometheus, render_config
    from orchestrator.runs import project_root, runs_dir
    from orchestrator.targets.preflight import port_free, require

    require([port_free(args.listen, "--listen", "give a free one, e.g. --listen 127.0.0.1:9091")])

    home = Path(args.data) if args.data else project_root() / ".cache" / "monitor"
    interval = args.scrape_interval
    config = render_config(home, scrape_interval=interval, evaluation_interval=interval)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Prometheus(config, home / "data", args.listen) as prom:
        print(prom.url, flush=True)
        print(f"scraping runs under {runs_dir()}; config {config}; Ctrl-C stops", flush=True)
        while not stop.wait(1.0):
            if prom.proc is None or prom.proc.poll() is not None:
                print(f"spdlab: prometheus exited: {prom.tail()}", flush=True)
                return 3
    return 0
