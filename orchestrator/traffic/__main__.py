"""`python -m orchestrator.traffic JOB.json`: the sender process TrafficRun spawns.

Runs the job until its pacing ends or SIGTERM/SIGINT arrives, then prints the final stats
as one JSON line. Exit status 0 on success, 2 on a bad job, 3 on an infrastructure error.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from orchestrator.errors import SpdlabError
from orchestrator.traffic.run import execute, load_job


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestrator.traffic JOB.json", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stats = execute(load_job(Path(args[0])), stop)
    except SpdlabError as e:
        print(f"traffic: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(stats.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
