"""`spdlab report RUN --html`: the page from a real (direct) drain, rendered in headless Chromium.

The screenshot is kept in .cache/artifacts/report.png (or $SPDLAB_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from tickdrive import run_build

from orchestrator import buildsconf
from orchestrator.drain.record import Drain
from orchestrator.export import plot, result
from orchestrator.export.report import render_html
from orchestrator.lab.model import Scenario
from orchestrator.result.describe import stats_line
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import (
    Comparison,
    LabRef,
    Measures,
    RunResult,
    TargetResult,
    TickRecord,
    Trial,
)
from orchestrator.result.versions import BuildVersion, KernelImage, PatchVersion, Versions
from orchestrator.run import judge

pytestmark = pytest.mark.chromium

REPO = Path(__file__).resolve().parents[1]
N = 300
TICK_MS = 50
RUN_ID = "20260101-000000-f00d"


def artifacts() -> Path:
    d = Path(os.environ.get("SPDLAB_ARTIFACTS") or REPO / ".cache" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def target(name: str, build: str, verdict: str, r: Any, deterministic: bool = False,
           ) -> TargetResult:  # fmt: skip
    m = Measures(removed_by_delete=r.removed_by_delete, drain_ticks=r.drain_ticks,
                 free_ticks=r.free_ticks, premature_frees=r.premature_frees,
                 use_after_free=r.use_after_free, walked_per_lookup=150.5)  # fmt: skip
    recs = [TickRecord.model_validate(t) for t in r.ticks]
    series = Drain(0, 0, drain_ticks=r.drain_ticks, records=r.ticks).series()
    trial = Trial(trial=1, issue_tick=0, delete_tick=0, measures=m, series=series, records=recs)
    return TargetResult(
        name=name, build=build, kind="netns", labels={"hardware": "x86-vm"}, tick_ms=TICK_MS,
        synthetic=buildsconf.is_synthetic(build), verdict=verdict,
        reason="" if verdict == "PASS" else "premature frees > 0", measures=m,
        drain_seconds=None if r.drain_ticks is None else r.drain_ticks * TICK_MS / 1000,
        completed_at=1_795_000_000.0, trials=[trial], deterministic=deterministic,
    )  # fmt: skip


def unobserved() -> TargetResult:
    """A real kernel's row: frees are not observable, so they show as "—", never 0."""
    no = NotObservable(not_observable="SPDDUMP polling cannot see frees")
    m = Measures(removed_by_delete=N, drain_ticks=0, free_ticks=no, premature_frees=no,
                 use_after_free=no)  # fmt: skip
    return TargetResult(name="vm", build="linux-af_key", kind="qemu", tick_ms=1000,
                        verdict="PASS", measures=m)  # fmt: skip


TARGETS = (("gw-canary", "canary", "PASS"), ("gw-canary-nextsp", "canary+nextsp", "PASS"),
           ("gw-netipsec", "netipsec", "FAIL"))  # fmt: skip


@pytest.fixture(scope="module")
def drains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each build's real drain of N in-use policies, stepped tick by tick."""
    tmp = tmp_path_factory.mktemp("drains")
    return {b: run_build(b, tmp / b, N, "delete", max_ticks=2 * N)
            for b in ("canary", "canary+nextsp", "netipsec", "netkey")}  # fmt: skip


def run_result(run_id: str, targets: list[TargetResult], **more: Any) -> RunResult:
    """A finished run of the report-demo lab: N policies, SPDDELETE."""
    doc = dict(
        run_id=run_id,
        complete=True,
        phase="down",
        started="2026-01-01T00:00:00Z",
        finished="2026-01-01T00:01:00Z",
        tick_ms=TICK_MS,
        lab=LabRef(name="report-demo"),
        scenario=Scenario(policies=N, delete="delete"),
        targets=targets,
        versions=Versions(spdlab="0.1.0", kernel="6.1", hostname="ci", python="3.11"),
    )
    return RunResult(**{**doc, **more})  # fmt: skip


def write_run(run: Path, res: RunResult, targets: list[TargetResult]) -> Path:
    """result.json, state.json and drain.png, as `spdlab run` leaves them."""
    run.mkdir(parents=True)
    result.write(run / "result.json", res)
    (run / "state.json").write_text(json.dumps({"phase": "down", "targets": {}}))
    plot.plot(targets, run / "drain.png", title=f"report-demo: delete of {N} in-use policies")
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, drains: dict[str, Any]) -> Path:
    """A run folder as `spdlab run` leaves it: result.json and drain.png, from real drains."""
    tmp = tmp_path_factory.mktemp("report")
    targets = [target(name, build, verdict, drains[build]) for name, build, verdict in TARGETS]
    res = run_result(
        RUN_ID,
        versions=Versions(spdlab="0.1.0", kernel="6.1", hostname="ci", python="3.11",
                          builds={"canary": BuildVersion(
                              tree="netkey", netkeyd_sha256="ab" * 32, synthetic=True,
                              patches=[PatchVersion(name="canary-earlyexit", sha256="cd" * 32)]),
                                  "linux-canary": BuildVersion(
                              tree="linux-source-6.1", source_version="6.1.99-1", config="spdlab",
                              synthetic=True, arches={"arm64": KernelImage(
                                  config_sha256="ef" * 32, image="Image", image_sha256="12" * 32)},
                              patches=[PatchVersion(name="canary-flush-one", sha256="34" * 32)])}),
        targets=[*targets, unobserved()],
        comparisons=[Comparison(base="canary", patched="canary+nextsp", verdict="fixed",
                                detail="drain 300 → 1 ticks"),
                     Comparison(base="netipsec", patched="netipsec+split", verdict="fixed",
                                detail="premature frees 300 → 0 <script>")],
    )  # fmt: skip
    return write_run(tmp / "runs" / RUN_ID, res, targets)


def test_unobservable_is_a_dash_with_its_reason(run_dir: Path) -> None:
    page = render_html(run_dir)
    vm = next(r for r in page.split('<tr class="target">')[1:] if "linux-af_key" in r)
    cells = re.findall(r'<td class="num">([^<]*)</td>', vm.split("</tr>")[0])
    assert cells[3:6] == ["—¹", "—¹", "—¹"]  # free ticks, premature frees, use after free
    assert "¹ not observable: SPDDUMP polling cannot see frees" in page


def test_page_has_the_tables_and_embeds_the_plot(run_dir: Path) -> None:
    page = render_html(run_dir)
    assert page.count('<tr class="target">') == 4
    assert page.count('<tr class="comparison">') == 2
    assert "data:image/png;base64," in page
    assert "&lt;script&gt;" in page and "<script>" not in page.split("</head>")[1]
    assert not re.search(r'(src|href)="(https?:)?//', page)  # self-contained
    assert ">300<" in page and "(synthetic)" in page
    assert "Changed from baseline" not in page  # judged against none


def test_versions_name_a_kernel_build_as_a_netkeyd_one(run_dir: Path) -> None:
    page = render_html(run_dir)
    table = page.split('<table id="versions">')[1].split("</table>")[0]
    rows = {r.split("</td>")[0].split()[0].removeprefix("<td>"): r for r in table.split("<tr>")[2:]}
    canary, kernel = rows["canary"], rows["linux-canary"]
    assert (
        "netkeyd <code>abababababab</code>" in canary
        and "canary-earlyexit (cdcdcdcdcdcd)" in canary
    )
    assert "(synthetic)" in kernel and "linux-source-6.1 6.1.99-1" in kernel
    assert "spdlab: arm64 <code>efefefefefef</code>" in kernel
    assert "arm64 Image <code>121212121212</code>" in kernel
    assert "canary-flush-one (343434343434)" in kernel


def test_spdlab_report_writes_the_page(run_dir: Path, tmp_path: Path) -> None:
    env = dict(os.environ, SPDLAB_RUNS_DIR=str(run_dir.parent))
    out = tmp_path / "r.html"
    p = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "report", RUN_ID[:15], "--html",
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out)
    assert out.read_text() == render_html(run_dir)


BASE_ID, JUDGED_ID = "20260101-000000-ba5e", "20260102-000000-0c4a"


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory, drains: dict[str, Any]) -> Path:
    """A run judged against a baseline run (`run --baseline`), both of real drains. The
    baseline's canary drained as canary+nextsp does (the same name, another patch), its
    canary+nextsp is one trial on the wall clock (too few to decide), netkey drained
    alike, and netipsec is new."""
    runs = tmp_path_factory.mktemp("baseline") / "runs"

    def gw(build: str, drained_as: str = "", deterministic: bool = True) -> TargetResult:
        r = drains[drained_as or build]
        return target(f"gw-{build.replace('+', '-')}", build, "PASS", r, deterministic)

    old = [gw("canary", "canary+nextsp"), gw("canary+nextsp", deterministic=False), gw("netkey")]
    new = [gw("canary"), gw("canary+nextsp"), gw("netipsec"), gw("netkey")]
    base = run_result(BASE_ID, old)
    write_run(runs / BASE_ID, base, old)
    res = run_result(JUDGED_ID, new)
    res.baseline = judge.baseline(res, base)
    return write_run(runs / JUDGED_ID, res, new)


def test_the_page_lists_what_changed_from_the_baseline_as_compare_does(judged, tmp_path):
    b = result.load(judged / "result.json").baseline
    assert (b.changed, b.undecided, b.missing) == (
        ["canary@x86-vm"],
        ["canary+nextsp@x86-vm"],
        ["netipsec@x86-vm"],
    )
    page = render_html(judged)
    section = page.split("<h2>Changed from baseline")[1].split("<h2>")[0]
    assert f"changed from baseline {BASE_ID}: <b>canary@x86-vm</b>" in section
    rows = re.findall(r'<tr class="baseline"><td>([^<]*)</td><td>([^<]*)</td>', section)
    assert rows == [("canary on x86-vm", "regressed"), ("canary+nextsp on x86-vm", "undecided")]
    assert "undecided against the baseline: canary+nextsp@x86-vm" in section
    assert "not in the baseline: netipsec@x86-vm" in section
    env = dict(os.environ, SPDLAB_RUNS_DIR=str(judged.parent))
    cli = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "compare", JUDGED_ID, "--baseline",
         BASE_ID, "--plot", str(tmp_path / "compare.png")],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 4, cli.stderr
    for line in (f"changed from baseline {BASE_ID}: canary@x86-vm",
                 "undecided against the baseline: canary+nextsp@x86-vm",
                 "not in the baseline: netipsec@x86-vm"):  # fmt: skip
        assert line in cli.stdout
    shown = [c for c in b.comparisons if c.verdict != "no effect"]
    assert [c.patched for c in shown] == ["canary", "canary+nextsp"]
    for c in shown:  # each with the statistics line the table prints, K first
        assert stats_line(c).startswith("K=1/1; ")
        assert stats_line(c) in section and stats_line(c) in cli.stdout
        assert escape(c.detail) in section and escape(c.method) in section


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe, "chromium missing: apt-get install chromium"
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    profile.mkdir()
    argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_chromium_renders_the_tables_and_images(run_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(run_dir))
    url = page.as_uri()
    dom = chromium("--dump-dom", url, tmp=tmp_path).stdout
    assert 'data-images="1/1"' in dom, dom[:500]  # the plot decoded
    assert len(re.findall(r'<tr class="target">', dom)) == 4
    assert len(re.findall(r'<tr class="comparison">', dom)) == 2
    shot = tmp_path / "report.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1280,2000", url, tmp=tmp_path)
    assert shot.exists(), r.stderr[-2000:]
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    assert img.std() > 0.05  # not a blank page
    shutil.copy(shot, artifacts() / "report.png")
