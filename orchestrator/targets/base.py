"""The target driver interface: one class per kind, registered in registry.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator import atomic
from orchestrator.errors import InfraError
from orchestrator.proc import run_env
from orchestrator.progress import NullProgress, Progress

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab, TargetSpec
    from orchestrator.runs import RunDir
    from orchestrator.targets.preflight import Unmet
    from orchestrator.targets.protocols import PfkeyEndpoint, StatsEndpoint
    from orchestrator.targets.state import StateFile


@dataclass
class Health:
    """One target's health, as `spdlab status` shows it."""

    name: str
    kind: str
    build: str
    healthy: bool
    pid: int | None = None
    reason: str = ""
    policies: int | None = None  # alive policies (in + out)
    dead: int | None = None  # dead policies still allocated

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrafficHost:
    """Where a target's traffic comes from: this machine's traffic host, or a lab host's.

    Attributes:
        key: "" for this machine, else the lab host's name (one sender per key).
        netns: the traffic host's namespace there.
        lab_host: the LabHost to run the sender on over SSH; None: here.
    """

    key: str
    netns: str | None
    lab_host: Any = None


class TargetDriver(ABC):
    """TargetDriver — runs one run's targets of one kind.

    Life cycle:
    - preconditions(lab): what the kind needs of the machine, checked before anything
      is created (the engine's preflight phase, `spdlab validate --preflight`).
    - provision(): build the firmware, create the network and each target's place;
      every resource is recorded in state.json before it is created.
    - start(): start the firmware; returns once every target answers PF_KEY REGISTER.
    - pfkey_endpoint(name), stats_endpoint(name), health(name): while up.
    - collect(name, dest): copy logs and dumps out, at any time.
    - stop(): stop the firmware.
    - teardown(): remove everything state.json records; idempotent, works after a crash.

    Args:
        run: the run directory.
        state: its state file (the source of truth for teardown).
        lab: the resolved lab; None when only reading or tearing down a run.
        progress: receives per-phase progress.
        cancel: polled during long steps; True aborts them.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        run: RunDir,
        state: StateFile,
        lab: ResolvedLab | None = None,
        *,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ):
        self.run = run
        self.state = state
        self.lab = lab
        self.progress = progress or NullProgress()
        self.cancel = cancel or (lambda: False)
        # targets that could not come up, each with its reason, while the others did
        self.failed: dict[str, str] = {}

    @property
    def specs(self) -> list[TargetSpec]:
        """This kind's targets from the lab (provision/start only)."""
        return [] if self.lab is None else self.lab_specs(self.lab)

    @classmethod
    def lab_specs(cls, lab: ResolvedLab) -> list[TargetSpec]:
        return [t for t in lab.targets if t.kind == cls.kind]

    @classmethod
    @abstractmethod
    def preconditions(cls, lab: ResolvedLab) -> list[Unmet | None]:
        """This kind's checks of the machine for `lab`: an Unmet each that fails, else None.

        Declared by each driver; they create nothing and start nothing.
        """

    @property
    def spawn_env(self) -> dict[str, str]:
        """The environment of every process the driver starts: it carries the run's marker."""
        return run_env(self.run.path)

    @property
    def marker_env(self) -> dict[str, str]:
        """The run's marker alone, for tools that add it to their own environment."""
        return run_env(self.run.path, {})

    def names(self) -> list[str]:
        """This kind's targets as state.json records them."""
        return sorted(n for n, t in self.state.targets.items() if t.get("kind") == self.kind)

    @abstractmethod
    def provision(self) -> None: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def pfkey_endpoint(self, name: str) -> PfkeyEndpoint: ...

    @abstractmethod
    def stats_endpoint(self, name: str) -> StatsEndpoint: ...

    def collect_answers(self, name: str, out_dir: Path) -> list[Path]:
        """version, stats and policies as a healthy target answers them: every kind's
        last collect step."""
        if not self.health(name).healthy:
            return []
        got = []
        for what in ("version", "stats", "policies"):
            doc = self.stats_endpoint(name).request(what, timeout=10.0)
            atomic.write_json(out_dir / f"{what}.json", doc, indent=1)
            got.append(out_dir / f"{what}.json")
        return got

    def stats_health(self, h: Health, name: str, timeout: float = 2.0) -> Health:
        """Fill `h` from the target's `stats` answer: every kind's last health step."""
        try:
            stats = self.stats_endpoint(name).request("stats", timeout=timeout)
        except InfraError as e:
            h.reason = f"admin socket: {e}"
            return h
        spd = stats.get("spd", {})
        h.policies = sum(spd["alive"].values()) if "alive" in spd else None
        h.dead = sum(spd["dead"].values()) if "dead" in spd else None
        h.healthy, h.reason = "error" not in stats, stats.get("error", "")
        return h

    @abstractmethod
    def health(self, name: str) -> Health: ...

    @abstractmethod
    def collect(self, name: str, dest: Path) -> Sequence[Path]: ...

    @abstractmethod
    def stop(self) -> None: ...

    def traffic_netns(self) -> str | None:
        """The network namespace traffic to this kind's targets is sent from, if any."""
        return None

    def traffic_host(self, name: str) -> TrafficHost | None:
        """Where traffic to `name` is sent from; None: it takes no traffic."""
        ns = self.traffic_netns()
        return TrafficHost("", ns) if ns else None

    @abstractmethod
    def teardown(self) -> list[str]:
        """Remove everything recorded; returns what could not be removed."""
