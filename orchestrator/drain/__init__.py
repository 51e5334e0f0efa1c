"""Drain measurement: per-tick records, verdicts and comparisons."""
