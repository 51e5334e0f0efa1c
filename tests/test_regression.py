"""The regression workflow: a lab's own netkeyd builds, another firmware tree
(SPDLAB_FIRMWARE_DIR), bisection of netkeyd and kernel series, baselines.

The lab files and their patches live in a temporary folder, outside the repository.
The end-to-end runs use real namespaces and netkeyd at 40 policies, 5 trials a build:
the fewest at which the rank test can decide with one trial out of line. The kernel
bisection boots two cached x86_64 kernels under QEMU, 4 trials each.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from leftovers import leftovers, short_runs

from orchestrator.export.report import render_html
from orchestrator.lab import LabError, load_lab, read_lab
from orchestrator.run import bisect
from orchestrator.runs import list_runs

ROOT = Path(__file__).resolve().parents[1]
PATCHES = ROOT / "labs" / "patches"
CANARY = ROOT / "firmware" / "patches" / "canary-earlyexit.patch"
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
SERIES = ["comment-freesp.patch", "canary-earlyexit.patch", "comment-getsp.patch"]
N = 40
K = 5
LONG_S = 2400  # K trials a build, twice for the baseline, on a host shared with other jobs


def lab_file(tmp: Path, firmware: str, builds: str, range_: str = "10.94.0.0/16") -> Path:
    """A lab next to its patches in tmp: its own builds, then one gateway per build."""
    for p in SERIES:
        src = CANARY if p == "canary-earlyexit.patch" else PATCHES / p
        shutil.copyfile(src, tmp / p)
    path = tmp / "lab.yaml"
    # Flows never idle out between the reference and the delete, however loaded the host.
    path.write_text(f"""\
name: regression
range: {range_}
defaults: {{kind: netns, tick_ms: 15, flow_idle_ticks: 1000, labels: {{hardware: x86-vm}}}}
firmware:
{firmware}
targets:
  - {{name: gw, builds: [{builds}]}}
scenario: {{policies: {N}, traffic: keepalive, keepalive_ticks: 25, delete: delete,
           timeout_ticks: 600, trials: {K}}}
""")
    return path


PLANTED = "  planted: {base: netkey, patches: [" + ", ".join(SERIES) + "]}"


def spdlab(runs: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), **env}
    return subprocess.run([*SPDLAB, *args, "--json"], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=LONG_S)  # fmt: skip


def test_lab_builds_take_patch_paths_next_to_the_lab(tmp_path: Path) -> None:
    lab = load_lab(lab_file(tmp_path, PLANTED, "netkey, planted"))
    f = lab.firmware["planted"]
    assert f.tree == "netkey"
    assert f.patches == tuple(str(tmp_path / p) for p in SERIES)
    assert {t.build for t in lab.targets} == {"netkey", "planted"}


def test_a_lab_build_on_a_base_keeps_the_base_series_and_its_synthetic_mark(tmp_path):
    lab = load_lab(lab_file(tmp_path, "  mine: {base: canary, patches: [comment-getsp.patch]}",
                            "canary, mine"))  # fmt: skip
    f = lab.firmware["mine"]
    assert f.patches == ("canary-earlyexit", str(tmp_path / "comment-getsp.patch"))
    assert f.synthetic


@pytest.mark.parametrize(("definition", "error"), [
    ("  mine: {base: nope, patches: [comment-getsp.patch]}",
     "5:16: firmware.mine.base: unknown firmware build 'nope'"),
    ("  mine: {tree: netkey, patches: [gone.patch]}",
     "5:34: firmware.mine.patches[0]: no such patch file: "),
    ("  mine: {base: netkey, tree: netkey, patches: [comment-getsp.patch]}",
     "5:9: firmware.mine: give either base (a build) or tree (netkey, netipsec)"),
    ("  netkey: {tree: netkey, patches: [comment-getsp.patch]}",
     "5:11: firmware.netkey: already a build of firmware/builds.conf"),
])  # fmt: skip
def test_bad_lab_builds_are_one_line_each(tmp_path: Path, definition: str, error: str) -> None:
    with pytest.raises(LabError) as e:
        load_lab(lab_file(tmp_path, definition, "netkey"))
    [line] = e.value.lines
    assert error in line, line


def test_bisect_rewrites_the_lab_into_one_target_per_prefix(tmp_path: Path) -> None:
    path = lab_file(tmp_path, PLANTED, "netkey, planted")
    blab, series, names = bisect.bisect_lab(read_lab(path)[0], load_lab(path), "planted")
    assert names == ["netkey", "planted.1", "planted.2", "planted"]
    assert [t.build for t in blab.targets] == sorted(names)
    assert blab.firmware["planted.2"].patches == tuple(str(tmp_path / p) for p in SERIES[:2])
    assert blab.expect == {} and series.section == "firmware"


def test_bisect_takes_a_kernel_series_the_same_way() -> None:
    path = ROOT / "labs" / "linux-kernels.yaml"
    blab, series, names = bisect.bisect_lab(read_lab(path)[0], load_lab(path), "linux-canary+fix")
    assert names == ["linux", "linux-canary+fix.1", "linux-canary+fix"]
    assert series.section == "kernels"
    assert [Path(p).name for p in blab.kernels["linux-canary+fix.1"].patches] == [
        "canary-flush-one.patch"
    ]
    assert {(t.kind, t.arch) for t in blab.targets} == {("qemu", "x86_64")}


@pytest.fixture
def runs() -> Iterator[Path]:
    yield from short_runs("spr-")


@pytest.mark.netns
@pytest.mark.timeout(LONG_S)
def test_bisect_finds_the_canary_patch_planted_among_harmless_ones(runs: Path, tmp_path: Path):
    path = lab_file(tmp_path, PLANTED, "netkey, planted")
    try:
        r = spdlab(runs, "bisect", str(path), "--build", "planted")
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout)
        steps = out["steps"]
        assert [s["patch"] for s in steps] == [None, "comment-freesp", "canary-earlyexit",
                                               "comment-getsp"]  # fmt: skip
        assert out["first"] == 2
        found = steps[2]["comparison"]
        assert found["verdict"] == "regressed" and found["k"] == [K, K]
        drain = next(t for t in found["tests"] if t["measure"] == "drain_ticks")
        assert drain["significant"] and drain["p_value"] < 0.05
        assert drain["interval"][0] >= N - 5  # one unlink per tick
        for harmless in (steps[1], steps[3]):
            assert harmless["comparison"]["verdict"] in ("no effect", "undecided")
        assert (runs / out["run_id"] / "bisect.json").is_file()
    finally:
        assert leftovers(runs) == []


KERNEL_LAB = """\
name: kernel-bisect
range: 10.97.0.0/24
defaults: {kind: qemu, tick_ms: 1000}
targets:
  - {name: x, arch: x86_64, build: linux-canary}
scenario: {policies: 10, traffic: none, delete: flush, algorithm: aes-cbc-hmac-sha256,
           timeout_ticks: 3, trials: 4}
"""


@pytest.mark.kernel
@pytest.mark.qemu
@pytest.mark.timeout(LONG_S)
def test_bisect_of_a_kernel_series_names_the_canary_patch(runs: Path, tmp_path: Path):
    """linux-canary is linux's series (xfrm-census) and canary-flush-one: two kernels
    from the shared cache, x86_64 only, a flush of few policies, 4 trials a side (the
    fewest at which the rank test decides: p = 1/35 when every trial differs)."""
    path = tmp_path / "kernels.yaml"
    path.write_text(KERNEL_LAB)
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    try:
        r = subprocess.run([*SPDLAB, "bisect", str(path), "--build", "linux-canary"], cwd=ROOT,
                           env=env, text=True, capture_output=True, timeout=LONG_S)  # fmt: skip
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        assert leftovers(runs) == []
    text = " ".join(r.stdout.split())  # however the console wrapped it
    assert "bisect linux-canary: 1 patch, 2 builds, K=4 each" in text, r.stdout
    assert "canary-flush-one is the first bad patch" in text, r.stdout
    [run_id] = list_runs(runs)
    out = json.loads((runs / run_id / "bisect.json").read_text())
    assert [(s["build"], s["patch"]) for s in out["steps"]] == [
        ("linux", None),
        ("linux-canary", "canary-flush-one"),
    ]
    assert out["first"] == 1 and out["steps"][1]["file"].endswith("canary-flush-one.patch")
    found = out["steps"][1]["comparison"]
    assert (found["verdict"], found["k"], found["control"]) == ("regressed", [4, 4], True)
    drain = next(t for t in found["tests"] if t["measure"] == "drain_ticks")
    assert drain["significant"] and drain["p_value"] < 0.05
    assert drain["patched"] == [None] * 4 and drain["base"] == [0.0] * 4  # never drained


@pytest.mark.netns
@pytest.mark.timeout(LONG_S)
def test_baseline_flags_the_deliberately_changed_build_and_nothing_else(runs: Path, tmp_path):
    mine = "  mine: {base: netkey, patches: [comment-freesp.patch]}"
    path = lab_file(tmp_path, mine, "netkey, mine", "10.95.0.0/16")
    try:
        first = spdlab(runs, "run", str(path), "--metrics-addr", "")
        assert first.returncode == 0, first.stderr[-2000:]
        base = json.loads(first.stdout)["run_id"]
        # The same build name, another patch: the canary's early exit.
        shutil.copyfile(CANARY, tmp_path / "comment-freesp.patch")
        second = spdlab(runs, "run", str(path), "--metrics-addr", "", "--baseline", base)
        assert second.returncode == 4, second.stderr[-2000:]
        b = json.loads(second.stdout)["baseline"]
        assert (b["run_id"], b["changed"], b["missing"]) == (base, ["mine@x86-vm"], [])
        verdicts = {c["patched"]: c["verdict"] for c in b["comparisons"]}
        assert verdicts["mine"] == "regressed"
        assert verdicts["netkey"] in ("no effect", "undecided")
        judged = json.loads(second.stdout)["run_id"]
        page = render_html(runs / judged)  # the report says what compare --baseline says
        assert f"changed from baseline {base}: <b>mine@x86-vm</b>" in page
        rows = re.findall(r'<tr class="baseline"><td>([^<]*)</td><td>([^<]*)</td>', page)
        assert rows[0] == ("mine on x86-vm", "regressed")  # netkey: at most undecided
        cmp = spdlab(runs, "compare", judged, "--baseline", base)
        assert cmp.returncode == 4
        assert json.loads(cmp.stdout)["baseline"]["changed"] == ["mine@x86-vm"]
        same = spdlab(runs, "compare", base, "--baseline", base)
        assert same.returncode == 0 and json.loads(same.stdout)["baseline"]["changed"] == []
    finally:
        assert leftovers(runs) == []


@pytest.mark.netns
def test_one_build_on_two_hardware_labels_is_one_comparison_row(runs: Path, tmp_path: Path):
    path = tmp_path / "hw.yaml"
    path.write_text("""\
name: hardware
range: 10.98.0.0/16
defaults: {kind: netns, tick_ms: 15, build: netkey}
targets:
  - {name: a, labels: {hardware: board-a}}
  - {name: b, labels: {hardware: board-b}, tick_ms: 30}
scenario: {policies: 40, traffic: none, delete: flush, timeout_ticks: 100, trials: 4}
""")
    r = spdlab(runs, "run", str(path), "--metrics-addr", "")
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = json.loads(r.stdout)["comparisons"]
    assert (row["across"], row["base"], row["patched"]) == ("hardware", "netkey", "netkey")
    assert (row["base_hardware"], row["patched_hardware"], row["k"]) == ("board-a", "board-b",
                                                                        [4, 4])  # fmt: skip
    assert row["verdict"] == "no effect" and set(row["timing"]) == {"board-a", "board-b"}
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    text = subprocess.run([*SPDLAB, "compare", json.loads(r.stdout)["run_id"]], cwd=ROOT,
                          env=env, text=True, capture_output=True, timeout=300).stdout  # fmt: skip
    assert "netkey on board-a vs board-b: same drain" in text.replace("\n", " ")


def firmware_copy(tmp: Path) -> Path:
    """firmware/ without its binaries, plus a build only the copy has: `copied`, netkey
    with the canary's early exit under a patch name the checkout does not know."""
    fw = tmp / "firmware"
    shutil.copytree(ROOT / "firmware", fw, ignore=shutil.ignore_patterns("build"))
    shutil.copyfile(CANARY, fw / "patches" / "copy-only.patch")
    with (fw / "builds.conf").open("a") as f:
        f.write("copied netkey copy-only @synthetic\n")
    return fw


FW_LAB = """\
name: firmware-dir
range: 10.96.0.0/16
defaults: {kind: netns, tick_ms: 15, flow_idle_ticks: 1000}
targets:
  - {name: gw, builds: [netkey, copied]}
scenario: {policies: 40, traffic: keepalive, keepalive_ticks: 25, delete: delete,
           timeout_ticks: 600}
expect:
  copied: {drain_ticks_min: 40}
"""


@pytest.mark.netns
def test_spdlab_firmware_dir_is_the_tree_builds_come_from(runs: Path, tmp_path: Path) -> None:
    fw = firmware_copy(tmp_path)
    path = tmp_path / "lab.yaml"
    path.write_text(FW_LAB)
    unknown = spdlab(runs, "validate", str(path))
    assert unknown.returncode == 2 and "unknown build 'copied'" in unknown.stdout  # the checkout's
    try:
        # Deterministic: spdlab runs every tick, so the early exit drains exactly one a tick.
        r = spdlab(runs, "run", str(path), "--metrics-addr", "", "--deterministic",
                   SPDLAB_FIRMWARE_DIR=str(fw))  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        doc = json.loads((runs / json.loads(r.stdout)["run_id"] / "result.json").read_text())
    finally:
        assert leftovers(runs) == []
    v = doc["versions"]["builds"]["copied"]
    patch = hashlib.sha256((fw / "patches" / "copy-only.patch").read_bytes()).hexdigest()
    assert v["tree"] == "netkey" and v["patches"] == [{"name": "copy-only", "sha256": patch}]
    built = fw / "build" / "copied" / "netkeyd"
    assert v["netkeyd_sha256"] == hashlib.sha256(built.read_bytes()).hexdigest()
    assert not (ROOT / "firmware" / "build" / "copied").exists()
    drains = {t["build"]: t["measures"]["drain_ticks"] for t in doc["targets"]}
    assert (drains["netkey"], drains["copied"]) == (0, 40)  # its patch: one unlink a tick


def unusable(tmp: Path, what: str) -> Path:
    if what == "file":
        (tmp / "file").write_text("")
    return {"gone": tmp / "gone", "file": tmp / "file", "empty": tmp}[what]


@pytest.mark.parametrize(("what", "error"), [
    ("gone", "is not a directory"),
    ("file", "is not a directory"),
    ("empty", "holds no builds.conf: not a firmware tree"),
])  # fmt: skip
def test_an_unusable_spdlab_firmware_dir_is_one_line(runs: Path, tmp_path: Path, what, error):
    fw = unusable(tmp_path, what)
    lab = ROOT / "labs" / "demo.yaml"
    for verb in ("validate", "run"):
        r = spdlab(runs, verb, str(lab), SPDLAB_FIRMWARE_DIR=str(fw))
        assert (r.returncode, r.stderr) == (2, f"spdlab: SPDLAB_FIRMWARE_DIR: {fw} {error}\n")
    assert list(runs.iterdir()) == []  # nothing started
