"""A two-namespace lab for traffic tests: netkeyd in a gateway namespace, a traffic namespace.

    traffic ns (TR, 10.98.0.2/24) ==veth== gateway ns (GW, 10.98.0.1/24, netkeyd --esp --natt)

`traffic_lab(build=..., tick_ms=..., flow_idle_ticks=...)` (a pytest fixture factory) brings
one up; everything it made (namespaces, the veth, netkeyd, sender processes, sockets) is gone
after the test, pass or fail, and the teardown checks that. Namespace names start with
$SPDLAB_TEST_NETNS_PREFIX (default "spdt").
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lab.builds import binary_path
from orchestrator.netkeyd import Netkeyd
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Msg
from orchestrator.traffic.link import Link, open_link
from orchestrator.traffic.run import TrafficRun
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.scenario import Scenario
from orchestrator.traffic.sender import Pacing
from orchestrator.wait import WaitTimeout, until

GW, TR = "10.98.0.1", "10.98.0.2"
PREFIX = os.environ.get("SPDLAB_TEST_NETNS_PREFIX", "spdt")
FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

# Root and iproute2 are checked once per session (tests/conftest.py), never skipped.
needs_netns = pytest.mark.netns


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def ensure_built(build: str) -> None:
    if not binary_path(build).exists():
        r = subprocess.run(
            [str(FIRMWARE / "mkbuild.sh"), build], capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            pytest.fail(f"firmware build {build} failed:\n{r.stdout}{r.stderr}")


class TrafficLab:
    """TrafficLab — netkeyd in a gateway namespace, a traffic namespace, a veth between.

    Life cycle: up() → install()/traffic()/link() → down() (idempotent, always run).
    """

    def __init__(self, workdir: Path, build: str, tick_ms: int, flow_idle_ticks: int):
        tag = secrets.token_hex(3)
        self.gw_ns, self.tr_ns = f"{PREFIX}-{tag}-gw", f"{PREFIX}-{tag}-tr"
        self.veth = f"{PREFIX[:4]}{tag}"
        self.workdir = workdir
        self.build = build
        self.tick_ms = tick_ms
        self.flow_idle_ticks = flow_idle_ticks
        self.nk: Netkeyd | None = None
        self.runs: list[TrafficRun] = []
        self.links: list[Link] = []
        self.pids: list[int] = []

    def up(self) -> TrafficLab:
        ensure_built(self.build)
        _ip("netns", "add", self.gw_ns)
        _ip("netns", "add", self.tr_ns)
        _ip("link", "add", f"{self.veth}g", "netns", self.gw_ns, "type", "veth",
            "peer", "name", f"{self.veth}t", "netns", self.tr_ns)  # fmt: skip
        for ns, dev, addr in ((self.gw_ns, "g", GW), (self.tr_ns, "t", TR)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", self.veth + dev)
            _ip("-n", ns, "link", "set", self.veth + dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        self.nk = Netkeyd(
            self.build,
            self.workdir / "netkeyd",
            tick_ms=self.tick_ms,
            flow_idle_ticks=self.flow_idle_ticks,
            netns=self.gw_ns,
            extra=("--esp", GW, "--natt", GW),
        )
        self.nk.start()
        self.pids.append(self.nk.pid)
        return self

    def down(self) -> None:
        for run in self.runs:
            for p in run.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for link in self.links:
            link.close()
        if self.nk is not None:
            self.nk.stop()
        for ns in (self.gw_ns, self.tr_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def leftovers(self) -> list[str]:
        """What down() failed to remove: namespaces and live processes."""
        left = sorted({self.gw_ns, self.tr_ns} & netns_names())
        for pid in self.pids:
            try:
                os.kill(pid, 0)
                left.append(f"pid {pid}")
            except ProcessLookupError:
                pass
        return left

    # ------------------------------------------------------------ using it

    @property
    def admin(self) -> Any:
        assert self.nk is not None
        return self.nk.admin

    def pfkey(self) -> PfkeyClient:
        assert self.nk is not None
        return self.nk.pfkey(timeout=30)

    def pipeline(self, msgs: list[Msg]) -> list[Msg]:
        with self.pfkey() as c:
            replies = c.pipeline(msgs, window=64)
        bad = [r for r in replies if r.errno]
        assert not bad, f"{len(bad)} PF_KEY requests failed, first errno {bad[0].errno}"
        return replies

    def install(self, sc: Scenario) -> None:
        self.pipeline(sc.sa_msgs + sc.policy_msgs)

    def traffic(self, spec: TrafficSpec, pacing: Pacing, **kw: Any) -> TrafficRun:
        """A started TrafficRun in the traffic namespace, stopped by down() at the latest."""
        run = TrafficRun(spec, self.workdir / f"traffic{len(self.runs)}", self.tr_ns, pacing, **kw)
        self.runs.append(run)
        run.start()
        self.pids.append(run.pid)  # type: ignore[arg-type]
        return run

    def link(self, kind: str = "ip") -> Link:
        """An open link (socket) in the traffic namespace, for hand-made packets."""
        link = open_link(kind, self.tr_ns)
        self.links.append(link)
        return link

    def esp(self) -> dict[str, int]:
        e = self.admin.stats()["esp"]
        return {"ok": e["ok"], **e["drop"]}

    def wait_esp(self, total: int, before: dict[str, int] | None = None, timeout: float = 60):
        """Wait until ok + drops moved by `total` since `before`; the moved counters.

        On timeout the counters are returned as they are, for the caller's assertion.
        """
        before = before or dict.fromkeys(self.esp(), 0)

        def moved() -> dict[str, int]:
            now = self.esp()
            return {k: now[k] - before[k] for k in now if now[k] != before[k]}

        with contextlib.suppress(WaitTimeout):
            until(lambda: sum(moved().values()) >= total, f"{total} ESP packets counted", timeout)
        return moved()


@pytest.fixture
def traffic_lab(tmp_path: Path) -> Iterator[Callable[..., TrafficLab]]:
    """Factory: traffic_lab(build="netkey", tick_ms=0, flow_idle_ticks=30) -> a lab that is up."""
    labs: list[TrafficLab] = []

    def make(build: str = "netkey", tick_ms: int = 0, flow_idle_ticks: int = 30) -> TrafficLab:
        lab = TrafficLab(tmp_path / f"lab{len(labs)}", build, tick_ms, flow_idle_ticks)
        labs.append(lab)
        return lab.up()

    try:
        yield make
    finally:
        for lab in labs:
            lab.down()
        left = [x for lab in labs for x in lab.leftovers()]
        assert not left, f"left behind: {left}"
