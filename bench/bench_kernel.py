"""Kernel benchmark: boot to PF_KEY ready, built kernel against Debian's; warm against cold build.

- Boot: `spdlab up` of a one-target qemu lab (LabRun.up) until the guest's af_key answers
  REGISTER through the relay, for build `linux` on x86_64 and arm64 and for Debian's stock
  kernel (`linux-af_key`, x86_64, modules loaded by its initramfs). Kernels come from the
  cache, so this is boot time. Median of --rounds; the ratio is stock / built. The up is
  split where the driver reports its `boot` phase: before it, the run folder, the cached
  kernel and initramfs looked up; from it, QEMU and the relay started and the guest booted
  until REGISTER answered. *guest CPU*: the QEMU process's CPU time (user + system) at
  REGISTER, the TCG guest's own work: on a loaded machine the rest of the boot is waiting
  for a core.
- Build: a cold build of `linux` for x86_64 into an empty cache (the pristine source is
  shared, so unpacking is not counted), and a one-line patch on top of `linux` rebuilt in
  the cache's object directory. The ratio is cold / warm. `--cold recorded` takes the
  cold time this cache recorded when it first built `linux` (meta.json) instead.

    python bench/bench_kernel.py [--rounds 3] [--cold build|recorded] [--boot-only] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.kernel import build, cache, conf, tree  # noqa: E402
from orchestrator.lab import load_lab  # noqa: E402
from orchestrator.progress import NullProgress  # noqa: E402
from orchestrator.runs import list_runs  # noqa: E402
from orchestrator.targets.session import LabRun  # noqa: E402

GOAL_RATIO = 4.0
GOAL_BOOT_S = 2.0
LAB = """\
name: kbench
range: 10.83.0.0/24
defaults: {{kind: qemu, build: {build}, arch: {arch}, tick_ms: 1000}}
targets:
  - {{name: vm}}
scenario: {{policies: 1, traffic: none, algorithm: aes-cbc-hmac-sha256}}
"""


class PhaseClock(NullProgress):
    """When each phase the drivers report began."""

    def __init__(self) -> None:
        self.began: dict[str, float] = {}

    def phase(self, name: str, total: int | None = None) -> None:
        self.began.setdefault(name, time.monotonic())


def cpu_s(pid: int) -> float:
    """A process's user + system CPU seconds so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot_s(runs: Path, build_name: str, arch: str) -> tuple[float, float, float]:
    """One `up` to PF_KEY ready, then down: seconds of the up, of its boot phase, and the
    guest's CPU seconds in it."""
    lab = runs / f"{build_name}-{arch}.yaml"
    lab.write_text(LAB.format(build=build_name, arch=arch))
    resolved = load_lab(lab)
    clock = PhaseClock()
    t0 = time.monotonic()
    lr = LabRun.up(resolved, base=runs, progress=clock)
    end = time.monotonic()
    cpu = cpu_s(lr.state.targets["vm"]["qemu_pid"])
    lr.down()
    return end - t0, end - clock.began["boot"], cpu


def boots(rounds: int) -> dict[str, tuple[float, ...]]:
    """build arch → (up, boot, guest CPU) seconds, the medians of --rounds ups each."""
    runs = Path(tempfile.mkdtemp(prefix="spdb", dir="/tmp"))
    try:
        cases = (("linux", "x86_64"), ("linux", "arm64"), ("linux-af_key", "x86_64"))
        for b, a in cases:  # warm the caches: builds and the stock initramfs
            boot_s(runs, b, a)
        # Rounds interleave the kernels, so a change in the machine's load falls on each alike.
        got: dict[str, list[tuple[float, float, float]]] = {f"{b} {a}": [] for b, a in cases}
        for _ in range(rounds):
            for b, a in cases:
                got[f"{b} {a}"].append(boot_s(runs, b, a))
        med = statistics.median
        return {k: tuple(med(col) for col in zip(*v, strict=True)) for k, v in got.items()}
    finally:
        for rid in list_runs(runs):
            LabRun.open(rid, base=runs).down()
        shutil.rmtree(runs, ignore_errors=True)


def one_line_patch(src: Path) -> str:
    """A comment added to net/xfrm/xfrm_policy.c: one file to recompile, then the link.

    The comment names the time, so every run builds it afresh instead of finding it cached.
    """
    lines = (src / "net/xfrm/xfrm_policy.c").read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith("int xfrm_policy_flush("))
    ctx = lines[at : at + 3]
    return (
        "--- a/net/xfrm/xfrm_policy.c\n+++ b/net/xfrm/xfrm_policy.c\n"
        f"@@ -{at + 1},3 +{at + 1},4 @@\n"
        f"+/* spdlab bench {time.time_ns()}: a one-line patch */\n"
        + "".join(" " + ln for ln in ctx)
    )


def warm_s(workdir: Path) -> float:
    """`linux` plus a one-line patch, in the shared cache's x86_64 object directory."""
    src = tree.pristine("linux-source-6.1", cache.source_version("linux-source-6.1"))
    build.build(conf.get("linux"), "x86_64")
    patch = workdir / "one-line.patch"
    patch.write_text(one_line_patch(src))
    t0 = time.monotonic()
    build.build(conf.with_patches("linux+one-line", [str(patch)], workdir, "linux"), "x86_64")
    return time.monotonic() - t0


def cold_s() -> float:
    """`linux` for x86_64 into an empty cache (the unpacked source shared, not counted)."""
    shared = cache.root()
    version = cache.source_version("linux-source-6.1")
    src = tree.pristine("linux-source-6.1", version)
    tmp = Path(tempfile.mkdtemp(prefix="spdlab-kbench-", dir="/var/tmp"))
    try:
        (tmp / "src").mkdir()
        (tmp / "src" / version).symlink_to(src)
        os.environ["SPDLAB_KERNEL_CACHE"] = str(tmp)
        t0 = time.monotonic()
        build.build(conf.get("linux"), "x86_64")
        return time.monotonic() - t0
    finally:
        os.environ["SPDLAB_KERNEL_CACHE"] = str(shared)
        shutil.rmtree(tmp, ignore_errors=True)


def recorded_cold_s() -> float:
    """The cold build this cache made of `linux` for x86_64 (meta.json build_s).

    Raises:
        SystemExit: the cache built it incrementally, so it has no cold time to give.
    """
    meta = build.build(conf.get("linux"), "x86_64").meta
    if meta["incremental"]:
        raise SystemExit("bench_kernel: the cache built linux incrementally; use --cold build")
    return float(meta["build_s"])


def builds(cold: str) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="spdlab-kbench-"))
    try:
        warm = warm_s(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"cold": cold_s() if cold == "build" else recorded_cold_s(), "warm": warm}


def verdict(name: str, up: float, stock: float) -> str:
    """The goal for one built kernel, each half said plainly."""
    ratio, fast = stock / up >= GOAL_RATIO, up < GOAL_BOOT_S
    halves = (f"{stock / up:.1f}× faster than stock ({'met' if ratio else 'missed'})",
              f"{up:.2f} s ({'under' if fast else 'not under'} {GOAL_BOOT_S:.0f} s)")  # fmt: skip
    return f"- `{name}`: {halves[0]}, {halves[1]}: **{'met' if ratio and fast else 'missed'}**."


def markdown(boot: dict[str, tuple[float, ...]], bld: dict[str, float] | None, cold: str,
             ) -> str:  # fmt: skip
    stock, stock_boot, stock_cpu = boot["linux-af_key x86_64"]
    rows = [f"| {k} | {u:.2f} s | {stock / u:.1f}× | {s:.2f} s | {stock_boot / s:.1f}× "
            f"| {c:.2f} s | {stock_cpu / c:.1f}× |" for k, (u, s, c) in boot.items()]  # fmt: skip
    goals = [verdict(k, u, stock) for k, (u, *_) in boot.items() if not k.startswith("linux-af")]
    return "\n".join([
        "## kernel", "",
        "`spdlab up` of one qemu target until its af_key answers REGISTER (TCG), kernels from",
        "the build cache; the ratio is Debian's stock kernel against each. *boot*: the part",
        "of the up from QEMU's start (the driver's `boot` phase) to REGISTER answered.",
        "*guest CPU*: QEMU's CPU time (user + system) at REGISTER, the guest's own work; the",
        "rest of the boot is waiting for a core on this loaded machine.", "",
        "| kernel | up → PF_KEY ready | stock / this | of which boot | stock / this "
        "| guest CPU | stock / this |",
        "|---|---|---|---|---|---|---|", *rows, "",
        f"Goal: a built kernel ≥ {GOAL_RATIO:.0f}× faster than stock and under "
        f"{GOAL_BOOT_S:.0f} s, from `spdlab up` to PF_KEY ready:", *goals, "",
        *(build_rows(bld, cold) if bld else []),
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
    ])  # fmt: skip


def build_rows(bld: dict[str, float], cold: str) -> list[str]:
    return [
        "Kernel build of `linux` for x86_64 (`make -j2`): cold into an empty cache"
        + (" (this cache's own cold build, `--cold recorded`)" if cold == "recorded" else "")
        + ", then a one-line patch rebuilt in the same object directory.", "",
        "| build | time | cold / this |", "|---|---|---|",
        f"| cold | {bld['cold']:.0f} s | 1.0× |",
        f"| one-line patch, warm | {bld['warm']:.1f} s | {bld['cold'] / bld['warm']:.0f}× |", "",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--cold",
        choices=("build", "recorded"),
        default="build",
        help="build: a cold build now; recorded: the cache's first build's time",
    )
    p.add_argument("--boot-only", action="store_true", help="measure the boots, no builds")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    text = markdown(boots(a.rounds), None if a.boot_only else builds(a.cold), a.cold)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
