"""spdlab command line: dispatches to one module per verb."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from orchestrator import __version__
from orchestrator.errors import SpdlabError

# Declared, not discovered: each verb lives in orchestrator/cli/<verb>.py.
VERBS: tuple[str, ...] = (
    "setkey",
    "validate",
    "up",
    "status",
    "down",
    "matrix",
    "run",
    "compare",
    "bisect",
    "traffic",
    "serve",
    "monitor",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spdlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"spdlab {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        module = importlib.import_module(f"orchestrator.cli.{verb}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SpdlabError as e:
        for line in str(e).splitlines() or [type(e).__name__]:  # preflight: one per check
            print(f"spdlab: {line}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the machine refused (a read-only runs folder, a full disk)
        where = f": {e.filename}" if e.filename else ""
        print(f"spdlab: {e.strerror or e}{where}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("spdlab: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
