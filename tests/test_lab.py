"""The lab file: validation errors as `file:line:col: field: message`, and stage-2 resolution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.lab import LabError, load_lab
from orchestrator.lab.builds import DEFAULT_BUILDS, known_builds

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "labs" / "bad"

# file → the one error line it must give, after `<file>:`
EXPECTED = {
    "address_clash": "8:14: targets[1].address: address 10.77.3.4 clashes with target 'a'",
    "address_outside": "7:14: targets[0].address: address 192.168.1.1 is outside the lab range "
    "10.77.0.0/16",
    "address_with_count": "7:14: targets[0].address: one address for several targets; "
    "use subnet instead",
    "bad_delete_mode": "7:11: scenario.delete: input should be 'flush', 'delete', 'delete2', "
    "'expire' or 'spdupdate'",
    "bad_name": "5:11: targets[0].name: 'Gateway_1' is not a valid name",
    "bad_range": "2:8: range: input is not a valid IPv4 network",
    "build_and_builds": "3:5: targets[0]: give either build or builds, not both",
    "duplicate_key": "6:5: targets[0].tick_ms: duplicate key",
    "duplicate_name": "7:11: targets[2].name: duplicate name 'gw' (also targets[0])",
    "duplicate_name_expanded": "7:11: targets[1].name: duplicate name 'gw-2' (also targets[0])",
    "expect_unknown_build": "8:5: expect.netkey2: unknown build 'netkey2'",
    "missing_build": "3:5: targets[0].build: required",
    "negative_count": "6:12: targets[0].count: must be >= 1, got -3",
    "negative_tick": "4:12: defaults.tick_ms: must be >= 0, got -5",
    "no_targets": "4:10: targets: list should have at least 1 item",
    "not_a_mapping": "1:1: (root): the lab file must be a mapping",
    "range_exhausted": "7:12: targets[0].count: no free address left",
    "same_as_loop": "8:14: expect.netkey.same_as: same_as loops back on itself",
    "subnet_outside": "8:13: targets[0].subnet: subnet 10.78.1.0/24 is outside the lab range "
    "10.77.0.0/16",
    "traffic_host_clash": "8:14: targets[0].address: address 10.77.0.20 clashes with the "
    "traffic host",
    "unknown_build": "4:12: targets[0].build: unknown build 'netkey+typo'. Known builds are: ",
    "unknown_group": "9:12: targets[0].group: unknown group 'slow' (groups: fast)",
    "unknown_key_target": "6:5: targets[0].bulid: unknown key",
    "unknown_key_top": "6:1: colour: unknown key",
    "unknown_kind": "6:11: targets[0].kind: unknown kind 'zone'. "
    "Supported kinds are: docker, netns",
    "yaml_syntax": "5:1: (yaml): expected ',' or ']'",
    "zero_policies": "7:13: scenario.policies: must be >= 1, got 0",
}


def test_every_bad_file_has_an_expectation():
    files = {p.stem for p in BAD.glob("*.yaml")}
    assert files == set(EXPECTED)
    assert len(files) >= 20


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_bad_lab_gives_one_line_and_exit_2(stem, capsys):
    path = str(BAD / f"{stem}.yaml")
    assert main(["validate", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{path}:{EXPECTED[stem]}"), lines[0]
    assert "Traceback" not in err


def test_validate_subprocess_no_traceback_and_no_heavy_imports():
    probe = (
        "import sys\n"
        "from orchestrator.cli.main import main\n"
        f"rc = main(['validate', {str(BAD / 'unknown_key_top.yaml')!r}])\n"
        "heavy = [m for m in ('ansible_runner', 'ansible', 'docker') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "2 []", r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_validate_json(capsys):
    assert main(["validate", "--json", str(BAD / "negative_count.yaml")]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and "targets[0].count" in doc["errors"][0]
    assert main(["validate", "--json", str(ROOT / "labs" / "demo.yaml")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and len(doc["targets"]) == 6


def test_missing_file_is_one_line(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_demo_lab_has_the_six_builds():
    lab = load_lab(ROOT / "labs" / "demo.yaml")
    assert sorted(lab.builds) == sorted(DEFAULT_BUILDS)
    assert len(lab.targets) == 6
    assert lab.scenario.policies == 2000 and lab.scenario.delete == "delete"
    assert lab.expect["netkey+nextsp"].premature_frees == lab.expect["netkey"].premature_frees
    assert lab.expect["netkey+nextsp"].drain_ticks_max == lab.expect["netkey"].drain_ticks_max
    assert lab.expect["netipsec"].premature_frees_min == 1
    assert lab.expect["canary+nextsp"].drain_ticks_max == 1


@pytest.mark.parametrize("name, n", [("scale.yaml", 64), ("scale-256.yaml", 256)])
def test_scale_lab_has_n_gateways_with_unique_addresses(name, n):
    lab = load_lab(ROOT / "labs" / name)
    assert len(lab.targets) == n
    addrs = {t.address for t in lab.targets} | {lab.traffic_host.address}
    assert len(addrs) == n + 1
    assert all(t.address in lab.range for t in lab.targets)
    assert [t.name for t in lab.targets] == sorted(t.name for t in lab.targets)


def write(tmp_path, text):
    p = tmp_path / "lab.yaml"
    p.write_text(text)
    return p


def test_defaults_group_target_precedence(tmp_path):
    lab = load_lab(
        write(
            tmp_path,
            """
name: prec
defaults: {build: netkey, tick_ms: 50, flow_idle_ticks: 7, labels: {a: d, b: d}}
groups:
  g: {build: netipsec, tick_ms: 60, labels: {b: g, c: g}}
targets:
  - {name: plain}
  - {name: grouped, group: g}
  - {name: own, group: g, tick_ms: 70, labels: {c: t}}
""",
        )
    )
    t = {x.name: x for x in lab.targets}
    assert (t["plain"].build, t["plain"].tick_ms, t["plain"].flow_idle_ticks) == ("netkey", 50, 7)
    assert (t["grouped"].build, t["grouped"].tick_ms) == ("netipsec", 60)
    assert t["own"].tick_ms == 70 and t["own"].labels == {"a": "d", "b": "g", "c": "t"}


def test_count_crossed_with_builds(tmp_path):
    lab = load_lab(
        write(
            tmp_path,
            """
name: matrix
targets:
  - {name: gw, builds: [netkey, netipsec+split], count: 3}
  - {name: one, build: canary, address: 10.77.0.10}
""",
        )
    )
    names = [t.name for t in lab.targets]
    assert names == sorted(names) and len(names) == 7
    assert "gw-netipsec-split-3" in names and "gw-netkey-1" in names
    assert lab.target("one").address.exploded == "10.77.0.10"
    assert len({t.address for t in lab.targets}) == 7
    assert lab.builds == ("canary", "netipsec+split", "netkey")


def test_builds_conf_is_read(tmp_path):
    conf = tmp_path / "builds.conf"
    conf.write_text("# name tree patches\nalpha netkey\n\nbeta netkey p1 p2  # comment\n")
    assert known_builds(conf) == ("alpha", "beta")
    assert known_builds(tmp_path / "missing.conf") == DEFAULT_BUILDS


def test_several_errors_are_all_reported(tmp_path):
    path = write(
        tmp_path,
        "name: many\ntargets:\n  - {name: a, build: nope}\n"
        "  - {name: b, build: netkey, count: 0}\n",
    )
    with pytest.raises(LabError) as e:
        load_lab(path)
    assert len(e.value.lines) == 1  # count fails in stage 1, before builds are checked
    path = write(
        tmp_path, "name: many\ntargets:\n  - {name: a, build: nope}\n  - {name: a, kind: x}\n"
    )
    with pytest.raises(LabError) as e:
        load_lab(path)
    assert len(e.value.lines) == 2


def test_a_kind_that_runs_a_real_kernel_has_its_own_builds(tmp_path):
    lab = load_lab(ROOT / "labs" / "linux-af_key.yaml")
    assert [(t.kind, t.build) for t in lab.targets] == [("qemu", "linux-af_key")]
    assert lab.expect["linux-af_key"].drain_ticks_max == 0
    mixed = "name: mixed\ntargets:\n  - {name: a, build: netkey}\n"
    mixed += "  - {name: b, kind: qemu, build: linux-af_key}\n"
    assert [t.build for t in load_lab(write(tmp_path, mixed)).targets] == ["netkey", "linux-af_key"]
    bad = "name: bad\ntargets:\n  - {name: a, build: linux-af_key}\n"
    bad += "  - {name: b, kind: qemu, build: netkey}\n"
    with pytest.raises(LabError) as e:
        load_lab(write(tmp_path, bad))
    assert len(e.value.lines) == 2
    assert "unknown build 'linux-af_key' for kind netns" in e.value.lines[0]
    want = "unknown build 'netkey' for kind qemu. Known builds are: linux-af_key"
    assert want in e.value.lines[1]


def test_an_expectation_the_kind_cannot_observe_is_a_validate_error(tmp_path):
    """SPDDUMP polling cannot see frees: `premature_frees: 0` on a qemu target never passes."""
    text = "name: vm\ndefaults: {kind: qemu, build: linux-af_key}\ntargets:\n  - {name: a}\n"
    text += "expect:\n  linux-af_key: {drain_ticks_max: 0, premature_frees: 0}\n"
    path = write(tmp_path, text)
    with pytest.raises(LabError) as e:
        load_lab(path)
    (line,) = e.value.lines
    assert line.startswith(f"{path}:6:")
    assert "expect.linux-af_key.premature_frees: not observable on kind qemu: SPDDUMP" in line
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "validate", str(path)],
                       capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert p.returncode == 2 and p.stderr.strip() == line and "Traceback" not in p.stderr
