"""Spec §4, row by row: 2000 in-use policies per build, each held by an open flow.

Every build runs plain and under ASan+UBSan; a sanitizer finding or a leak at
exit fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tickdrive import Stepped, run_build

N = 2000
RELEASE = 3  # flows send (and let go of dead policies) before this tick


@pytest.fixture(params=[False, True], ids=["plain", "asan"])
def asan(request: pytest.FixtureRequest) -> bool:
    return request.param


def run(build: str, mode: str, tmp_path: Path, asan: bool) -> Stepped:
    r = run_build(build, tmp_path / f"{build}-{mode}", N, mode, asan=asan, release_after=RELEASE)
    assert r.sanitizer == "", r.sanitizer
    assert r.exit_status == 0
    return r


# build → (removed by one SPDFLUSH, ticks until no deleted policy is linked,
#          premature frees, use after free)
FLUSH = {
    "netkey": (N, 0, 0, 0),
    "netkey+nextsp": (N, 0, 0, 0),
    "netipsec": (0, 2, N, N),
    "netipsec+split": (N, 0, 0, 0),
    "canary": (1, None, 0, 0),
    "canary+nextsp": (N, 0, 0, 0),
}


@pytest.mark.parametrize("build", FLUSH)
def test_flush_row(build: str, tmp_path: Path, asan: bool) -> None:
    r = run(build, "flush", tmp_path, asan)
    removed, drain, premature, uaf = FLUSH[build]
    assert r.removed_by_delete == removed
    assert r.drain_ticks == drain
    assert r.premature_frees == premature
    assert r.use_after_free == uaf


@pytest.mark.parametrize("build", ["netkey", "netkey+nextsp", "netipsec+split", "canary+nextsp"])
def test_memory_freed_when_flows_let_go(build: str, tmp_path: Path, asan: bool) -> None:
    """Unlinked at once, but allocated until the flows' next packet releases them."""
    r = run(build, "flush", tmp_path, asan)
    before = r.ticks[: RELEASE - 1]
    assert all(t["allocated"] == N and t["freed"] == 0 for t in before)
    # `flow sendall` runs just before tick RELEASE: its frees land in that record.
    assert r.ticks[RELEASE - 1]["freed"] == N
    assert r.ticks[RELEASE - 1]["allocated"] == 0
    assert r.free_ticks == RELEASE


def test_netipsec_frees_by_ttl_while_flows_hold(tmp_path: Path, asan: bool) -> None:
    """refcnt 2 (table + flow): tick 1 drops to 1, tick 2 frees, premature."""
    r = run("netipsec", "flush", tmp_path, asan)
    t1, t2 = r.ticks[0], r.ticks[1]
    assert (t1["dead_out"], t1["freed"]) == (N, 0)
    assert (t2["dead_out"], t2["freed"], t2["premature"]) == (0, N, N)
    # The flows' next packets touch freed policies.
    assert r.ticks[RELEASE - 1]["uaf"] == N


def test_split_fix_keeps_memory_until_last_flow(tmp_path: Path, asan: bool) -> None:
    r = run("netipsec+split", "flush", tmp_path, asan)
    assert r.premature_frees == 0 and r.use_after_free == 0
    assert r.ticks[0]["allocated"] == N and r.ticks[RELEASE - 1]["freed"] == N


def test_canary_flush_removes_exactly_one(tmp_path: Path, asan: bool) -> None:
    r = run("canary", "flush", tmp_path, asan)
    assert r.removed_by_delete == 1
    assert r.ticks[0]["alive_out"] == N - 1


def test_canary_delete_drains_one_per_tick(tmp_path: Path, asan: bool) -> None:
    """The seed's figure: 2000 deleted in-use policies take 2000 ticks (±1)."""
    r = run("canary", "delete", tmp_path, asan)
    assert r.removed_by_delete == 0  # in use: the unlink is left to the timer
    assert r.drain_ticks is not None and abs(r.drain_ticks - N) <= 1
    assert all(t["unlinked"] == 1 for t in r.ticks[: N - 1])
    assert [t["dead_out"] for t in r.ticks[:3]] == [N - 1, N - 2, N - 3]


def test_canary_nextsp_delete_drains_in_one_tick(tmp_path: Path, asan: bool) -> None:
    r = run("canary+nextsp", "delete", tmp_path, asan)
    assert r.removed_by_delete == 0  # in use: left to the timer, as on canary
    assert r.drain_ticks == 1
    assert r.ticks[0]["unlinked"] == N


@pytest.mark.parametrize("mode", ["flush", "delete", "delete2", "expire"])
def test_seed_patch_is_a_noop(mode: str, tmp_path: Path) -> None:
    """netkey and netkey+nextsp give identical tick-by-tick drain records."""
    a = run("netkey", mode, tmp_path, False)
    b = run("netkey+nextsp", mode, tmp_path, False)
    assert a.removed_by_delete == b.removed_by_delete
    assert a.ticks == b.ticks
    assert len(a.ticks) >= RELEASE


@pytest.mark.parametrize(
    ("build", "drain"),
    [
        ("netkey", 2),
        ("netipsec", 3),
        ("netipsec+split", 2),
        ("canary", N + 1),
        ("canary+nextsp", 2),
    ],
)
def test_expiry_variant(build: str, drain: int, tmp_path: Path) -> None:
    """All lifetimes end on one tick: marked DEAD then, unlinked from the next tick on."""
    r = run(build, "expire", tmp_path, False)
    assert r.ticks[0]["dead_out"] == N and r.ticks[0]["alive_out"] == 0
    assert r.drain_ticks == drain
