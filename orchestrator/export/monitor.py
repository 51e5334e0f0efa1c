"""Prometheus from Debian's package, run next to spdlab with the project's config."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from orchestrator.errors import ConfigError, InfraError
from orchestrator.export.file_sd import SD_DIR
from orchestrator.proc import terminate
from orchestrator.runs import project_root, runs_dir
from orchestrator.wait import WaitTimeout, until

MONITORING = project_root() / "monitoring"
TEMPLATE = MONITORING / "prometheus" / "prometheus.yml"


def tool(name: str) -> Path:
    """prometheus or promtool: the unpacked Debian package first, else $PATH.

    Raises:
        ConfigError: neither has it.
    """
    local = project_root() / ".cache" / "prometheus" / "usr" / "bin" / name
    if local.exists():
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ConfigError(f"{name} not found: run scripts/deps.sh prometheus")


def render_config(
    dest: Path,
    *,
    runs: Path | None = None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    rule_files: list[Path] | None = None,
    template: Path = TEMPLATE,
) -> Path:
    """The template with absolute paths, written to dest/prometheus.yml.

    Args:
        dest: folder for the rendered config.
        runs: the runs folder whose prometheus-sd/*.json lists are scraped
            (default: runs_dir(), which honours $SPDLAB_RUNS_DIR).
        scrape_interval, evaluation_interval: override the template's, e.g. "1s".
        rule_files: replace the template's rule files.

    Returns:
        The rendered file.
    """
    doc: dict[str, Any] = yaml.safe_load(template.read_text(encoding="utf-8"))
    glob = str((runs or runs_dir()).resolve() / SD_DIR / "*.json")
    here = template.parent
    g = doc.setdefault("global", {})
    if scrape_interval:
        g["scrape_interval"] = scrape_interval
        g["scrape_timeout"] = scrape_interval  # may not exceed the interval
    if evaluation_interval:
        g["evaluation_interval"] = evaluation_interval
    files = rule_files if rule_files is not None else [here / f for f in doc.get("rule_files", [])]
    doc["rule_files"] = [str(Path(f).resolve()) for f in files]
    for job in doc.get("scrape_configs", []):
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [glob]
            if scrape_interval:
                sd["refresh_interval"] = scrape_interval
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "prometheus.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


class Prometheus:
    """Prometheus — one prometheus process on loopback, started and stopped by PID.

    Life cycle:
      - start(): spawn, wait until /-/ready answers;
      - query(expr): the HTTP API;
      - stop(): SIGTERM, wait.

    Args:
        config: a rendered prometheus.yml.
        data: the TSDB folder.
        listen: "host:port" for the web UI and API.
    """

    def __init__(self, config: Path, data: Path, listen: str = "127.0.0.1:9090"):
        self.config = config
        self.data = data
        self.listen = listen
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def argv(self) -> list[str]:
        return [
            str(tool("prometheus")),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data}",
            f"--web.listen-address={self.listen}",
            "--web.enable-lifecycle",
        ]

    def start(self, timeout: float = 60.0) -> Prometheus:
        self.data.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        proc = self.proc
        try:
            until(self._ready, "prometheus ready", timeout, alive=lambda: proc.poll() is None)
        except WaitTimeout as e:
            code = proc.poll()
            self.stop()
            if code is not None:
                raise InfraError(f"prometheus exited with {code}: {self.tail()}") from e
            raise InfraError(f"prometheus not ready within {timeout:g} s: {self.tail()}") from e
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; returns `data`.

        Raises:
            InfraError: an HTTP or API error.
        """
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                doc = json.load(r)
        except urllib.error.HTTPError as e:
            raise InfraError(f"{path}: {e.code}: {e.read().decode(errors='replace')}") from e
        except OSError as e:
            raise InfraError(f"{path}: {e}") from e
        if doc.get("status") != "success":
            raise InfraError(f"{path}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)["result"]

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        terminate(self.proc, timeout)
        self.proc = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
