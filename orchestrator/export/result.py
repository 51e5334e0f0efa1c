"""result.json: one run's scenario, per-target per-tick series and verdicts.

Written atomically at every phase, so a run that is interrupted or dies
leaves a readable file marked incomplete.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.drain.compare import build_series
from orchestrator.lab.builds import binary_path
from orchestrator.targets.state import write_json_atomic

SCHEMA = "spdlab.result/1"
SCHEMA_FILE = Path(__file__).with_name("result.schema.json")


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def versions(builds: list[str]) -> dict[str, Any]:
    """spdlab, the host, and each netkeyd build with its patch series and hashes."""
    series = build_series()
    patches_dir = binary_path("x").parents[2] / "patches"
    out: dict[str, Any] = {
        "spdlab": __version__,
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "builds": {},
    }
    for b in sorted(set(builds)):
        tree, patches = series.get(b, ("unknown", ()))
        out["builds"][b] = {
            "tree": tree,
            "patches": [
                {"name": p, "sha256": _sha256(patches_dir / f"{p}.patch")} for p in patches
            ],
            "netkeyd_sha256": _sha256(binary_path(b)),
        }
    return out


def write(path: Path, doc: dict[str, Any]) -> None:
    write_json_atomic(path, doc)


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} file")
    return doc


def validate(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if doc does not match the schema."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))
