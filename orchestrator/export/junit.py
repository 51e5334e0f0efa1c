"""junit.xml: one testcase per target; a failure carries expectation and measurement."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def render(doc: dict[str, Any]) -> bytes:
    targets = doc["targets"]
    fails = sum(t["verdict"] == "FAIL" for t in targets)
    errors = sum(t["verdict"] == "INFRA-ERROR" for t in targets)
    suite = ET.Element(
        "testsuite",
        name=f"spdlab.{doc['lab']['name']}",
        tests=str(len(targets)),
        failures=str(fails),
        errors=str(errors),
        timestamp=doc.get("started", ""),
    )
    props = ET.SubElement(suite, "properties")
    for k in ("run_id", "tick_ms"):
        ET.SubElement(props, "property", name=k, value=str(doc[k]))
    ET.SubElement(props, "property", name="delete", value=doc["scenario"]["delete"])
    for t in targets:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"spdlab.{t['build']}",
            name=t["name"],
            time=f"{(t.get('drain_seconds') or 0):.3f}",
        )
        if t["verdict"] == "FAIL":
            f = ET.SubElement(case, "failure", message=t["reason"], type="expectation")
            f.text = "\n".join(
                f"{c['name']}: expected {c['expected']}, measured {c['measured']}"
                f"{'' if c['ok'] else '  <-- missed'}"
                for c in t.get("checks", [])
            )
        elif t["verdict"] == "INFRA-ERROR":
            ET.SubElement(case, "error", message=t["reason"], type="infra")
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"drain_ticks={t.get('drain_ticks')} free_ticks={t.get('free_ticks')} "
            f"premature_frees={t.get('premature_frees')} use_after_free={t.get('use_after_free')}"
        )
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(render(doc))
    os.replace(tmp, path)
