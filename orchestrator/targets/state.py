"""state.json: everything a run creates, recorded before it is created, written atomically."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from orchestrator import atomic

STATE_VERSION = 1


def write_json_atomic(path: Path, doc: Any) -> None:
    """state.json's layout (sorted, indent 1), written through orchestrator.atomic."""
    atomic.write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StateFile:
    """A run's state.json: phase, targets and the list of resources to remove on `down`.

    Resources are dicts with a `type`: netns (name), link (name, netns, what: veth|bridge),
    process (pid, match: a string its command line contains, target), processes (env:
    the NAME=value every process of the run starts with, recorded before any starts),
    file (path), container (name, run: the run id its label must carry, target).
    """

    def __init__(self, path: Path):
        self.path = path
        self.doc: dict[str, Any] = {}

    @classmethod
    def create(cls, path: Path, **fields: Any) -> StateFile:
        st = cls(path)
        now = _now()
        st.doc = {"version": STATE_VERSION, "created": now, "phase": "new", "since": now}
        st.doc |= {"targets": {}, "resources": [], **fields}
        st.save()
        return st

    @classmethod
    def load(cls, path: Path) -> StateFile:
        st = cls(path)
        st.doc = json.loads(path.read_text(encoding="utf-8"))
        return st

    def save(self) -> None:
        write_json_atomic(self.path, self.doc)

    @property
    def phase(self) -> str:
        return self.doc.get("phase", "new")

    @property
    def since(self) -> str:
        """When the run entered its phase (UTC)."""
        return self.doc.get("since") or self.doc.get("created", "?")

    def set(self, **fields: Any) -> None:
        """Update top-level fields (phase, error, ...); a new phase notes when (`since`)."""
        if "phase" in fields and fields["phase"] != self.doc.get("phase"):
            fields["since"] = _now()
        self.doc.update(fields)
        self.save()

    def set_target(self, name: str, **fields: Any) -> None:
        self.doc["targets"].setdefault(name, {}).update(fields)
        self.save()

    def set_targets(self, targets: dict[str, dict[str, Any]]) -> None:
        for name, fields in targets.items():
            self.doc["targets"].setdefault(name, {}).update(fields)
        self.save()

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        return self.doc["targets"]

    def record(self, *resources: dict[str, Any]) -> None:
        """Append resources (skipping ones already recorded) and save, before creating them."""
        have = {json.dumps(r, sort_keys=True) for r in self.doc["resources"]}
        for r in resources:
            key = json.dumps(r, sort_keys=True)
            if key not in have:
                have.add(key)
                self.doc["resources"].append(dict(r))
        self.save()

    def resources(self, rtype: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.doc["resources"] if rtype is None or r["type"] == rtype]
