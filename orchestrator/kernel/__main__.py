"""python -m orchestrator.kernel NAME|--all [--arch A]... [--patch FILE...]: build, cached.

Prints meta.json of each build (its versions), one JSON line each, and exits 0;
bad input is one line and exit 2, a failed build exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.errors import ConfigError, SpdlabError
from orchestrator.kernel import build, conf


def _builds(a: argparse.Namespace) -> list[conf.KernelBuild]:
    if a.all:
        return list(conf.load().values())
    if a.name is None:
        raise ConfigError("give a build name or --all")
    if a.patch:
        return [conf.with_patches(a.name, a.patch, Path.cwd(), a.base)]
    return [conf.get(a.name)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m orchestrator.kernel")
    ap.add_argument("name", nargs="?", help="a build of kernels/builds.conf, or a new name")
    ap.add_argument("--all", action="store_true", help="every build of kernels/builds.conf")
    ap.add_argument("--arch", action="append", choices=conf.ARCHES)
    ap.add_argument("--patch", action="append", default=[], help="a patch file of your own")
    ap.add_argument("--base", help="with --patch: the build whose series comes first")
    a = ap.parse_args(argv)
    try:
        for kb in _builds(a):
            for arch in a.arch or ["x86_64"]:
                b = build.build(kb, arch)
                print(json.dumps({**b.meta, "path": str(b.image), "initramfs": str(b.initramfs)}))
    except ConfigError as e:
        print(f"kernel: {e}", file=sys.stderr)
        return 2
    except SpdlabError as e:
        print(f"kernel: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
