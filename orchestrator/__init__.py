"""spdlab: a testbed orchestrator for IPsec gateways."""

__version__ = "0.1.0"
