"""The build matrix: builds.conf, the patch series, and what each binary says it is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator import buildsconf
from orchestrator.drain.compare import pairs

FW = Path(__file__).resolve().parents[1] / "firmware"


def test_unknown_build_is_a_clear_error() -> None:
    p = subprocess.run(
        ["make", "-s", "-C", str(FW), "BUILD=netkey+typo"], capture_output=True, text=True
    )
    assert p.returncode != 0
    assert "unknown build 'netkey+typo'. Known builds are: netkey netkey+nextsp" in p.stderr


@pytest.mark.parametrize("build", sorted(buildsconf.read()))
def test_binary_reports_its_series(build: str) -> None:
    r = buildsconf.read()[build]
    tree, patches = r.tree, r.patches
    out = subprocess.run(
        [str(FW / "build" / build / "netkeyd"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"netkeyd {build} tree={tree} patches={' '.join(patches)}"


def test_seed_patch_touches_only_the_two_loops() -> None:
    """The report's two hunks: `sp = NULL` becomes `sp = nextsp`, nothing else."""
    text = (FW / "patches" / "seed-nextsp.patch").read_text()
    minus = [ln for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert text.count("@@ -") == 2
    assert len(minus) == 2 and all(m[1:].strip() == "sp = NULL;" for m in minus)
    assert len(plus) == 2 and all(p[1:].strip() == "sp = nextsp;" for p in plus)


def test_patched_builds_pair_with_their_base() -> None:
    assert sorted(pairs(buildsconf.read())) == [
        ("canary", "canary+nextsp"),
        ("netipsec", "netipsec+split"),
        ("netkey", "canary"),
        ("netkey", "netkey+nextsp"),
    ]


def test_synthetic_controls_are_declared_not_named() -> None:
    """`@synthetic` in builds.conf marks a control; it is no patch and no name pattern."""
    synthetic = {b for b, r in buildsconf.read().items() if r.synthetic}
    assert synthetic == {"canary", "canary+nextsp"}
    assert all(not p.startswith("@") for r in buildsconf.read().values() for p in r.patches)
    with pytest.raises(ValueError, match="unknown flag @fast"):
        buildsconf.parse_line("x netkey @fast")


def test_canary_early_exit_comes_from_its_patch() -> None:
    """No #ifdef: the netkey tree has the seed's loop shape, the canary patch changes it."""
    key = (FW / "sys" / "netkey" / "key.c").read_text()
    assert "#ifdef" not in key and "sp = sp != NULL ? nextsp : NULL" not in key
    assert key.count("sp = nextsp) {") == 2  # the for-loops the seed quotes
    assert (
        "sp = sp != NULL ? nextsp : NULL" in (FW / "patches" / "canary-earlyexit.patch").read_text()
    )
