"""Prometheus collectors, one per file; each reads its source fresh on every scrape."""

from orchestrator.export.collectors.drain import DrainCollector
from orchestrator.export.collectors.esp import EspCollector
from orchestrator.export.collectors.spd import SpdCollector
from orchestrator.export.collectors.target import TargetCollector
from orchestrator.export.collectors.traffic import TrafficCollector

__all__ = ["DrainCollector", "EspCollector", "SpdCollector", "TargetCollector", "TrafficCollector"]
