"""The lab file: raw YAML → pydantic definition → resolved, sorted runtime specs."""

from orchestrator.lab.load import LabError, load_lab, read_lab
from orchestrator.lab.model import Expectation, LabDef, Scenario, TargetDef
from orchestrator.lab.resolve import ResolvedLab, TargetSpec, TrafficHostSpec, resolve

__all__ = [
    "Expectation",
    "LabDef",
    "LabError",
    "ResolvedLab",
    "Scenario",
    "TargetDef",
    "TargetSpec",
    "TrafficHostSpec",
    "load_lab",
    "read_lab",
    "resolve",
]
