"""The libFuzzer harnesses build, replay their corpus and every past crash, and a short
run finds nothing.

The long campaigns are `make fuzz-campaign` (RELIABILITY.md); this keeps the harnesses
from rotting and replays the campaigns' minimized corpora under ASan+UBSan on every test
run.  firmware/fuzz/regress/<harness>/ holds each input that once crashed a harness.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

FW = Path(__file__).resolve().parents[1] / "firmware"
HARNESSES = ["pfkey", "esp", "admin", "relay"]


@pytest.fixture(scope="module")
def harnesses() -> Path:
    subprocess.run([sys.executable, str(FW / "fuzz" / "mkseeds.py")], check=True, cwd=FW.parent)
    subprocess.run(["make", "-s", "-C", str(FW), "fuzz"], check=True)
    return FW / "build" / "fuzz"


def _clean(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr


@pytest.mark.parametrize("harness", HARNESSES)
def test_fuzz_smoke(harnesses: Path, harness: str, tmp_path: Path) -> None:
    seeds = FW / "fuzz" / "corpus" / harness
    assert any(seeds.iterdir()), f"no seeds in {seeds}"
    p = subprocess.run(
        [str(harnesses / f"fuzz_{harness}"), "-max_total_time=15", "-print_final_stats=1",
         str(tmp_path), str(seeds)],
        capture_output=True, text=True,
    )  # fmt: skip
    _clean(p)
    runs = [ln for ln in p.stderr.splitlines() if "stat::number_of_executed_units" in ln]
    # The whole corpus is replayed before any mutation.
    assert runs and int(runs[0].split(":")[-1]) >= len(list(seeds.iterdir()))


@pytest.mark.parametrize(
    "harness", [h for h in HARNESSES if (FW / "fuzz" / "regress" / h).is_dir()]
)
def test_fuzz_regressions(harnesses: Path, harness: str) -> None:
    crashes = sorted((FW / "fuzz" / "regress" / harness).iterdir())
    assert crashes
    p = subprocess.run(
        [str(harnesses / f"fuzz_{harness}"), *map(str, crashes)], capture_output=True, text=True
    )
    _clean(p)
    assert p.stderr.count("Executed ") == len(crashes)


# The lab target writes a file and validates a whole lab per input: fewer of those.
@pytest.mark.parametrize(("target", "runs"), [("setkey", 2000), ("codec", 2000), ("lab", 200)])
def test_fuzz_py_smoke(target: str, runs: int, tmp_path: Path) -> None:
    """The atheris harness replays its corpus and past findings, then fuzzes a little: any
    exception but the parser's documented error type fails it."""
    seeds = FW / "fuzz" / "corpus" / f"py-{target}"
    regress = FW / "fuzz" / "regress" / f"py-{target}"
    dirs = [str(d) for d in (seeds, regress) if d.is_dir()]
    assert any(seeds.iterdir()), f"no seeds in {seeds}"
    p = subprocess.run(
        [sys.executable, str(FW / "fuzz" / "fuzz_py.py"), target, f"-runs={runs}",
         "-print_final_stats=1", str(tmp_path), *dirs],
        capture_output=True, text=True, cwd=FW.parent,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Uncaught Python exception" not in p.stderr
    done = [ln for ln in p.stderr.splitlines() if "stat::number_of_executed_units" in ln]
    assert done and int(done[0].split(":")[-1]) == runs
