"""junit.xml: one testcase per target; a failure carries expectation and measurement.

A measure the target cannot observe is written as "—" with its reason, never 0;
an UNRESOLVED target is skipped, with the check it could not measure. A synthetic
control's testcase says so: the property `synthetic` and "(synthetic)" in its output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator import atomic
from orchestrator.result.measure import Footnotes
from orchestrator.result.model import RunResult, TargetResult

SHOWN = ("drain_ticks", "free_ticks", "premature_frees", "use_after_free")


def _suite(res: RunResult) -> ET.Element:
    ts = res.targets
    suite = ET.Element(
        "testsuite",
        name=f"spdlab.{res.lab.name}",
        tests=str(len(ts)),
        failures=str(sum(t.verdict == "FAIL" for t in ts)),
        errors=str(sum(t.verdict == "INFRA-ERROR" for t in ts)),
        skipped=str(sum(t.verdict == "UNRESOLVED" for t in ts)),
        timestamp=res.started,
    )
    props = ET.SubElement(suite, "properties")
    sc = res.scenario
    for k, v in (("run_id", res.run_id), ("tick_ms", res.tick_ms), ("delete", sc.delete),
                 ("traffic", sc.traffic), ("deterministic", sc.deterministic),
                 ("seed", sc.seed)):  # fmt: skip
        ET.SubElement(props, "property", name=k, value=str(v))
    return suite


def _case(suite: ET.Element, t: TargetResult) -> None:
    case = ET.SubElement(suite, "testcase", classname=f"spdlab.{t.build}", name=t.name,
                         time=f"{(t.drain_seconds or 0):.3f}")  # fmt: skip
    props = ET.SubElement(case, "properties")
    ET.SubElement(props, "property", name="synthetic", value=str(t.synthetic).lower())
    if t.verdict == "FAIL":
        f = ET.SubElement(case, "failure", message=t.reason, type="expectation")
        f.text = "\n".join(f"{c.name}: expected {c.expected}, measured {c.measured}"
                           f"{'' if c.ok else '  <-- ' + c.status}" for c in t.checks)  # fmt: skip
    elif t.verdict == "INFRA-ERROR":
        ET.SubElement(case, "error", message=t.reason, type="infra")
    elif t.verdict == "UNRESOLVED":
        ET.SubElement(case, "skipped", message=t.reason)
    ET.SubElement(case, "system-out").text = _measures(t)


def _measures(t: TargetResult) -> str:
    notes = Footnotes()
    line = " ".join(f"{k}={notes.cell(getattr(t.measures, k))}" for k in SHOWN)
    head = [f"{t.build} (synthetic): a synthetic positive control"] if t.synthetic else []
    return "\n".join([*head, line, *notes.lines()])


def render(res: RunResult) -> bytes:
    suite = _suite(res)
    for t in res.targets:
        _case(suite, t)
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def write(path: Path, res: RunResult) -> None:
    atomic.write_bytes(path, render(res))
