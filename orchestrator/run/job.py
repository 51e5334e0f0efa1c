"""RunJob — a lab's regression run: the product's main job, end to end.

up → install → reference → delete → drain → verdict → artifacts → down.
Each phase works on every target; a target that breaks becomes INFRA-ERROR
and the others carry on.  Teardown always runs, on Ctrl-C too.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.delete.modes import prepare as prepare_delete
from orchestrator.drain import verdict as V
from orchestrator.drain.compare import classify, pairs
from orchestrator.drain.record import Drain, poll
from orchestrator.errors import InfraError, SpdlabError
from orchestrator.export import junit, plot, result
from orchestrator.lab.resolve import ResolvedLab, TargetSpec
from orchestrator.pfkey import messages
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Lifetime, Msg
from orchestrator.pfkey.fmt import format_spd_dump
from orchestrator.pfkey.wire import ExtType
from orchestrator.run.phases import RunPhases, Status
from orchestrator.targets.session import LabRun
from orchestrator.traffic import scenario as traffic_scenario
from orchestrator.traffic.run import TrafficRun, targets_report
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import Pacing

SPI_STRIDE = 0x100000  # each target's SPIs: distinct, so sequence state never collides
EXPIRE_LEAD_S = 8.0  # install + reference must finish before lifetimes end
REFERENCE_TIMEOUT_S = 60.0
POLL_S = 0.2


class Reporter:
    """Where a run reports progress; the CLI draws it with rich."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, name: str, n: int = 1) -> None: ...

    def update(self, name: str, completed: int) -> None: ...

    def log(self, msg: str) -> None: ...


@dataclass
class Target:
    """One target's state across the run's trials."""

    spec: TargetSpec
    index: int
    scenario: traffic_scenario.Scenario | None = None
    ids: list[int] = field(default_factory=list)
    drain: Drain | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    infra: str | None = None
    expiry_tick: int | None = None
    verdict: V.Verdict | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.infra is None


class RunJob:
    """RunJob — runs one lab's scenario on every target and judges the drain.

    Args:
        lab: the resolved lab.
        trials: overrides the scenario's trial count.
        keep: leave the lab up afterwards.
        logx: log-scale ticks in drain.png.
        reporter: progress sink.
        base: runs directory (default: $SPDLAB_RUNS_DIR or runs/).
        on_up: called with the LabRun once it is up (to start an exporter).
        before_down: called once result.json is final, before teardown (an exporter lingers).
    """

    def __init__(
        self,
        lab: ResolvedLab,
        *,
        trials: int | None = None,
        keep: bool = False,
        logx: bool = False,
        reporter: Reporter | None = None,
        base: Path | None = None,
        on_up: Callable[[LabRun], None] | None = None,
        before_down: Callable[[], object] | None = None,
    ):
        self.lab = lab
        self.sc = lab.scenario
        self.trials = trials or self.sc.trials
        self.keep = keep
        self.logx = logx
        self.rep = reporter or Reporter()
        self.base = base
        self.on_up = on_up
        self.before_down = before_down
        self.phases = RunPhases()
        self.lr: LabRun | None = None
        self.targets = [Target(t, i) for i, t in enumerate(lab.targets)]
        self.traffic: TrafficRun | None = None
        self.doc: dict[str, Any] = {}
        self.tick_ms = min(t.tick_ms for t in lab.targets)

    # ------------------------------------------------------------ the whole run

    def execute(self) -> dict[str, Any]:
        """Run every phase; always tears down (unless keep) and writes result.json."""
        try:
            self._up()
            for trial in range(1, self.trials + 1):
                self._trial(trial)
            self.doc["complete"] = True
        except KeyboardInterrupt:
            self.doc["interrupted"] = True
            self.phases.transition(Status.FAILED, "interrupted")
            raise
        except SpdlabError as e:
            self.phases.transition(Status.FAILED, str(e))
            self.doc["error"] = str(e)
            raise
        finally:
            self._finish()
        return self.doc

    def _up(self) -> None:
        self.lr = LabRun.up(self.lab, progress=_UpProgress(self.rep))
        self.phases.transition(Status.UP)
        self.run_dir = self.lr.run.path
        self.doc = {
            "schema": result.SCHEMA,
            "run_id": self.lr.run_id,
            "complete": False,
            "interrupted": False,
            "phase": "up",
            "error": None,
            "started": _now(),
            "finished": None,
            "tick_ms": self.tick_ms,
            "lab": {"name": self.lab.name, "file": self.lab.path},
            "scenario": self.sc.model_dump() | {"trials": self.trials},
            "versions": result.versions([t.spec.build for t in self.targets]),
            "targets": [],
            "comparisons": [],
        }
        self._save()
        if self.on_up:
            self.on_up(self.lr)

    def _trial(self, trial: int) -> None:
        self._install(trial)
        self._start_traffic(trial)
        try:
            self._reference(trial)
            self._delete()
            self._drain()
            self._settle()
        finally:
            self._stop_traffic()
        for t in self.targets:
            if t.drain is not None:
                t.trials.append(self._trial_summary(t, trial))
        # Verdicts so far, so the exporter shows this drain while the lab is still up.
        self._judge()
        self._save()
        if trial == 1:
            self._dumps("after")
        if trial < self.trials:
            self._reset()

    # ------------------------------------------------------------ install

    def _install(self, trial: int) -> None:
        self.phases.transition(Status.INSTALLED)
        self.rep.phase(f"install (trial {trial})", len(self.targets))
        for t in self._live():
            self._guard(t, "install", lambda t=t: self._install_one(t))
            self.rep.advance(f"install (trial {trial})", 1)
        self._phase("installed")

    def _install_one(self, t: Target) -> None:
        assert self.lr is not None
        t.scenario = traffic_scenario.generate(
            self.sc.policies,
            str(self.lab.traffic_host.address),
            str(t.spec.address),
            alg=self.sc.algorithm,
            mode=self.sc.mode,
            natt=self.sc.natt,
            spi_base=traffic_scenario.SPI_BASE + t.index * SPI_STRIDE,
        )
        t.drain = None
        with self._pfkey(t) as c:
            _check(c.pipeline(t.scenario.sa_msgs), "ADD")
            if self.sc.delete == "expire":
                self._install_expiring(t, c, t.scenario.policy_msgs)
            else:
                _check(c.pipeline(t.scenario.policy_msgs), "SPDADD", t.ids)

    def _install_expiring(self, t: Target, c: PfkeyClient, msgs: list[Msg]) -> None:
        """Lifetimes chosen so every policy dies on one tick, EXPIRE_LEAD_S from now.

        A policy dies once now - created > lifetime; created is the tick the
        SPDADD lands on, read just before each small batch.
        """
        stats = self.lr.stats_endpoint(t.name)  # type: ignore[union-attr]
        now = int(stats.request("stats")["now"])
        t.expiry_tick = now + max(2, int(EXPIRE_LEAD_S * 1000 / t.spec.tick_ms))
        for i in range(0, len(msgs), 32):
            now = int(stats.request("stats")["now"])
            batch = []
            for m in msgs[i : i + 32]:
                exts = dict(m.exts)
                exts[ExtType.LIFETIME_HARD] = Lifetime(addtime=t.expiry_tick - 1 - now)
                batch.append(Msg(m.type, exts=exts))
            _check(c.pipeline(batch), "SPDADD", t.ids)

    # ------------------------------------------------------------ traffic and references

    def _start_traffic(self, trial: int) -> None:
        assert self.lr is not None
        live = [t for t in self._live() if t.scenario is not None]
        if self.sc.traffic == "none" or not live:
            return
        spec = TrafficSpec.merge([t.scenario.spec for t in live])  # type: ignore[union-attr]
        if self.sc.traffic == "keepalive":
            pacing = Pacing.keepalive(len(spec.flows), self.sc.keepalive_ticks, self.tick_ms)
        else:
            pacing = Pacing("rate", rate=float(self.sc.rate_pps))
        self.traffic = TrafficRun(
            spec,
            self.run_dir / "traffic",
            netns=self.lr.traffic_netns(),
            pacing=pacing,
            pcap=self.run_dir / "esp-sample.pcap" if trial == 1 else None,
            owner=self.lr,
        )
        self.rep.log(f"traffic: {len(spec.flows)} flows, {pacing.rate or 0:.0f} pps")
        self.traffic.start()

    def _stop_traffic(self) -> None:
        if self.traffic is None:
            return
        try:
            stats = self.traffic.stop()
            self.doc.setdefault("traffic", []).append(stats.to_json())
        except InfraError as e:
            self.rep.log(f"traffic: {e}")
        self._write_traffic_json()
        self.traffic = None

    def _reference(self, trial: int) -> None:
        """Wait until every policy holds a flow's reference (refcnt >= 2 in SPDDUMP)."""
        self.rep.phase(f"reference (trial {trial})", len(self._live()))
        deadline = time.monotonic() + REFERENCE_TIMEOUT_S
        pending = {t.name: t for t in self._live()}
        if self.sc.traffic == "none":
            pending = {}
        while pending:
            for name, t in list(pending.items()):
                if self._guard(t, "reference", lambda t=t: self._referenced(t)):
                    del pending[name]
                    self.rep.advance(f"reference (trial {trial})", 1)
                elif not t.alive:
                    del pending[name]
            if pending and time.monotonic() > deadline:
                for t in pending.values():
                    t.infra = (
                        f"reference: not every policy referenced in {REFERENCE_TIMEOUT_S:.0f}s"
                    )
                break
            self._write_traffic_json()
            if pending:
                time.sleep(0.5)
        self.phases.transition(Status.REFERENCED)
        self._phase("referenced")
        if trial == 1:
            self._dumps("before")

    def _referenced(self, t: Target) -> bool:
        with self._pfkey(t) as c:
            entries = c.spddump()
        if self.traffic is not None and not self.traffic.running():
            raise InfraError("the traffic sender died", step="traffic")
        return len(entries) >= self.sc.policies and all(e.reserved >= 2 for e in entries)

    # ------------------------------------------------------------ delete and drain

    def _delete(self) -> None:
        self.rep.phase("delete", len(self._live()))
        for t in self._live():
            self._guard(t, "delete", lambda t=t: self._delete_one(t))
            self.rep.advance("delete", 1)
        self.phases.transition(Status.DELETED)
        self._phase("deleted")

    def _delete_one(self, t: Target) -> None:
        stats = self.lr.stats_endpoint(t.name)  # type: ignore[union-attr]
        if self.sc.delete == "expire":
            assert t.expiry_tick is not None
            before = stats.request("stats")
            if int(before["now"]) >= t.expiry_tick:
                raise InfraError("policies expired before they were all referenced")
            t.drain = Drain(
                issue_tick=t.expiry_tick - 1,
                delete_tick=t.expiry_tick - 1,
                base_premature=before["spd"]["premature_frees"],
                base_uaf=before["spd"]["use_after_free"],
            )
            return
        with self._pfkey(t) as c:
            fire = prepare_delete(self.sc.delete, c, t.scenario.delete_msgs, t.ids)  # type: ignore[union-attr]
            before = stats.request("stats")
            fire()
        after = stats.request("stats")
        spd = after["spd"]
        linked = sum(spd["alive"].values()) + sum(spd["dead"].values())
        t.drain = Drain(
            base_premature=before["spd"]["premature_frees"],
            base_uaf=before["spd"]["use_after_free"],
            issue_tick=int(before["now"]),
            delete_tick=int(after["now"]),
            removed_by_delete=spd["unlinked"] - before["spd"]["unlinked"],
            linked_after_delete=linked,
            allocated_after_delete=spd["allocated"],
        )
        if linked == 0:
            t.drain.drain_ticks = 0

    def _drain(self) -> None:
        timeout = self.sc.timeout_ticks
        self.rep.phase("drain", timeout)
        pending = {t.name: t for t in self._live() if t.drain is not None}
        while pending:
            for name, t in list(pending.items()):
                done = self._guard(
                    t, "drain", lambda t=t: poll(self.lr.stats_endpoint(t.name), t.drain, timeout)
                )
                if done or not t.alive:
                    del pending[name]
            ticks = [len(t.drain.after_delete()) for t in pending.values() if t.drain]
            self.rep.update("drain", min(ticks) if ticks else timeout)
            self._write_traffic_json()
            if pending:
                time.sleep(POLL_S)
        self.phases.transition(Status.DRAINED)
        self._phase("drained")

    def _settle(self) -> None:
        """Let every flow send once more after the drain, then total the memory findings.

        A policy freed under a flow is only touched again by the flow's next packet:
        without this, a use after free that follows a fast drain would go unseen.
        """
        if self.traffic is not None and self.sc.traffic == "keepalive":
            time.sleep((self.sc.keepalive_ticks + 2) * self.tick_ms / 1000)
        for t in self._live():
            if t.drain is None:
                continue

            def total(t: Target = t) -> None:
                spd = self.lr.stats_endpoint(t.name).request("stats")["spd"]  # type: ignore[union-attr]
                t.drain.premature_frees = spd["premature_frees"] - t.drain.base_premature  # type: ignore[union-attr]
                t.drain.use_after_free = spd["use_after_free"] - t.drain.base_uaf  # type: ignore[union-attr]

            self._guard(t, "settle", total)

    def _trial_summary(self, t: Target, trial: int) -> dict[str, Any]:
        d = t.drain
        assert d is not None
        tot = d.totals()
        return {
            "trial": trial,
            "issue_tick": d.issue_tick,
            "delete_tick": d.delete_tick,
            "delete_span_ticks": d.delete_span_ticks,
            "drain_ticks_from_issue": d.drain_ticks_from_issue,
            "removed_by_delete": d.removed_by_delete,
            "linked_after_delete": d.linked_after_delete,
            "allocated_after_delete": d.allocated_after_delete,
            "drain_ticks": d.drain_ticks,
            "free_ticks": d.free_ticks,
            "timed_out": d.timed_out,
            "premature_frees": d.premature_frees,
            "use_after_free": d.use_after_free,
            "walked_per_lookup": d.walked_per_lookup(),
            "esp_ok": tot["esp_ok"],
            "esp_drop": tot["esp_drop"],
            "completed_at": time.time() if d.complete else None,
            "series": d.series(),
            "records": d.records,
        }

    def _reset(self) -> None:
        """Between trials: remove every SA and policy, wait until nothing is allocated."""
        for t in self._live():

            def reset(t: Target = t) -> None:
                with self._pfkey(t) as c:
                    c.request(messages.spdflush())
                    c.request(messages.flush_sa())
                stats = self.lr.stats_endpoint(t.name)  # type: ignore[union-attr]
                deadline = time.monotonic() + 30
                while stats.request("stats")["spd"]["allocated"] > 0:
                    if time.monotonic() > deadline:
                        raise InfraError("policies still allocated 30 s after the trial")
                    time.sleep(POLL_S)

            self._guard(t, "reset", reset)
            t.ids = []

    # ------------------------------------------------------------ verdicts and artifacts

    def _judge(self) -> None:
        for t in self.targets:
            exp = self.lab.expect.get(t.spec.build)
            t.verdict = V.judge(exp, t.trials, t.infra)
        self.doc["targets"] = [self._target_doc(t) for t in self.targets]
        self.doc["comparisons"] = self._comparisons()

    def _target_doc(self, t: Target) -> dict[str, Any]:
        v = t.verdict
        drains = [tr["drain_ticks"] for tr in t.trials]
        finite = [d for d in drains if d is not None]
        median = int(statistics.median(finite)) if finite and len(finite) == len(drains) else None
        last = t.trials[-1] if t.trials else {}
        return {
            "name": t.name,
            "build": t.spec.build,
            "kind": t.spec.kind,
            "labels": dict(t.spec.labels),
            "tick_ms": t.spec.tick_ms,
            "address": str(t.spec.address),
            "verdict": v.verdict if v else ("INFRA-ERROR" if t.infra else "PENDING"),
            "reason": v.reason if v else (t.infra or ""),
            "checks": [c.__dict__ for c in v.checks] if v else [],
            "drain_ticks": median,
            "drain_spread": [min(finite), max(finite)] if finite else None,
            "drain_seconds": median * t.spec.tick_ms / 1000 if median is not None else None,
            "drain_seconds_at_1hz": median,
            "drain_ticks_from_issue": last.get("drain_ticks_from_issue"),
            "delete_span_ticks": last.get("delete_span_ticks"),
            "free_ticks": last.get("free_ticks"),
            "removed_by_delete": last.get("removed_by_delete"),
            "premature_frees": last.get("premature_frees"),
            "use_after_free": last.get("use_after_free"),
            "walked_per_lookup": last.get("walked_per_lookup"),
            "completed_at": last.get("completed_at"),
            "trials": t.trials,
        }

    def _comparisons(self) -> list[dict[str, Any]]:
        by_build: dict[str, dict[str, Any]] = {}
        for td in self.doc["targets"]:
            if td["trials"] and td["verdict"] != "INFRA-ERROR":
                by_build.setdefault(td["build"], summary(td))
        out = []
        for base, patched in pairs(by_build):
            c = classify(by_build[base], by_build[patched])
            out.append(c.__dict__)
        return out

    def _dumps(self, when: str) -> None:
        for t in self._live():

            def dump(t: Target = t) -> None:
                with self._pfkey(t) as c:
                    text = format_spd_dump(c.spddump())
                d = self.run_dir / "targets" / t.name
                d.mkdir(parents=True, exist_ok=True)
                (d / f"spddump-{when}.txt").write_text(text)

            self._guard(t, f"spddump {when}", dump)

    def _finish(self) -> None:
        if "run_id" not in self.doc:  # up failed: LabRun.up removed what it made
            return
        if not self.doc["targets"]:
            self.doc["targets"] = [self._target_doc(t) for t in self.targets]
        self.doc["finished"] = _now()
        self.doc["phase"] = self.phases.status.value
        try:
            self._save()
            junit.write(self.run_dir / "junit.xml", self.doc)
            if any(t["trials"] for t in self.doc["targets"]):
                plot.plot(
                    self.doc["targets"],
                    self.run_dir / "drain.png",
                    self.logx,
                    f"{self.lab.name}: {self.sc.delete} of {self.sc.policies} in-use policies",
                )
            self._collect()
        finally:
            if self.before_down is not None:
                self.before_down()
            if not self.keep and self.lr is not None:
                self.rep.phase("down", 1)
                self.lr.down()
                self.phases.transition(Status.DOWN)
                self.rep.advance("down", 1)

    def _collect(self) -> None:
        assert self.lr is not None
        for t in self.targets:
            try:
                self.lr.driver(t.name).collect(t.name, self.run_dir / "targets" / t.name)
            except (InfraError, OSError) as e:
                self.rep.log(f"{t.name}: collect: {e}")

    # ------------------------------------------------------------ plumbing

    def _live(self) -> list[Target]:
        return [t for t in self.targets if t.alive]

    def _pfkey(self, t: Target) -> PfkeyClient:
        ep = self.lr.pfkey_endpoint(t.name)  # type: ignore[union-attr]
        return ep.connect()

    def _guard(self, t: Target, step: str, fn: Callable[[], Any]) -> Any:
        """Run one target's step; a broken target becomes INFRA-ERROR, the run goes on."""
        try:
            return fn()
        except (InfraError, OSError, RuntimeError) as e:
            t.infra = f"{step}: {e}"
            self.rep.log(f"{t.name}: INFRA-ERROR in {step}: {e}")
            return None

    def _phase(self, name: str) -> None:
        self.doc["phase"] = name
        self._save()

    def _save(self) -> None:
        result.write(self.run_dir / "result.json", self.doc)

    def _write_traffic_json(self) -> None:
        """Packets sent per target, from the sender's counts per gateway address."""
        stats = self.traffic.stats() if self.traffic is not None else None
        if stats is None:
            return
        addrs = {t.name: str(t.spec.address) for t in self.targets}
        tmp = self.run_dir / ".traffic.json.tmp"
        tmp.write_text(json.dumps(targets_report(stats, addrs)))
        tmp.replace(self.run_dir / "traffic.json")


def summary(td: dict[str, Any]) -> dict[str, Any]:
    """What compare.classify needs from a target's result entry."""
    tr = td["trials"][0]
    return {
        "build": td["build"],
        "series": [tuple(s) for s in tr["series"]],
        "removed_by_delete": tr["removed_by_delete"],
        "drain_ticks": td["drain_ticks"],
        "premature_frees": td["premature_frees"],
        "use_after_free": td["use_after_free"],
        "passed": td["verdict"] == "PASS" if td["verdict"] in ("PASS", "FAIL") else None,
    }


def _check(replies: list[Msg], what: str, ids: list[int] | None = None) -> None:
    bad = [r for r in replies if r.errno]
    if bad:
        raise InfraError(f"{len(bad)} of {len(replies)} {what} failed, errno {bad[0].errno}")
    if ids is not None:
        ids.extend(r.policy.id for r in replies if r.policy is not None)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _UpProgress:
    """Adapts the drivers' per-phase progress to the run's reporter."""

    def __init__(self, rep: Reporter):
        self.rep = rep

    def phase(self, name: str, total: int) -> None:
        self.rep.phase(f"up: {name}", total)

    def advance(self, name: str, n: int = 1) -> None:
        self.rep.advance(f"up: {name}", n)
