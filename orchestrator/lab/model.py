"""Stage 1 of the lab file: the validated definition, exactly as the user wrote it."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,23}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Label = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,63}$")]
BuildName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9+_.-]{0,47}$")]
Count = Annotated[int, Field(ge=1, le=1024)]
DeleteMode = Literal["flush", "delete", "delete2", "expire", "spdupdate"]
DELETE_MODES: tuple[str, ...] = get_args(DeleteMode)


class Strict(BaseModel):
    """A lab file node: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


HostName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:%-]{1,253}$")]


class SshDef(Strict):
    """How to reach a `kind: ssh` board: an address, or a host of an Ansible inventory.

    Merged key by key like other settings (defaults < group < target), so `defaults:`
    may give user, key and known_hosts and each target its address.
    """

    address: HostName | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] | None = None
    key: str | None = None
    known_hosts: str | None = None
    inventory: str | None = None
    host: HostName | None = None
    dir: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./-]{0,63}$")] | None = None
    # auto: the static pfkey_relay where it fits the board, else built there; build: always
    relay: Literal["auto", "build"] | None = None


class HostDef(SshDef):
    """A lab host of a multi-host lab: reached like a board, it runs gateways of its own,
    its own switch and traffic host, and a traffic sender with `python` (python3 with
    scapy and cryptography)."""

    python: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./+-]{1,200}$")] | None = None


class TargetSettings(Strict):
    """Settings a target inherits from `defaults:` and its group (defaults < group < target)."""

    kind: str | None = None
    build: str | None = None
    tick_ms: Annotated[int, Field(ge=0, le=60_000)] | None = None
    flow_idle_ticks: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    labels: dict[Label, str] | None = None
    arch: Literal["x86_64", "arm64"] | None = None
    ssh: SshDef | None = None
    host: Name | None = None  # a lab host from `hosts:`; unset: this machine


class TargetDef(TargetSettings):
    """One `targets:` entry; `count:` multiplies it and `builds:` crosses it with builds."""

    name: Name
    group: Name | None = None
    builds: Annotated[list[str], Field(min_length=1)] | None = None
    count: Count = 1
    address: ipaddress.IPv4Address | None = None
    subnet: ipaddress.IPv4Network | None = None

    @model_validator(mode="after")
    def _one_build_source(self) -> TargetDef:
        if self.build is not None and self.builds is not None:
            raise ValueError("give either build or builds, not both")
        if self.address is not None and self.subnet is not None:
            raise ValueError("give either address or subnet, not both")
        return self


class TrafficHostDef(Strict):
    """The namespace that sends traffic through the gateways."""

    address: ipaddress.IPv4Address | None = None


class Scenario(Strict):
    """What a run does to every target: install, reference, delete, wait for the drain."""

    policies: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    algorithm: Literal[
        "aes-gcm-16", "aes-cbc-hmac-sha256", "null-hmac-sha256", "aes-cbc-hmac-sha512"
    ] = "aes-gcm-16"
    mode: Literal["tunnel", "transport"] = "tunnel"
    natt: bool = False
    traffic: Literal["keepalive", "rate", "none"] = "keepalive"
    keepalive_ticks: Annotated[int, Field(ge=1)] = 5
    rate_pps: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    delete: DeleteMode = "flush"
    timeout_ticks: Annotated[int, Field(ge=1)] = 3000
    trials: Annotated[int, Field(ge=1, le=1000)] = 1
    # spdlab drives every target's ticks itself, in lock-step with traffic and delete
    # (also when a netkeyd target has tick_ms 0); docs/MEASURES.md, "Deterministic mode".
    deterministic: bool = False
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # SPIs, keys, so packet contents
    # who sends the wall-clock traffic: "auto" takes espgen (traffic/nativerun.py) where it
    # can carry the scenario, else the Python sender; result.json says which one did
    sender: Literal["auto", "python", "native"] = "auto"


def _one_or_more_modes(v: object) -> object:
    """`delete: flush` is `delete: [flush]`; a bad single mode is one error, at delete."""
    if not isinstance(v, str):
        return v
    if v not in DELETE_MODES:
        names = [f"'{m}'" for m in DELETE_MODES]
        raise ValueError(f"input should be {', '.join(names[:-1])} or {names[-1]}")
    return [v]


class ScenarioDef(Scenario):
    """The lab file's scenario: `delete:` is one mode, or a list of modes run one by one."""

    delete: Annotated[  # type: ignore[assignment]
        list[DeleteMode], Field(min_length=1), BeforeValidator(_one_or_more_modes)
    ] = ["flush"]

    @model_validator(mode="after")
    def _each_mode_once(self) -> ScenarioDef:
        modes = self.modes()
        twice = sorted({m for m in modes if modes.count(m) > 1})
        if twice:
            raise ValueError(f"delete: mode {twice[0]} listed twice")
        return self

    def modes(self) -> tuple[str, ...]:
        return tuple(self.delete)

    def for_mode(self, mode: str) -> Scenario:
        return Scenario(**{**self.model_dump(), "delete": mode})


class Checks(Strict):
    """What one build must show after the mass delete, measure by measure."""

    drain_ticks_max: Annotated[int, Field(ge=0)] | None = None
    drain_ticks_min: Annotated[int, Field(ge=0)] | None = None
    flush_removes: Annotated[int, Field(ge=0)] | None = None
    premature_frees: Annotated[int, Field(ge=0)] | None = None
    premature_frees_min: Annotated[int, Field(ge=0)] | None = None
    use_after_free: Annotated[int, Field(ge=0)] | None = None

    # The measure each expectation is checked against (docs/MEASURES.md).
    MEASURES: ClassVar[dict[str, str]] = {
        "drain_ticks_max": "drain_ticks",
        "drain_ticks_min": "drain_ticks",
        "flush_removes": "removed_by_delete",
        "premature_frees": "premature_frees",
        "premature_frees_min": "premature_frees",
        "use_after_free": "use_after_free",
    }

    def measured(self) -> dict[str, str]:
        """Set expectation → the measure it checks."""
        return {k: m for k, m in self.MEASURES.items() if getattr(self, k) is not None}


class Expectation(Checks):
    """A build's checks; `same_as` copies another build's. A block named after a delete
    mode (`flush:`) sets checks for that mode only, over the build's own."""

    same_as: str | None = None
    flush: Checks | None = None
    delete: Checks | None = None
    delete2: Checks | None = None
    expire: Checks | None = None
    spdupdate: Checks | None = None

    def for_mode(self, mode: str) -> Expectation:
        """The checks that hold when `mode` runs."""
        block = getattr(self, mode, None)
        if block is None:
            return self
        own = self.model_dump(exclude={*DELETE_MODES})
        return Expectation(**{**own, **block.model_dump(exclude_unset=True)})


class KernelDef(Strict):
    """A kernel build of the user's own patches (paths relative to the lab file), after base's."""

    base: str | None = None
    patches: Annotated[list[str], Field(min_length=1)]
    synthetic: bool = False


class FirmwareDef(Strict):
    """A netkeyd build of the user's own patch files (paths relative to the lab file),
    applied after base's series, or on a bare tree."""

    base: str | None = None
    tree: Literal["netkey", "netipsec"] | None = None
    patches: Annotated[list[str], Field(min_length=1)]
    synthetic: bool = False

    @model_validator(mode="after")
    def _one_start(self) -> FirmwareDef:
        if (self.base is None) == (self.tree is None):
            raise ValueError("give either base (a build) or tree (netkey, netipsec)")
        return self


class LabDef(Strict):
    """The whole lab file."""

    name: Name
    range: ipaddress.IPv4Network = ipaddress.IPv4Network("10.77.0.0/16")
    defaults: TargetSettings = TargetSettings()
    groups: dict[Name, TargetSettings] = {}
    targets: Annotated[list[TargetDef], Field(min_length=1)]
    traffic_host: TrafficHostDef = TrafficHostDef()
    scenario: ScenarioDef = ScenarioDef()
    expect: dict[str, Expectation] = {}
    kernels: dict[BuildName, KernelDef] = {}
    firmware: dict[BuildName, FirmwareDef] = {}
    # lab hosts by name, or an Ansible inventory file whose every host is one
    hosts: Annotated[
        Annotated[dict[Name, HostDef], Tag("[hosts]")]
        | Annotated[Annotated[str, StringConstraints(min_length=1)], Tag("[inventory]")],
        Discriminator(lambda v: "[inventory]" if isinstance(v, str) else "[hosts]"),
    ] = {}
