"""Stage 2 of the lab file: defaults < group < target, matrices expanded, addresses assigned."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.lab import clock, ssh
from orchestrator.lab import hosts as lab_hosts
from orchestrator.lab.hosts import HostSpec
from orchestrator.lab.issues import Issue, LabIssues, Loc
from orchestrator.lab.model import Checks, Expectation, LabDef, Scenario, TargetDef
from orchestrator.lab.ssh import SshSpec

DEFAULT_KIND = "netns"
DEFAULT_TICK_MS = 1000
DEFAULT_FLOW_IDLE_TICKS = 30
FIRST_AUTO_HOST = 10  # gateways get range[10], range[11], ...; below is for the traffic host
# Settings blocks that belong to one kind: required by it, refused elsewhere.
KIND_BLOCKS = {"ssh": "ssh"}


class TargetSpec(BaseModel):
    """One runtime target, every setting resolved."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    build: str
    tick_ms: int
    flow_idle_ticks: int
    address: ipaddress.IPv4Address
    prefixlen: int
    labels: dict[str, str] = {}
    index: int = 0
    arch: str = ""
    ssh: SshSpec | None = None
    host: str | None = None  # the lab host it runs on; None: this machine


class ResolvedKernel(BaseModel):
    """A kernel build the lab file defines: base's series, then its patch files (absolute)."""

    model_config = ConfigDict(frozen=True)

    base: str | None = None
    patches: tuple[str, ...]
    synthetic: bool = False


class ResolvedFirmware(BaseModel):
    """A netkeyd build the lab file defines: a tree and its whole series, each patch a
    name of firmware/patches/ or an absolute path."""

    model_config = ConfigDict(frozen=True)

    tree: str
    patches: tuple[str, ...]
    synthetic: bool = False


class TrafficHostSpec(BaseModel):
    """The traffic host, resolved."""

    model_config = ConfigDict(frozen=True)

    address: ipaddress.IPv4Address
    prefixlen: int


class ResolvedLab(BaseModel):
    """A lab ready to run: targets sorted by name, expectations with `same_as` applied."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str = ""
    range: ipaddress.IPv4Network
    traffic_host: TrafficHostSpec
    targets: tuple[TargetSpec, ...]
    scenario: Scenario
    expect: dict[str, Expectation] = {}
    kernels: dict[str, ResolvedKernel] = {}
    hosts: dict[str, HostSpec] = {}
    firmware: dict[str, ResolvedFirmware] = {}
    modes: tuple[str, ...] = ()  # the lab file's delete modes, each a run of its own

    def each_mode(self) -> list[ResolvedLab]:
        """One lab per delete mode, in the lab file's order."""
        return [self.model_copy(update={"scenario": self.scenario.model_copy(update={"delete": m})})
                for m in self.modes or (self.scenario.delete,)]  # fmt: skip

    @property
    def builds(self) -> tuple[str, ...]:
        """Builds the targets use, sorted."""
        return tuple(sorted({t.build for t in self.targets}))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({t.kind for t in self.targets}))

    def target(self, name: str) -> TargetSpec:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def by_kind(self) -> dict[str, list[TargetSpec]]:
        out: dict[str, list[TargetSpec]] = {}
        for t in self.targets:
            out.setdefault(t.kind, []).append(t)
        return out


@dataclass
class _Pending:
    """A target after expansion, before its address is known."""

    loc: Loc
    name: str
    kind: str
    build: str
    tick_ms: int
    flow_idle_ticks: int
    labels: dict[str, str]
    address: ipaddress.IPv4Address | None = None
    subnet: ipaddress.IPv4Network | None = None
    arch: str = ""
    ssh: SshSpec | None = None
    host: str | None = None


@dataclass
class _Resolver:
    lab: LabDef
    builds: Sequence[str]
    kinds: Sequence[str]
    kind_builds: Mapping[str, Sequence[str]] = field(default_factory=dict)
    extra_builds: Mapping[str, Sequence[str]] = field(default_factory=dict)
    base: str = "."
    issues: list[Issue] = field(default_factory=list)
    loops: set[frozenset[str]] = field(default_factory=set)
    hosts: dict[str, HostSpec] = field(default_factory=dict)

    def fail(self, loc: Loc, message: str) -> None:
        self.issues.append(Issue(loc, message))

    def settings(self, i: int, t: TargetDef) -> dict | None:
        """The one place where defaults < group < target is decided."""
        layers = [self.lab.defaults]
        if t.group is not None:
            if t.group not in self.lab.groups:
                known = ", ".join(sorted(self.lab.groups)) or "none"
                self.fail(("targets", i, "group"), f"unknown group '{t.group}' (groups: {known})")
                return None
            layers.append(self.lab.groups[t.group])
        layers.append(t)
        merged: dict = {"kind": DEFAULT_KIND, "tick_ms": DEFAULT_TICK_MS}
        merged |= {"flow_idle_ticks": DEFAULT_FLOW_IDLE_TICKS, "build": None, "labels": {}}
        merged["arch"], merged["host"] = "", None
        for layer in layers:
            for key in ("kind", "build", "tick_ms", "flow_idle_ticks", "arch", "host"):
                value = getattr(layer, key)
                if value is not None:
                    merged[key] = value
            merged["labels"] = {**merged["labels"], **(layer.labels or {})}
        if merged["arch"]:
            merged["labels"] = {**merged["labels"], "hardware": merged["arch"]}
        merged["ssh"] = ssh.merge([layer.ssh for layer in layers])
        return merged

    def blocks(self, i: int, t: TargetDef, s: dict) -> SshSpec | None | bool:
        """The kind's own settings block, checked; False after a problem."""
        loc: Loc = ("targets", i)
        if KIND_BLOCKS.get(s["kind"]) != "ssh":
            if s["ssh"]:
                where = (*loc, "ssh") if t.ssh else self._where_set(t, "ssh")
                self.fail(where, f"only for kind ssh (this target is kind {s['kind']})")
                return False
            return None
        found = list(ssh.problems(s["ssh"]))
        for key, message in found:
            self.fail((*loc, "ssh", key) if t.ssh else (*loc, "ssh"), message)
        return False if found else ssh.spec(s["ssh"], Path(self.base))

    def expand(self, i: int, t: TargetDef) -> Iterator[_Pending]:
        s = self.settings(i, t)
        if s is None:
            return
        loc: Loc = ("targets", i)
        if s["kind"] not in self.kinds:
            supported = ", ".join(self.kinds)
            where = ("targets", i, "kind") if t.kind else self._where_set(t, "kind")
            self.fail(where, f"unknown kind '{s['kind']}'. Supported kinds are: {supported}")
            return
        builds = t.builds if t.builds is not None else [s["build"]]
        if builds == [None]:
            self.fail((*loc, "build"), "required (in the target, its group or defaults)")
            return
        board = self.blocks(i, t, s)
        if board is False or not self.placed(i, t, s):
            return
        ok = True
        known = self.known(s["kind"])
        for j, b in enumerate(builds):
            if b not in known:
                if t.builds is not None:
                    where = (*loc, "builds", j)
                else:
                    where = (*loc, "build") if t.build else self._where_set(t, "build")
                kind = f" for kind {s['kind']}" if b in self.all_builds else ""
                self.fail(where, f"unknown build '{b}'{kind}. Known builds are: {', '.join(known)}")
                ok = False
        if not ok:
            return
        if t.address is not None and (t.count > 1 or len(builds) > 1):
            self.fail((*loc, "address"), "one address for several targets; use subnet instead")
            return
        width = len(str(t.count))
        for b in builds:
            for n in range(1, t.count + 1):
                name = t.name
                if t.builds is not None:
                    name += "-" + b.replace("+", "-")
                if t.count > 1:
                    name += f"-{n:0{width}d}"
                yield _Pending(
                    loc, name, s["kind"], b, s["tick_ms"], s["flow_idle_ticks"], s["labels"],
                    t.address, t.subnet, s["arch"], board or None, s["host"],
                )  # fmt: skip

    def placed(self, i: int, t: TargetDef, s: dict) -> bool:
        """A target's `host:` names a lab host, and its kind runs on lab hosts."""
        from orchestrator.kinds import LAB_HOST_KINDS

        if s["host"] is None:
            return True
        where = ("targets", i, "host") if t.host else self._where_set(t, "host")
        if s["host"] not in self.hosts:
            known = ", ".join(sorted(self.hosts)) or "none"
            self.fail(where, f"unknown lab host '{s['host']}' (hosts: {known})")
            return False
        if s["kind"] not in LAB_HOST_KINDS:
            on = ", ".join(LAB_HOST_KINDS)
            self.fail(where, f"kind {s['kind']} does not run on lab hosts (kinds there: {on})")
            return False
        return True

    def resolve_hosts(self) -> None:
        for got in lab_hosts.resolve_hosts(self.lab, Path(self.base)):
            if isinstance(got, HostSpec):
                self.hosts[got.name] = got
            else:
                self.fail(*got)

    def known(self, kind: str) -> list[str]:
        """Builds a kind runs: firmware builds (and the kind's extras), or its own plus
        the lab file's kernels."""
        if kind not in self.kind_builds:
            return [*self.builds, *self.extra_builds.get(kind, ())]
        return [*self.kind_builds[kind], *self.lab.kernels]

    @property
    def all_builds(self) -> set[str]:
        """Firmware builds and the builds of kinds that run something else."""
        own = (b for k in self.kind_builds for b in self.known(k))
        extra = (b for bs in self.extra_builds.values() for b in bs)
        return {*self.builds, *own, *extra}

    def kernels(self, lab_file: str) -> dict[str, ResolvedKernel]:
        """The lab file's kernel builds, patch paths made absolute and checked."""
        here = Path(lab_file).resolve().parent if lab_file else Path.cwd()
        bases = {b for bs in self.kind_builds.values() for b in bs}
        out = {}
        for name, k in self.lab.kernels.items():
            if k.base is not None and k.base not in bases:
                self.fail(("kernels", name, "base"), f"unknown kernel build '{k.base}'")
            files = [(here / f).resolve() for f in k.patches]
            for j, f in enumerate(files):
                if not f.is_file():
                    self.fail(("kernels", name, "patches", j), f"no such patch file: {f}")
            patches = tuple(map(str, files))
            out[name] = ResolvedKernel(base=k.base, patches=patches, synthetic=k.synthetic)
        return out

    def firmware(self, lab_file: str) -> dict[str, ResolvedFirmware]:
        """The lab file's netkeyd builds: base's series, then its patch files (absolute)."""
        from orchestrator import buildsconf

        here = Path(lab_file).resolve().parent if lab_file else Path.cwd()
        recipes = buildsconf.read()
        out = {}
        for name, f in self.lab.firmware.items():
            if name in recipes:
                self.fail(("firmware", name), "already a build of firmware/builds.conf")
            base = recipes.get(f.base or "")
            if f.base is not None and base is None:
                self.fail(("firmware", name, "base"), f"unknown firmware build '{f.base}'")
                continue
            files = [(here / p).resolve() for p in f.patches]
            for j, p in enumerate(files):
                if not p.is_file():
                    self.fail(("firmware", name, "patches", j), f"no such patch file: {p}")
                elif any(c.isspace() for c in str(p)):  # builds.conf words are space-separated
                    self.fail(("firmware", name, "patches", j), f"a path with a space: {p}")
            tree = base.tree if base else str(f.tree)
            series = (*(base.patches if base else ()), *map(str, files))
            synthetic = f.synthetic or bool(base and base.synthetic)
            out[name] = ResolvedFirmware(tree=tree, patches=series, synthetic=synthetic)
        return out

    def _where_set(self, t: TargetDef, key: str) -> Loc:
        """Where an inherited setting came from: the group, else defaults."""
        if t.group is not None and getattr(self.lab.groups[t.group], key) is not None:
            return ("groups", t.group, key)
        return ("defaults", key)

    def addresses(self, pending: list[_Pending]) -> ipaddress.IPv4Address | None:
        """Give every target an address; returns the traffic host's."""
        rng = self.lab.range
        taken: dict[ipaddress.IPv4Address, str] = {}

        def claim(addr: ipaddress.IPv4Address, who: str, loc: Loc) -> bool:
            if addr not in rng or addr in (rng.network_address, rng.broadcast_address):
                self.fail(loc, f"address {addr} is outside the lab range {rng}")
                return False
            if addr in taken:
                self.fail(loc, f"address {addr} clashes with {taken[addr]}")
                return False
            taken[addr] = who
            return True

        th = self.lab.traffic_host.address
        if th is not None:
            claim(th, "the traffic host", ("traffic_host", "address"))
        for p in pending:
            if p.address is not None:
                claim(p.address, f"target '{p.name}'", (*p.loc, "address"))
            if p.subnet is not None and not p.subnet.subnet_of(rng):
                self.fail((*p.loc, "subnet"), f"subnet {p.subnet} is outside the lab range {rng}")
                p.subnet = None
        pools: dict[ipaddress.IPv4Network | None, Iterator[ipaddress.IPv4Address]] = {}
        for p in pending:
            if p.address is not None:
                continue
            pool = pools.setdefault(p.subnet, self._pool(p.subnet or rng, p.subnet is None))
            p.address = next((a for a in pool if a not in taken), None)
            if p.address is None:
                self.fail((*p.loc, "subnet" if p.subnet else "count"), "no free address left")
                return None
            taken[p.address] = f"target '{p.name}'"
        if th is None:
            th = next((a for a in self._pool(rng, False) if a not in taken), None)
            if th is None:
                self.fail(("range",), "no free address left for the traffic host")
        return th

    @staticmethod
    def _pool(net: ipaddress.IPv4Network, skip_low: bool) -> Iterator[ipaddress.IPv4Address]:
        start = FIRST_AUTO_HOST if skip_low and net.num_addresses > 4 * FIRST_AUTO_HOST else 1
        for n in range(start, net.num_addresses - 1):
            yield net.network_address + n

    def expectations(self) -> dict[str, Expectation]:
        out: dict[str, Expectation] = {}
        for build in self.lab.expect:
            if build not in self.all_builds:
                self.fail(("expect", build), f"unknown build '{build}'")
        for build in self.lab.expect:
            exp = self._expectation(build, ())
            if exp is not None:
                out[build] = exp
        return out

    def _expectation(self, build: str, seen: tuple[str, ...]) -> Expectation | None:
        exp = self.lab.expect.get(build)
        if exp is None:
            return None
        if exp.same_as is None:
            return exp
        if exp.same_as not in self.lab.expect:
            self.fail(("expect", build, "same_as"), f"'{exp.same_as}' has no expectations")
            return None
        if exp.same_as in seen or exp.same_as == build:
            cycle = frozenset((*seen, build))
            if cycle not in self.loops:
                self.loops.add(cycle)
                first = seen[0] if seen else build
                self.fail(("expect", first, "same_as"), "same_as loops back on itself")
            return None
        base = self._expectation(exp.same_as, (*seen, build))
        if base is None:
            return None
        own = exp.model_dump(exclude_unset=True, exclude={"same_as"})
        base_set = base.model_dump(exclude={"same_as"}, exclude_unset=True)  # a mode block too
        return Expectation(**{**base_set, **own}, same_as=exp.same_as)


def _observable(r: _Resolver, expect: Mapping[str, Expectation], pending: list[_Pending]) -> None:
    """An expectation on a measure some target of its build cannot observe (under a delete
    mode the lab runs) is an error, at the key that set it."""
    kinds = {(p.build, p.kind) for p in pending}
    found: dict[Loc, str] = {}
    for build, exp in expect.items():
        for mode in r.lab.scenario.modes():
            for kind in sorted(k for b, k in kinds if b == build):
                for loc, message in _unseen(build, exp, mode, kind):
                    found.setdefault(loc, message)
    for loc, message in found.items():
        r.fail(loc, message)


def _unseen(build: str, exp: Expectation, mode: str, kind: str) -> Iterator[tuple[Loc, str]]:
    """The checks of exp under mode on a measure kind cannot see: where each is set, why."""
    from orchestrator.kinds import KIND_MODE_UNOBSERVABLE, unobservable

    block = getattr(exp, mode) or Checks()
    under = f" under delete {mode}" if (kind, mode) in KIND_MODE_UNOBSERVABLE else ""
    for key, measure in exp.for_mode(mode).measured().items():
        why = unobservable(kind, build, mode).get(measure)
        if why:
            where = (mode, key) if key in block.model_fields_set else (key,)
            yield ("expect", build, *where), f"not observable on kind {kind}{under}: {why}"


def resolve(
    lab: LabDef,
    *,
    builds: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    kind_builds: Mapping[str, Sequence[str]] | None = None,
    extra_builds: Mapping[str, Sequence[str]] | None = None,
    path: str = "",
) -> ResolvedLab:
    """Stage 2: resolve settings, expand `count:`/`builds:`, assign addresses, sort.

    Args:
        lab: the validated definition.
        builds: known firmware builds; default: firmware/builds.conf.
        kinds: supported target kinds; default: the driver registry.
        kind_builds: kinds that run builds other than firmware builds, with those
            builds (`qemu`: `linux-af_key`); default: the driver registry.
        extra_builds: kinds that run firmware builds and these too (`ssh`: `kernel`);
            default: the driver registry.
        path: the lab file, kept for reference; relative paths in it are from its folder.

    Returns:
        The resolved lab.

    Raises:
        LabIssues: every problem found, each with its place in the document.
    """
    if builds is None:
        from orchestrator.lab.builds import known_builds

        builds = known_builds()
    if kinds is None:
        from orchestrator.kinds import supported_kinds

        kinds = supported_kinds()
    if kind_builds is None:
        from orchestrator.kinds import KIND_BUILDS

        kind_builds = KIND_BUILDS
    if extra_builds is None:
        from orchestrator.kinds import KIND_EXTRA_BUILDS

        extra_builds = KIND_EXTRA_BUILDS
    base = str(Path(path).parent) if path else "."
    builds = [*builds, *(b for b in lab.firmware if b not in builds)]
    r = _Resolver(lab, builds, kinds, kind_builds, extra_builds, base)
    r.resolve_hosts()
    pending: list[_Pending] = []
    first: dict[str, Loc] = {}
    for i, t in enumerate(lab.targets):
        for p in r.expand(i, t):
            if p.name in first:
                prev = first[p.name]
                r.fail((*p.loc, "name"), f"duplicate name '{p.name}' (also targets[{prev[1]}])")
                continue
            first[p.name] = p.loc
            pending.append(p)
    expect = r.expectations()
    _observable(r, expect, pending)
    scenario = clock.resolve(lab.scenario.for_mode(lab.scenario.modes()[0]), pending, r.fail)
    if scenario.sender == "native" and scenario.algorithm != "aes-gcm-16":
        r.fail(("scenario", "sender"), f"native sends aes-gcm-16 only, not {scenario.algorithm}")
    kernels = r.kernels(path)
    firmware = r.firmware(path)
    th = r.addresses(pending)
    if r.issues:
        raise LabIssues(r.issues)
    assert th is not None
    plen = lab.range.prefixlen
    targets = sorted(pending, key=lambda p: p.name)
    specs = tuple(
        TargetSpec(
            name=p.name,
            kind=p.kind,
            build=p.build,
            tick_ms=p.tick_ms,
            flow_idle_ticks=p.flow_idle_ticks,
            address=p.address,
            prefixlen=plen,
            labels=p.labels,
            index=n,
            arch=p.arch,
            ssh=p.ssh,
            host=p.host,
        )
        for n, p in enumerate(targets)
    )
    return ResolvedLab(
        name=lab.name,
        path=path,
        range=lab.range,
        traffic_host=TrafficHostSpec(address=th, prefixlen=plen),
        targets=specs,
        scenario=scenario,
        expect=expect,
        kernels=kernels,
        hosts=r.hosts,
        firmware=firmware,
        modes=lab.scenario.modes(),
    )
