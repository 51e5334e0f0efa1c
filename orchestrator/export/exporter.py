"""Exporter — serves a lab's metrics over HTTP from its own registry."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from orchestrator.errors import ConfigError
from orchestrator.export.collectors import (
    DrainCollector,
    EspCollector,
    SpdCollector,
    TargetCollector,
    TrafficCollector,
)
from orchestrator.export.scrape import ScrapeCollector
from orchestrator.export.snapshot import Snapshot, TargetSource
from orchestrator.export.targets import RunTargets

DEFAULT_ADDR = "127.0.0.1:9464"


def parse_addr(addr: str) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or ":port" (loopback) → (host, port).

    Raises:
        ConfigError: no port, or a port out of range.
    """
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics address '{addr}': expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class Exporter:
    """Exporter — the collectors over one snapshot, on a registry of its own.

    Life cycle:
      - start(addr): serve /metrics on a daemon thread; returns the bound "host:port";
      - registry: scrape it directly (tests, push);
      - stop(): shut the server down and release the reader threads.

    Args:
        targets: the targets, or a callable returning them at scrape time.
        result_path: result.json for the per-run results; None: no such series.
        traffic_path: traffic.json for the sent counts; None: no such series.
        scrape_timeout: seconds every target gets to answer one scrape.
        workers: threads reading targets in parallel.
    """

    def __init__(
        self,
        targets: TargetSource,
        *,
        result_path: Path | None = None,
        traffic_path: Path | None = None,
        scrape_timeout: float = 2.0,
        workers: int = 16,
    ):
        self.snapshot = Snapshot(targets, timeout=scrape_timeout, workers=workers)
        collectors = [
            TargetCollector(self.snapshot),
            SpdCollector(self.snapshot),
            EspCollector(self.snapshot),
            TrafficCollector(traffic_path, self.snapshot),
            DrainCollector(result_path),
        ]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ScrapeCollector(self.snapshot, collectors))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address: str | None = None

    @classmethod
    def for_run(cls, run_dir: Path | str, *, scrape_timeout: float = 2.0) -> Exporter:
        """Exports what runs/<id>/ records: its targets, result.json and traffic.json."""
        run_dir = Path(run_dir)
        return cls(
            RunTargets(run_dir),
            result_path=run_dir / "result.json",
            traffic_path=run_dir / "traffic.json",
            scrape_timeout=scrape_timeout,
        )

    def start(self, addr: str = DEFAULT_ADDR) -> str:
        """Serve /metrics at addr (port 0: any free port).

        Returns:
            The bound address, "host:port".

        Raises:
            ConfigError: the address cannot be bound.
        """
        host, port = parse_addr(addr)
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {addr}: {e.strerror or e}") from e
        bound = self._server.server_address[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        return self.address

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = self._thread = None
        self.snapshot.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
