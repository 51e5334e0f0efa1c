"""Exporter — serves a lab's metrics over HTTP from its own registry."""

from __future__ import annotations

import errno
import socket
import threading
from pathlib import Path
from types import TracebackType
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from orchestrator.errors import ConfigError, InfraError
from orchestrator.export.collectors import (
    DrainCollector,
    EspCollector,
    SpdCollector,
    TargetCollector,
    TrafficCollector,
)
from orchestrator.export.scrape import ScrapeCollector
from orchestrator.export.scrapelog import ScrapeLog, WsgiApp
from orchestrator.export.snapshot import Snapshot, TargetSource
from orchestrator.export.targets import RunTargets

DEFAULT_ADDR = "127.0.0.1:9464"


METRICS_FIX = (
    "give a free one (--metrics-addr 127.0.0.1:0 picks any), or --metrics-addr '' for none"
)


def parse_addr(addr: str) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or ":port" (loopback) → (host, port).

    Raises:
        ConfigError: no port, or a port out of range.
    """
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics address '{addr}': expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged."""


def _serve(host: str, port: int, app: WsgiApp) -> tuple[WSGIServer, threading.Thread]:
    """prometheus_client's start_http_server, with our own WSGI app in front."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(sockaddr[0], port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="spdlab-metrics", daemon=True)
    thread.start()
    return server, thread


class Exporter:
    """Exporter — the collectors over one snapshot, on a registry of its own.

    Life cycle:
      - start(addr): serve /metrics on a daemon thread; returns the bound "host:port";
      - registry: scrape it directly (tests, push);
      - linger(): before the targets go away, wait (bounded) until the scraper has
        seen the last state;
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
        self.scrapes = ScrapeLog()
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
            ConfigError: not an address.
            InfraError: the address cannot be bound (in use, or not this machine's).
        """
        host, port = parse_addr(addr)
        try:
            app = self.scrapes.wrap(make_wsgi_app(self.registry))
            self._server, self._thread = _serve(host, port, app)
        except OSError as e:
            why = "in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise InfraError(f"--metrics-addr {addr}: {why}; fix: {METRICS_FIX}") from e
        bound = self._server.server_address[1]
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        return self.address

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def linger(self, timeout: float | None = None) -> bool:
        """Keep serving until a scrape that begins now has been answered.

        Call it once the last state is published (result.json written) and before the
        targets go down, so a scraper records the run's final series. Bounded: see
        ScrapeLog.wait_next; nothing to wait for when nobody scrapes.

        Returns:
            True if a scraper saw the state as it was at the call.
        """
        if self._server is None:
            return False
        return self.scrapes.wait_next(timeout)

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
