"""The lab file: validation errors as `file:line:col: field: message`, and stage-2 resolution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser, main
from orchestrator.cli.run import overrides
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
    "deterministic_mixed_tick": "5:5: targets[1].tick_ms: 15, but tick_ms 0 on a makes the lab "
    "deterministic: set scenario.deterministic: true, or tick_ms 0 on every target",
    "deterministic_qemu": "4:21: targets[1].kind: qemu build linux-af_key keeps its own time: "
    "a deterministic lab (scenario.deterministic) runs netkeyd targets only",
    "deterministic_rate": "6:12: scenario.traffic: rate has no tick schedule: a deterministic "
    "lab sends keepalive (or none)",
    "deterministic_native": "6:11: scenario.sender: native: a deterministic lab sends its "
    "rounds from the stepped sender",
    "duplicate_key": "6:5: targets[0].tick_ms: duplicate key",
    "duplicate_name": "7:11: targets[2].name: duplicate name 'gw' (also targets[0])",
    "duplicate_name_expanded": "7:11: targets[1].name: duplicate name 'gw-2' (also targets[0])",
    "expect_unknown_build": "8:5: expect.netkey2: unknown build 'netkey2'",
    "missing_build": "3:5: targets[0].build: required",
    "negative_count": "6:12: targets[0].count: must be >= 1, got -3",
    "negative_tick": "4:12: defaults.tick_ms: must be >= 0, got -5",
    "native_cbc": "6:11: scenario.sender: native sends aes-gcm-16 only, not aes-cbc-hmac-sha256",
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


def test_a_boards_kernel_cannot_observe_frees_either(tmp_path):
    """An ssh board's `kernel` is SPDDUMP polled like qemu; its netkeyd builds are not."""
    text = "name: board\ndefaults: {kind: ssh, ssh: {address: 10.0.0.1}}\ntargets:\n"
    text += "  - {name: b, build: kernel}\n  - {name: c, build: netkey}\n"
    text += "scenario: {traffic: none}\nexpect:\n  kernel: {premature_frees: 0}\n"
    text += "  netkey: {premature_frees: 0}\n"
    with pytest.raises(LabError) as e:
        load_lab(write(tmp_path, text))
    (line,) = e.value.lines
    assert ":8:29: expect.kernel.premature_frees: not observable on kind ssh: SPDDUMP" in line


def test_a_deterministic_lab_runs_every_tick_at_0_ms(tmp_path):
    """scenario.deterministic sets every target's tick_ms to 0; tick_ms 0 everywhere is the
    same lab; --deterministic and --seed set the scenario over the file's."""
    text = "name: det\ndefaults: {tick_ms: 15}\ntargets:\n  - {name: a, build: netkey}\n"
    wall = load_lab(write(tmp_path, text))
    assert not wall.scenario.deterministic and wall.targets[0].tick_ms == 15
    flag = load_lab(write(tmp_path, text + "scenario: {deterministic: true}\n"))
    zero = load_lab(write(tmp_path, text.replace("15", "0")))
    cli = load_lab(write(tmp_path, text), scenario={"deterministic": True, "seed": 9})
    for lab in (flag, zero, cli):
        assert lab.scenario.deterministic and [t.tick_ms for t in lab.targets] == [0]
    assert cli.scenario.seed == 9 and flag.scenario.seed == 0
    # A real kernel's tick_ms 0 (SPDDUMP only on request) is not deterministic mode.
    vm = "name: vm\ndefaults: {kind: qemu, build: linux-af_key, tick_ms: 0}\ntargets:\n"
    assert not load_lab(write(tmp_path, vm + "  - {name: a}\n")).scenario.deterministic


def test_an_expectation_the_kind_cannot_observe_is_a_validate_error(tmp_path):
    """No kernel counter counts a free while referenced: `premature_frees: 0` on a qemu
    target never passes."""
    text = "name: vm\ndefaults: {kind: qemu, build: linux-af_key}\ntargets:\n  - {name: a}\n"
    text += "expect:\n  linux-af_key: {drain_ticks_max: 0, premature_frees: 0}\n"
    path = write(tmp_path, text)
    with pytest.raises(LabError) as e:
        load_lab(path)
    (line,) = e.value.lines
    assert line.startswith(f"{path}:6:")
    assert "expect.linux-af_key.premature_frees: not observable on kind qemu: Linux frees" in line
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "validate", str(path)],
                       capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert p.returncode == 2 and p.stderr.strip() == line and "Traceback" not in p.stderr


MODES_LAB = """\
name: modes
defaults: {build: netkey}
targets:
  - {name: a, builds: [netkey, canary]}
scenario: {delete: [flush, delete, expire]}
expect:
  netkey:
    drain_ticks_max: 1
    flush: {flush_removes: 40}
  canary:
    same_as: netkey
    drain_ticks_min: 5
    delete: {drain_ticks_max: null}
"""


def test_a_list_of_delete_modes_is_one_lab_per_mode(tmp_path):
    lab = load_lab(write(tmp_path, MODES_LAB))
    assert lab.modes == ("flush", "delete", "expire") and lab.scenario.delete == "flush"
    runs = lab.each_mode()
    assert [r.scenario.delete for r in runs] == ["flush", "delete", "expire"]
    assert all(r.targets == lab.targets for r in runs)

    def checks(build, mode):
        e = lab.expect[build].for_mode(mode)
        return {k: getattr(e, k) for k in e.measured()}

    # A mode's block adds to the build's own checks, for that mode only; same_as copies it.
    assert checks("netkey", "flush") == {"drain_ticks_max": 1, "flush_removes": 40}
    assert checks("netkey", "expire") == {"drain_ticks_max": 1}
    assert checks("canary", "flush") == {"drain_ticks_max": 1, "drain_ticks_min": 5,
                                         "flush_removes": 40}  # fmt: skip
    assert checks("canary", "delete") == {"drain_ticks_min": 5}  # null drops a check
    single = load_lab(write(tmp_path, MODES_LAB.replace("[flush, delete, expire]", "delete")))
    assert single.modes == ("delete",) and len(single.each_mode()) == 1


def test_run_delete_picks_modes_over_the_lab_files(tmp_path):
    """`spdlab run LAB --delete M` runs M instead of the file's list, each mode once."""
    args = build_parser().parse_args(["run", "x.yaml", "--delete", "expire", "--delete",
                                      "flush", "--delete", "expire"])  # fmt: skip
    lab = load_lab(write(tmp_path, MODES_LAB), scenario=overrides(args))
    assert lab.modes == ("expire", "flush")
    assert [r.scenario.delete for r in lab.each_mode()] == ["expire", "flush"]
    assert lab.expect["netkey"].for_mode("flush").flush_removes == 40


def test_a_mode_listed_twice_is_one_line(tmp_path):
    path = write(tmp_path, MODES_LAB.replace("[flush, delete, expire]", "[flush, delete, flush]"))
    with pytest.raises(LabError) as e:
        load_lab(path)
    (line,) = e.value.lines
    assert line.startswith(f"{path}:5:") and "delete: mode flush listed twice" in line


def test_an_unobservable_measure_under_one_mode_names_its_key(tmp_path):
    """Linux replaces a policy in place on SPDUPDATE: the dump cannot count the replaced."""
    text = "name: vm\ndefaults: {kind: qemu, build: linux}\ntargets:\n  - {name: a}\n"
    text += "scenario: {delete: [flush, spdupdate]}\n"
    text += "expect:\n  linux:\n    flush_removes: 100\n    spdupdate: {drain_ticks_max: 0}\n"
    path = write(tmp_path, text)
    with pytest.raises(LabError) as e:
        load_lab(path)
    (line,) = e.value.lines
    assert line.startswith(f"{path}:8:")
    assert "expect.linux.flush_removes: not observable on kind qemu under delete spdupdate: " \
           "Linux replaces a policy in place" in line  # fmt: skip
    ok = text.replace("    flush_removes: 100\n", "    flush: {flush_removes: 100}\n")
    assert load_lab(write(tmp_path, ok)).modes == ("flush", "spdupdate")
