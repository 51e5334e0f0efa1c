"""Exports: Prometheus collectors, result.json, JUnit, plots and reports."""
