"""Kernel builds in lab files: `arch:`, labels.hardware, `kernels:` of the user's own patches."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab import LabError, load_lab
from orchestrator.targets.qemuboot import kernel_build

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lab.yaml"
    p.write_text(text)
    return p


def test_linux_kernels_lab_crosses_four_builds_with_two_arches():
    lab = load_lab(ROOT / "labs" / "linux-kernels.yaml")
    got = {(t.build, t.arch, t.labels["hardware"]) for t in lab.targets}
    builds = ("linux", "linux+loop-rewrite", "linux-canary", "linux-canary+fix")
    assert got == {(b, a, a) for b in builds for a in ("x86_64", "arm64")}
    assert lab.scenario.policies == 2000 and lab.scenario.delete == "flush"
    # every mode af_key has, each a run of its own; only the flush goes through the canary
    assert lab.modes == ("flush", "delete", "delete2", "spdupdate", "expire")
    canary = lab.expect["linux-canary"]
    assert canary.for_mode("flush").flush_removes == 1
    assert canary.for_mode("flush").drain_ticks_max is None
    assert [canary.for_mode(m).drain_ticks_max for m in lab.modes[1:]] == [0, 0, 0, 1]
    assert lab.expect["linux+loop-rewrite"].same_as == "linux"


def test_arch_inherits_and_sets_hardware(tmp_path):
    lab = load_lab(write(tmp_path, """\
name: k
defaults: {kind: qemu, build: linux, labels: {hardware: x86-vm}}
groups: {arm: {arch: arm64}}
targets:
  - {name: a, group: arm}
  - {name: b}
"""))  # fmt: skip
    assert [(t.arch, t.labels["hardware"]) for t in lab.targets] == [("arm64", "arm64"),
                                                                     ("", "x86-vm")]  # fmt: skip


def test_user_kernels_resolve_patch_paths_next_to_the_lab(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.patch").write_text("--- a/x\n+++ b/x\n")
    lab = load_lab(write(tmp_path, """\
name: k
defaults: {kind: qemu}
kernels:
  linux+mine: {base: linux-canary, patches: [p/mine.patch]}
targets:
  - {name: a, build: linux+mine}
"""))  # fmt: skip
    assert lab.kernels["linux+mine"].patches == (str(tmp_path / "p" / "mine.patch"),)
    kb = kernel_build(lab, "linux+mine")
    assert [p.name for p in kb.patches] == ["xfrm-census", "canary-flush-one", "mine"]
    assert kb.synthetic  # the base is the synthetic control


def lab_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(LabError) as e:
        load_lab(write(tmp_path, text))
    return e.value.lines


def test_bad_kernel_definitions_are_one_line_each(tmp_path):
    lines = lab_errors(tmp_path, """\
name: k
defaults: {kind: qemu}
kernels:
  linux+mine: {base: linux-nope, patches: [gone.patch]}
targets:
  - {name: a, build: linux+mine}
  - {name: b, kind: netns, build: linux}
""")  # fmt: skip
    assert len(lines) == 3, lines
    text = "\n".join(lines)
    assert ":4:22: kernels.linux+mine.base: unknown kernel build 'linux-nope'" in text
    assert ":4:44: kernels.linux+mine.patches[0]: no such patch file: " in text
    assert "unknown build 'linux' for kind netns" in text
    [line] = lab_errors(tmp_path, "name: k\ntargets:\n  - {name: a, kind: qemu, arch: mips}\n")
    assert "targets[0].arch: input should be" in line and "'x86_64' or 'arm64'" in line, line
