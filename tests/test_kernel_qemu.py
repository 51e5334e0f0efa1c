"""Built kernels booted as qemu targets on x86_64 and arm64: the flush loop, patched and not.

One lab for the module: stock, the loop rewrite (no behaviour change), the synthetic
canary (a flush removes one policy) and its fix, on both architectures, plus a build
of a patch that is not in the repository. Then `spdlab run labs/linux-kernels.yaml`
with fewer policies. Every VM, bridge and socket is gone afterwards.

Needs `scripts/deps.sh qemu kernel`; the kernels come from the shared build cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from leftovers import lab_up, short_runs
from test_kernel_build import user_patch

from orchestrator.kernel import build as kbuild
from orchestrator.kernel import conf, tree
from orchestrator.pfkey import messages
from orchestrator.pfkey.wire import MsgType
from orchestrator.runs import list_runs
from orchestrator.targets.session import LabRun
from orchestrator.traffic import scenario as traffic_scenario

pytestmark = [pytest.mark.kernel, pytest.mark.qemu]

ROOT = Path(__file__).resolve().parents[1]
N = 40
BUILDS = ("linux", "linux+loop-rewrite", "linux-canary", "linux-canary+fix")
LAB = """\
name: kernels
range: 10.82.0.0/24
defaults: {kind: qemu, tick_ms: 1000}
targets:
  - {name: x, arch: x86_64, builds: [linux, linux+loop-rewrite, linux-canary, linux-canary+fix]}
  - {name: a, arch: arm64, builds: [linux, linux+loop-rewrite, linux-canary, linux-canary+fix]}
  - {name: u, arch: x86_64, build: linux+mine}
kernels:
  linux+mine: {base: linux, patches: [patches/mine.patch]}
scenario: {policies: 40, traffic: none, delete: flush, algorithm: aes-cbc-hmac-sha256}
"""


def name(prefix: str, build: str) -> str:
    return f"{prefix}-{build.replace('+', '-')}"


@pytest.fixture(scope="module")
def runs():
    yield from short_runs("spdk")


@pytest.fixture(scope="module")
def lab_file(runs):
    src = tree.pristine("linux-source-6.1", kbuild.cache.source_version("linux-source-6.1"))
    (runs / "patches").mkdir()
    (runs / "patches" / "mine.patch").write_text(user_patch(src))
    p = runs / "kernels.yaml"
    p.write_text(LAB)
    return p


@pytest.fixture(scope="module")
def vms(runs, lab_file):
    yield from lab_up(lab_file, runs)


@pytest.fixture(scope="module")
def sc():
    return traffic_scenario.generate(N, "10.82.0.2", "10.82.0.10", alg="aes-cbc-hmac-sha256")


def fill_then_flush(lr: LabRun, target: str, sc, flushes: int) -> list[int]:
    """Install N policies, then flush `flushes` times: the linked count after each."""
    left = []
    with lr.pfkey_endpoint(target).connect(timeout=30.0) as c:
        c.request(messages.spdflush())
        while c.spddump():
            c.request(messages.spdflush())
        assert [r.errno for r in c.pipeline(sc.policy_msgs)] == [0] * N
        assert len(c.spddump()) == N
        for _ in range(flushes):
            reply = c.request(messages.spdflush())
            assert reply.type == MsgType.X_SPDFLUSH and reply.errno == 0
            left.append(len(c.spddump()))
    return left


def test_every_kernel_answers_register_with_its_versions(vms):
    for prefix, arch, machine in (("x", "x86_64", "x86_64"), ("a", "arm64", "aarch64")):
        for b in BUILDS:
            t = name(prefix, b)
            v = vms.stats_endpoint(t).request("version")
            assert (v["build"], v["arch"], v["source"]) == (b, arch, "linux-source-6.1")
            assert [p["name"] for p in v["patches"]] == [p.name for p in conf.get(b).patches]
            assert all(len(p["sha256"]) == 64 for p in v["patches"]) and v["config_sha256"]
            assert v["synthetic"] == b.startswith("linux-canary")
            console = (vms.run.target_dir(t) / "console.log").read_text(errors="replace")
            assert "spdlab-init: kernel 6.1." in console and machine in console, console[-500:]
            assert vms.lab.target(t).labels["hardware"] == arch


@pytest.mark.parametrize("prefix", ["x", "a"])
def test_the_canary_flush_removes_one_policy_per_call(vms, sc, prefix):
    assert fill_then_flush(vms, name(prefix, "linux-canary"), sc, 3) == [N - 1, N - 2, N - 3]


@pytest.mark.parametrize("prefix", ["x", "a"])
@pytest.mark.parametrize("build", ["linux", "linux+loop-rewrite", "linux-canary+fix"])
def test_stock_fix_and_loop_rewrite_flush_everything_at_once(vms, sc, prefix, build):
    assert fill_then_flush(vms, name(prefix, build), sc, 1) == [0]


def test_a_users_patch_builds_and_boots(vms, sc):
    v = vms.stats_endpoint("u").request("version")
    base = [p.name for p in conf.get("linux").patches]  # xfrm-census: every build's first
    assert [p["name"] for p in v["patches"]] == [*base, "mine"] and v["build"] == "linux+mine"
    console = (vms.run.target_dir("u") / "console.log").read_text(errors="replace")
    assert "spdlab-user-patch: af_key starts" in console
    assert fill_then_flush(vms, "u", sc, 1) == [0]


MODES = ("flush", "delete", "delete2", "spdupdate", "expire")
# Only a flush goes through xfrm_policy_flush(), the loop the canary patches.
UNTOUCHED = {("linux", "linux+loop-rewrite"): "no effect", ("linux", "linux-canary"): "no effect",
             ("linux-canary", "linux-canary+fix"): "no effect"}  # fmt: skip
COMPARED = {"flush": {("linux", "linux+loop-rewrite"): "no effect",
                      ("linux", "linux-canary"): "regressed",
                      ("linux-canary", "linux-canary+fix"): "fixed"},
            **{m: UNTOUCHED for m in MODES[1:]}}  # fmt: skip
OBSERVED = {"no effect": None, "regressed": "regressed", "fixed": "fixed"}  # one trial's medians


# One `spdlab run` of five modes, eight VMs each: the first test to use it pays for it.
RUN_TIMEOUT = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def kernels_run(runs):
    """`spdlab run labs/linux-kernels.yaml` with N policies: one run per delete mode."""
    text = (ROOT / "labs" / "linux-kernels.yaml").read_text()
    lab = runs / "linux-kernels.yaml"
    # With traffic each inbound policy has its outbound mirror, held by a guest flow: 2N.
    lab.write_text(text.replace("policies: 2000", f"policies: {N}").replace(
        "flush_removes: 4000", f"flush_removes: {2 * N}"))  # fmt: skip
    known = set(list_runs(runs))
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "run", str(lab), "--metrics-addr", ""]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ids = sorted(set(list_runs(runs)) - known)  # run ids begin with their start time
    return r, {json.loads((runs / i / "result.json").read_text())["scenario"]["delete"]: runs / i
               for i in ids}  # fmt: skip


@RUN_TIMEOUT
def test_spdlab_run_of_linux_kernels_passes_in_every_mode(kernels_run):
    r, by_mode = kernels_run
    assert tuple(by_mode) == MODES
    for mode, run_dir in by_mode.items():
        doc = json.loads((run_dir / "result.json").read_text())
        verdicts = {t["name"]: (t["build"], t["verdict"]) for t in doc["targets"]}
        assert len(verdicts) == 8 and {v for _, v in verdicts.values()} == {"PASS"}, verdicts
        # One trial a side: too few for the rank test, so every pair is undecided, and the
        # medians say which way it went, on both arches alike. Under traffic the frees
        # follow the guest's flows, so a pair the patch leaves alone may still show a
        # direction: never an effect, and no equal medians asserted.
        patch = [c for c in doc["comparisons"] if c["across"] == "patch"]
        got = {(c["base"], c["patched"], c["hardware"]): (c["verdict"], c["observed"])
               for c in patch}  # fmt: skip
        want = {(b, p, arch): v for (b, p), v in COMPARED[mode].items()
                for arch in ("x86_64", "arm64")}  # fmt: skip
        assert set(got) == set(want), (mode, doc["comparisons"])
        for key, v in want.items():
            verdict, observed = got[key]
            assert verdict in ("undecided", "no effect"), (mode, key, got[key])
            if OBSERVED[v] is not None:
                assert observed == OBSERVED[v], (mode, key, got[key])
        assert {c["mode"] for c in doc["comparisons"]} == {mode}
        control = {(c["base"], c["patched"]) for c in patch if c["control"]}
        assert control == {("linux", "linux-canary")}
        rows = {(c["base"], c["base_hardware"], c["patched_hardware"])
                for c in doc["comparisons"] if c["across"] == "hardware"}  # fmt: skip
        assert rows == {(b, "arm64", "x86_64") for b in BUILDS}  # one row per build
        removed = [t["measures"]["removed_by_delete"] for t in doc["targets"]]
        if mode == "flush":  # the canary's flush removes one policy, the others every one
            canary = [t for t in doc["targets"] if t["build"] == "linux-canary"]
            assert [t["measures"]["removed_by_delete"] for t in canary] == [1, 1]
            assert [t["trials"][0]["linked_after_delete"] for t in canary] == [2 * N - 1] * 2
        elif mode == "spdupdate":  # replaced in place: the dump cannot count the replaced
            assert all(set(x) == {"not_observable"} for x in removed), removed
        elif mode == "expire":  # no message; gone by the first observation after their second
            assert set(removed) == {0}
            assert {t["measures"]["drain_ticks"] for t in doc["targets"]} == {1}
        else:
            assert set(removed) == {2 * N}
    lines = r.stdout.splitlines()
    control = [ln for ln in lines if ln.startswith("flush: linux-canary vs linux")]
    assert control and all("suggest regressed" in ln and "the synthetic positive control" in ln
                           for ln in control), r.stdout[-3000:]  # fmt: skip
    noop = [ln for ln in lines if ln.startswith("flush: linux+loop-rewrite vs linux")]
    # Never an effect; which way one trial's frees went under traffic is not asserted.
    assert noop and all(("undecided" in ln or "no effect" in ln) for ln in noop), r.stdout[-3000:]


@RUN_TIMEOUT
def test_kernel_builds_are_named_like_netkeyd_builds_in_the_result(kernels_run):
    """result.json's versions: the source package and its version, the config, every
    patch's sha256 and, per arch, the config's hash and the image booted."""
    from orchestrator.kernel import config

    _, by_mode = kernels_run
    run_dir = by_mode["flush"]
    doc = json.loads((run_dir / "result.json").read_text())
    version = kbuild.cache.source_version("linux-source-6.1")
    for b in BUILDS:
        v = doc["versions"]["builds"][b]
        assert (v["tree"], v["source_version"], v["config"]) == ("linux-source-6.1", version,
                                                                "spdlab")  # fmt: skip
        assert v["patches"] == [{"name": p.name, "sha256": p.sha256()}
                                for p in conf.get(b).patches]  # fmt: skip
        assert v["synthetic"] == conf.get(b).synthetic and v["netkeyd_sha256"] is None
        assert set(v["arches"]) == {"x86_64", "arm64"}
        for arch, k in v["arches"].items():
            assert k["config_sha256"] == config.config_hash("spdlab", arch)
            boot = json.loads((run_dir / "targets" / f"{'x86' if arch == 'x86_64' else 'arm'}-"
                               f"{b.replace('+', '-')}" / "boot.json").read_text())  # fmt: skip
            image = Path(boot["kernel"])
            assert k["image"] == image.name
            assert k["image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    synthetic = {t["build"] for t in doc["targets"] if t["synthetic"]}
    assert synthetic == {"linux-canary", "linux-canary+fix"}


@RUN_TIMEOUT
def test_the_kernel_control_is_labelled_synthetic_everywhere(kernels_run):
    """Target rows, the report, JUnit and the exporter's build labels."""
    from orchestrator.export.report import render_html
    from orchestrator.export.targets import targets_from_run

    _, by_mode = kernels_run
    for run_dir in by_mode.values():
        suite = ET.parse(run_dir / "junit.xml").getroot()
        flag = "properties/property[@name='synthetic'][@value='true']"
        marked = {c.get("classname") for c in suite.iter("testcase") if c.find(flag) is not None}
        assert marked == {"spdlab.linux-canary", "spdlab.linux-canary+fix"}
    run_dir = by_mode["flush"]
    page = render_html(run_dir)
    assert page.count("linux-canary (synthetic)") == 2  # its two target rows
    assert "(synthetic control)" in page
    version = kbuild.cache.source_version("linux-source-6.1")
    assert f"linux-source-6.1 {version}" in page
    exported = {(t.build, t.tree, t.patches, t.synthetic) for t in targets_from_run(run_dir)}
    assert exported == {(b, "linux-source-6.1", tuple(p.name for p in conf.get(b).patches),
                         conf.get(b).synthetic) for b in BUILDS}  # fmt: skip
