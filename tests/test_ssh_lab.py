"""The `ssh:` block of `kind: ssh` targets: validation, inheritance, inventory hosts, ssh_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InfraError
from orchestrator.lab import LabError, load_lab
from orchestrator.targets import sshconn


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lab.yaml"
    p.write_text(text)
    return p


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(LabError) as e:
        load_lab(write(tmp_path, text))
    return e.value.lines


def test_defaults_give_the_login_targets_their_addresses(tmp_path):
    lab = load_lab(
        write(
            tmp_path,
            """\
name: boards
defaults:
  kind: ssh
  ssh: {user: lab, key: keys/id_ed25519, known_hosts: keys/known_hosts, port: 2222}
targets:
  - {name: nbsd, build: kernel, ssh: {address: nbsd.lab.example}}
  - {name: nk, build: netkey, ssh: {address: 192.0.2.7, port: 22, relay: build}}
""",
        )
    )
    nbsd, nk = lab.targets
    assert (nbsd.kind, nbsd.build, nk.build) == ("ssh", "kernel", "netkey")
    assert nbsd.ssh.address == "nbsd.lab.example" and nbsd.ssh.port == 2222
    assert nbsd.ssh.key == str(tmp_path / "keys" / "id_ed25519")  # from the lab's folder
    assert nbsd.ssh.known_hosts == str(tmp_path / "keys" / "known_hosts")
    assert (nk.ssh.port, nk.ssh.user, nk.ssh.relay, nbsd.ssh.relay) == (22, "lab", "build", "auto")
    assert nk.ssh.dir == "/tmp"


@pytest.mark.parametrize(
    "target, want",
    [
        ("{name: a, build: kernel}", "6:5: targets[0].ssh: required: the board's address"),
        ("{name: a, build: kernel, ssh: {user: x}}", "6:35: targets[0].ssh.address: required"),
        (
            "{name: a, build: kernel, ssh: {address: h, host: b, inventory: i}}",
            "6:54: targets[0].ssh.host: give either address or host",
        ),
        ("{name: a, build: kernel, ssh: {host: b}}", "targets[0].ssh.host: an inventory host"),
        ("{name: a, build: kernel, ssh: {address: 'a b'}}", "targets[0].ssh.address: 'a b'"),
        ("{name: a, build: kernel, ssh: {address: h, port: 0}}", "ssh.port: must be >= 1"),
        ("{name: a, build: kernel, ssh: {address: h, relay: x}}", "ssh.relay: input should be"),
        ("{name: a, build: kernel, ssh: {address: h, pass: x}}", "ssh.pass: unknown key"),
        (
            "{name: a, kind: netns, build: netkey, ssh: {address: h}}",
            "targets[0].ssh: only for kind ssh (this target is kind netns)",
        ),
        ("{name: a, kind: netns, build: kernel}", "unknown build 'kernel' for kind netns"),
    ],
)
def test_bad_ssh_settings_are_one_line_each(tmp_path, target, want):
    lines = errors(tmp_path, f"name: b\ndefaults:\n  kind: ssh\n\ntargets:\n  - {target}\n")
    assert len(lines) == 1 and want in lines[0], lines


def test_an_inventory_host_gives_the_connection(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        "[boards]\nfbsd ansible_host=198.51.100.9 ansible_port=2200 ansible_user=ops "
        "ansible_ssh_private_key_file=/keys/fbsd\n"
    )
    lab = load_lab(
        write(
            tmp_path,
            f"""\
name: inv
defaults: {{kind: ssh, build: kernel}}
targets:
  - {{name: fbsd, ssh: {{inventory: {inv.name}, host: fbsd, known_hosts: kh}}}}
""",
        )
    )
    [t] = lab.targets
    cfg = sshconn.ssh_config("fbsd", t.ssh)
    for line in ("Host spdlab-fbsd", "HostName 198.51.100.9", "Port 2200", "User ops",
                 "IdentityFile /keys/fbsd", f"UserKnownHostsFile {tmp_path / 'kh'}",
                 "StrictHostKeyChecking yes", "BatchMode yes"):  # fmt: skip
        assert f"\n  {line}\n" in f"\n{cfg}" or cfg.startswith(line), (line, cfg)
    assert "StrictHostKeyChecking no" not in cfg and "accept-new" not in cfg


def test_a_host_missing_from_the_inventory_is_one_reason(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text("[boards]\nother ansible_host=192.0.2.1\n")
    lab = load_lab(
        write(
            tmp_path,
            f"""\
name: inv
defaults: {{kind: ssh, build: kernel}}
targets:
  - {{name: gone, ssh: {{inventory: {inv}, host: gone}}}}
""",
        )
    )
    with pytest.raises(InfraError) as e:
        sshconn.ssh_config("gone", lab.targets[0].ssh)
    assert "host gone" in str(e.value) and "\n" not in str(e.value)


def test_host_key_messages_become_one_reason():
    changed = (
        "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed."
    )
    assert sshconn.host_key_problem(changed) == "the board's SSH host key changed"
    unknown = "Host key verification failed."
    assert sshconn.host_key_problem(unknown) == "the board's SSH host key is not in known_hosts"
    assert sshconn.host_key_problem("Connection refused") is None


@pytest.mark.parametrize("name", ["ssh-netbsd", "ssh-freebsd"])
def test_the_example_board_labs_validate(name):
    lab = load_lab(Path(__file__).resolve().parents[1] / "labs" / f"{name}.yaml")
    [t] = lab.targets
    assert (t.kind, t.build) == ("ssh", "kernel")
    assert t.ssh.known_hosts == str(Path("~/.ssh/known_hosts").expanduser())


# ------------------------------------------------------------------ multi-host labs


def test_hosts_and_host_place_targets(tmp_path):
    lab = load_lab(
        write(
            tmp_path,
            """\
name: hosts
hosts:
  h1: {address: 192.0.2.1, user: root, key: k, known_hosts: kh}
  h2: {address: 192.0.2.2, python: /opt/py/bin/python3}
groups:
  far: {host: h2}
targets:
  - {name: a, build: netkey, host: h1}
  - {name: b, build: netkey, group: far}
  - {name: c, build: netkey}
""",
        )
    )
    a, b, c = lab.targets
    assert (a.host, b.host, c.host) == ("h1", "h2", None)
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    assert (h1.ssh.address, h1.ssh.key, h1.python) == ("192.0.2.1", str(tmp_path / "k"), "python3")
    assert (h2.python, h2.ssh.known_hosts) == (
        "/opt/py/bin/python3",
        str(Path("~/.ssh/known_hosts").expanduser()),
    )
    cfg = sshconn.ssh_config("host-h1", h1.ssh)
    assert "StrictHostKeyChecking yes" in cfg and f"UserKnownHostsFile {tmp_path / 'kh'}" in cfg


def test_an_inventory_file_gives_every_host(tmp_path):
    (tmp_path / "hosts.ini").write_text(
        "[lab]\nlab1 ansible_host=198.51.100.1\nlab2 ansible_host=198.51.100.2 ansible_user=ops\n"
    )
    lab = load_lab(
        write(
            tmp_path,
            "name: inv\nhosts: hosts.ini\ntargets:\n  - {name: a, build: netkey, host: lab2}\n",
        )
    )
    assert sorted(lab.hosts) == ["lab1", "lab2"]
    cfg = sshconn.ssh_config("host-lab2", lab.hosts["lab2"].ssh)
    assert "HostName 198.51.100.2" in cfg and "User ops" in cfg


@pytest.mark.parametrize(
    "body, want",
    [
        (
            "hosts: {h1: {address: 192.0.2.1}}\ntargets:\n  - {name: a, build: netkey, host: h9}\n",
            "4:36: targets[0].host: unknown lab host 'h9' (hosts: h1)",
        ),
        (
            "targets:\n  - {name: a, build: netkey, host: h1}\n",
            "targets[0].host: unknown lab host 'h1' (hosts: none)",
        ),
        (
            "hosts: {h1: {address: 192.0.2.1}}\ntargets:\n"
            "  - {name: a, kind: docker, build: netkey, host: h1}\n",
            "targets[0].host: kind docker does not run on lab hosts (kinds there: netns)",
        ),
        (
            "hosts: {h1: {user: root}}\ntargets:\n  - {name: a, build: netkey}\n",
            "hosts.h1.address: required",
        ),
        ("hosts: {H1: {address: x}}\ntargets:\n  - {name: a, build: netkey}\n", "hosts.H1"),
        ("hosts: nothere.ini\ntargets:\n  - {name: a, build: netkey}\n", "hosts: inventory"),
        (
            "hosts: {h1: {address: 192.0.2.1}}\ntargets:\n  - {name: a, build: netkey, host: h1}\n"
            "scenario: {deterministic: true}\n",
            "targets[0].host: lab host h1: a deterministic lab (scenario.deterministic) runs "
            "on this machine only",
        ),
    ],
)
def test_bad_hosts_are_one_line_each(tmp_path, body, want):
    lines = errors(tmp_path, "name: b\n" + body)
    assert len(lines) == 1 and want in lines[0], lines


def test_the_example_multihost_lab_validates():
    lab = load_lab(Path(__file__).resolve().parents[1] / "labs" / "multihost.yaml")
    assert sorted({t.host for t in lab.targets}) == ["lab1", "lab2", "lab3"]
    assert len(lab.targets) == 14
