"""The libFuzzer harnesses build, and a short run over their seeds finds nothing.

The long campaigns are `make -C firmware fuzz-run FUZZ_SECS=...`; this keeps the
harnesses from rotting and replays the corpus under ASan+UBSan on every test run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

FW = Path(__file__).resolve().parents[1] / "firmware"


@pytest.fixture(scope="module")
def harnesses() -> Path:
    subprocess.run([sys.executable, str(FW / "fuzz" / "mkseeds.py")], check=True, cwd=FW.parent)
    subprocess.run(["make", "-s", "-C", str(FW), "fuzz"], check=True)
    return FW / "build" / "fuzz"


@pytest.mark.parametrize("harness", ["pfkey", "esp"])
def test_fuzz_smoke(harnesses: Path, harness: str, tmp_path: Path) -> None:
    seeds = FW / "fuzz" / "corpus" / harness
    assert any(seeds.iterdir()), f"no seeds in {seeds}"
    p = subprocess.run(
        [str(harnesses / f"fuzz_{harness}"), "-max_total_time=15", "-print_final_stats=1",
         str(tmp_path), str(seeds)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr
    runs = [ln for ln in p.stderr.splitlines() if "stat::number_of_executed_units" in ln]
    assert runs and int(runs[0].split(":")[-1]) > 1000
