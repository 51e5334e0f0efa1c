"""The SPD's indexes give the answers of KAME's walks (firmware/test/spd_diff.c).

Every build's patched key.c is compiled into a harness that runs a seeded random
PF_KEY sequence (add, update, setidx, delete, delete2, get, flush, flows holding
references, timer ticks) and compares, after every step, the duplicate check and
the id lookups with the walks of sptree and sptailq, each request's errno and
each automatic id with what the walks give, and the census with a count.
Plain and under ASan+UBSan.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from orchestrator import buildsconf

FW = Path(__file__).resolve().parents[1] / "firmware"
SEEDS = (1, 2, 3)


def harness(build: str, asan: bool) -> Path:
    args = [str(FW / "test" / "mkspddiff.sh"), build] + (["asan"] if asan else [])
    subprocess.run(args, check=True, capture_output=True, text=True)
    return FW / "build" / build / ("spd_diff-asan" if asan else "spd_diff")


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=600)


def summary(out: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", out.split("steps", 1)[1])}


@pytest.mark.parametrize("asan", [False, True], ids=["plain", "asan"])
@pytest.mark.parametrize("build", sorted(buildsconf.read()))
def test_index_agrees_with_walks(build: str, asan: bool) -> None:
    binary = harness(build, asan)
    total: dict[str, int] = {}
    for seed in SEEDS:
        p = run(binary, "-n", "3000" if asan else "10000", "-s", str(seed))
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stderr == ""
        for k, v in summary(p.stdout).items():
            total[k] = total.get(k, 0) + v
    # The sequences reach the cases where an index could answer wrongly.
    assert total["autoids"] > 100 and total["deadsel"] > 0 and total["maxlinked"] > 20
    if buildsconf.read()[build].tree == "netkey":
        assert total["dupids"] > 0  # SPDUPDATE by a user id left a twin on sptailq


@pytest.mark.parametrize(
    "build,mutant",
    [("netkey", "dead"), ("netkey", "last"), ("canary", "dead"), ("netipsec", "dead")],
)
def test_a_wrong_reference_is_caught(build: str, mutant: str) -> None:
    """A reference walk broken on purpose disagrees: the comparison can fail."""
    p = run(harness(build, False), "-n", "20000", "-s", "1", "-M", mutant)
    assert p.returncode == 1
    assert re.match(r"spd_diff: step \d+ \(.+\): .*(walk differs|the walk)", p.stdout), p.stdout


def test_bad_flag_is_one_line() -> None:
    p = run(harness("netkey", False), "-M", "sideways")
    assert p.returncode == 2
    assert p.stderr == "spd_diff: -M: dead or last\n"
