"""spdlab's pytest plugin: your own regression tests against a lab that is up.

Installed with spdlab (entry point `pytest11`), it adds the option group "spdlab":
`--spdlab-lab FILE` (or the ini option `spdlab_lab`) names the lab to bring up once per
session, and `--spdlab-keep` leaves it up afterwards (`spdlab down` removes it). Without a
lab every fixture below fails with one line that names the option.

Fixtures:
- `spdlab_lab` (session): the resolved lab (`load_lab`).
- `spdlab_run` (session): the `LabRun`, up for the whole session and torn down at its end,
  also after a failure or Ctrl-C.
- `spdlab_target` (function): `spdlab_target(name)` gives a `Target`.

Example (`pytest --spdlab-lab labs/mine.yaml`):

    from orchestrator.pfkey import messages
    from orchestrator.pfkey.wire import Dir, PolicyType

    def test_policy_goes_in(spdlab_target):
        gw = spdlab_target("gw-netkey")
        c = gw.pfkey()
        c.request(messages.spdadd("10.1.0.0/24", "10.2.0.0/24", dir=Dir.OUT,
                                  policy_type=PolicyType.NONE))
        gw.tick(2)
        assert len(c.spddump()) == 1
        assert gw.admin.request("stats")["spd"]["alive"]["out"] == 1
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab, TargetSpec
    from orchestrator.pfkey.client import PfkeyClient
    from orchestrator.targets.protocols import PfkeyEndpoint, StatsEndpoint
    from orchestrator.targets.session import LabRun


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("spdlab", "spdlab: tests against a lab")
    group.addoption(
        "--spdlab-lab", metavar="FILE", default=None, help="the lab file to bring up (YAML)"
    )
    group.addoption("--spdlab-keep", action="store_true", help="leave the lab up after the session")
    parser.addini("spdlab_lab", "the lab file to bring up (relative to the ini file)")


def lab_path(config: pytest.Config) -> Path | None:
    """The lab file: --spdlab-lab, else the ini option spdlab_lab; None if neither is set."""
    if opt := config.getoption("spdlab_lab"):
        return Path(opt)
    if ini := config.getini("spdlab_lab"):
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / ini
    return None


@pytest.fixture(scope="session")
def spdlab_lab(pytestconfig: pytest.Config) -> ResolvedLab:
    """The resolved lab named by --spdlab-lab (or ini spdlab_lab)."""
    from orchestrator.lab import LabError, load_lab

    path = lab_path(pytestconfig)
    if path is None:
        pytest.fail("spdlab: no lab: give --spdlab-lab FILE (or ini spdlab_lab)", pytrace=False)
    try:
        return load_lab(path)
    except LabError as e:
        pytest.fail(f"spdlab: {e}", pytrace=False)


@pytest.fixture(scope="session")
def spdlab_run(pytestconfig: pytest.Config, spdlab_lab: ResolvedLab) -> Iterator[LabRun]:
    """The lab, up once for the session; torn down at its end unless --spdlab-keep."""
    from orchestrator.errors import SpdlabError
    from orchestrator.targets.session import LabRun

    try:
        lr = LabRun.up(spdlab_lab)  # tears down what it made if it fails or is interrupted
    except SpdlabError as e:
        pytest.fail(f"spdlab: lab '{spdlab_lab.name}' did not come up: {e}", pytrace=False)
    try:
        yield lr
    finally:
        if not pytestconfig.getoption("spdlab_keep"):
            lr.down()


@dataclass
class Target:
    """Target — one target of the lab that is up, as a test sees it.

    Attributes:
        name: the target's name (`gw-netkey`).
        spec: its resolved settings (build, tick_ms, address, labels).
        admin: netkeyd's admin socket: `admin.request("stats")` → dict.
    """

    name: str
    spec: TargetSpec
    admin: StatsEndpoint
    endpoint: PfkeyEndpoint
    clients: list[PfkeyClient] = field(default_factory=list, repr=False)

    def pfkey(self, timeout: float = 5.0) -> PfkeyClient:
        """A connected PfkeyClient; closed when the test ends."""
        client = self.endpoint.connect(timeout=timeout)
        self.clients.append(client)
        return client

    def tick(self, n: int = 1) -> dict[str, Any]:
        """Run n timer ticks now; returns the admin answer (`now`, tick records)."""
        return self.admin.request(f"tick {n}")


@pytest.fixture
def spdlab_target(spdlab_run: LabRun) -> Iterator[Callable[[str], Target]]:
    """spdlab_target(name) → Target; an unknown name fails the test, listing the targets."""
    made: list[Target] = []

    def target(name: str) -> Target:
        if name not in spdlab_run.targets():
            names = ", ".join(spdlab_run.targets())
            pytest.fail(f"spdlab: no target '{name}' in the lab: {names}", pytrace=False)
        assert spdlab_run.lab is not None  # set by LabRun.up
        t = Target(
            name,
            spdlab_run.lab.target(name),
            spdlab_run.stats_endpoint(name),
            spdlab_run.pfkey_endpoint(name),
        )
        made.append(t)
        return t

    yield target
    for t in made:
        for c in t.clients:
            c.close()
