"""`python -m orchestrator.traffic.remote WORKDIR`: a lab host's traffic sender, over SSH.

The job comes as the first line of stdin, so its keys never appear on a command line;
the sender's stats go to stdout as one JSON line per report, the final ones last. When
stdin closes (spdlab stops the sender, or its ssh is gone after a crash) it stops.
Sequence state and stats stay in WORKDIR on the host.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from orchestrator.errors import SpdlabError
from orchestrator.traffic.run import TrafficJob, execute


def _report(stats_path: Path, done: threading.Event, every: float) -> None:
    last = b""
    while not done.wait(every / 2):
        try:
            doc = stats_path.read_bytes()
        except OSError:
            continue
        if doc != last and doc.strip():
            last = doc
            sys.stdout.write(json.dumps({"stats": json.loads(doc)}) + "\n")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestrator.traffic.remote WORKDIR < job", file=sys.stderr)
        return 2
    workdir = Path(args[0])
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        job = TrafficJob.from_json(json.loads(sys.stdin.readline()))
    except (ValueError, KeyError, TypeError) as e:
        print(f"traffic: not a traffic job: {e}", file=sys.stderr)
        return 2
    job.seq_state, job.stats_path = str(workdir / "seq.json"), str(workdir / "stats.json")
    job.pcap = None
    stop, done = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    reporter = threading.Thread(target=_report, args=(Path(job.stats_path), done,
                                                       job.report_every))  # fmt: skip
    reporter.start()
    try:
        stats = execute(job, stop)
    except SpdlabError as e:
        print(f"traffic: {e}", file=sys.stderr)
        return e.exit_code
    finally:
        done.set()
        reporter.join()
    sys.stdout.write(json.dumps({"stats": stats.to_json()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
