"""Faults during `spdlab run`, each followed by a check that nothing is left behind.

- the metrics port taken and the Pushgateway gone after preflight: the run completes,
  both are reported;
- SIGTERM in up and in the drain: torn down exactly as after SIGINT;
- runs/ on a small loop-mounted filesystem that fills mid-run: result.json stays whole
  JSON, the error names the cause in one line, and teardown still happens;
- the qemu guest killed in the drain: that target is INFRA-ERROR, the run completes.

The run is held in a phase by SPDLAB_STOP_AT (tests/test_kill9.py), so each fault lands
where it is meant to however loaded the machine is.
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from leftovers import leftovers
from test_kill9 import TIMEOUT_S, Spdlab, down, run_until, state, stopped

from orchestrator.wait import until

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "tests" / "labs" / "faults" / "netns.yaml"

pytestmark = pytest.mark.netns


@pytest.fixture
def runs() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sft-", dir="/tmp"))
    yield d
    down(d, "--all")
    assert leftovers(d) == []
    shutil.rmtree(d, ignore_errors=True)


def result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


def finish(sp: Spdlab) -> tuple[int, str]:
    code = sp.proc.wait(timeout=TIMEOUT_S)
    return code, sp.output()


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_metrics_port_taken_and_pushgateway_down_the_run_completes(runs: Path) -> None:
    """Both are there at preflight, and gone once it passed: the run goes on."""
    gw = http.server.HTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=gw.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{gw.server_address[1]}"
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    sp = Spdlab(runs, "run", str(LAB), "--metrics-addr", f"127.0.0.1:{port}",
                "--pushgateway", url, env={"SPDLAB_STOP_AT": "preflight"})  # fmt: skip
    busy = socket.socket()
    try:
        until(lambda: stopped(sp.proc.pid) or sp.proc.poll() is not None, "spdlab held after "
              "preflight", timeout=TIMEOUT_S)  # fmt: skip
        assert sp.proc.poll() is None, sp.output()
        gw.shutdown()
        gw.server_close()  # nothing answers there now
        busy.bind(("127.0.0.1", port))
        busy.listen()
        sp.proc.send_signal(signal.SIGCONT)
        code, out = finish(sp)
    finally:
        busy.close()
        if sp.proc.poll() is None:
            sp.kill()
    assert "Traceback" not in out, out
    assert f"--metrics-addr 127.0.0.1:{port}: in use" in out, out
    assert "the run goes on without live metrics" in out, out
    assert f"pushgateway {url}" in out and "Connection refused" in out, out
    assert code == 3, out  # every target passed, but the summary was not pushed
    (rid,) = os.listdir(runs)
    res = result(runs / rid)
    assert res["complete"] and {t["verdict"] for t in res["targets"]} == {"PASS"}
    assert leftovers(runs) == []


@pytest.mark.parametrize("phase", ["up", "drain"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigterm_tears_down_like_sigint(runs: Path, phase: str, sig: int) -> None:
    sp, run = run_until(runs, "netns", phase)
    sp.proc.send_signal(sig)
    if stopped(sp.proc.pid):  # held by SPDLAB_STOP_AT: the signal waits for SIGCONT
        sp.proc.send_signal(signal.SIGCONT)
    code, out = finish(sp)
    assert code == 128 + sig, out
    assert "Traceback" not in out and "interrupted" in out, out
    assert leftovers(runs) == []
    assert state(run)["phase"] == "down"
    if phase == "drain":
        assert result(run)["complete"] is False


# ------------------------------------------------------------------ a full filesystem


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 96 MiB ext4 filesystem on a loop device (preflight wants 64 MiB free), mounted
    for the test's runs folder."""
    d = Path(tempfile.mkdtemp(prefix="sfs-", dir="/tmp"))
    img, mnt = d / "fs.img", d / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "96M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-F", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        down(mnt, "--all")
        subprocess.run(["umount", str(mnt)], check=True)
        shutil.rmtree(d, ignore_errors=True)


def fill(fs: Path) -> None:
    """Write until the filesystem has not a byte left: ENOSPC at every size down to 1."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size >= 1:
            try:
                os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                size //= 2
        os.fsync(fd)
    finally:
        os.close(fd)


def test_full_runs_filesystem_keeps_result_json_whole(small_fs: Path) -> None:
    sp, run = run_until(small_fs, "netns", "install")
    before = json.loads((run / "result.json").read_text())
    fill(small_fs)
    sp.proc.send_signal(signal.SIGCONT)
    code, out = finish(sp)
    assert code == 3, out
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("spdlab: cannot write ") and "No space left on device" in last, out
    # result.json is the last one written before the disk filled, whole: writes are atomic.
    assert json.loads((run / "result.json").read_text()) == before
    assert not list(run.rglob(".*.tmp")), "a partial temporary file was left"
    # Teardown ran, though state.json could not record it.
    assert leftovers(small_fs) == []


# ------------------------------------------------------------------ a guest killed


@pytest.mark.qemu
def test_qemu_guest_killed_mid_drain_is_an_infra_error(runs: Path) -> None:
    sp, run = run_until(runs, "qemu", "drain")
    qemu_pid = state(run)["targets"]["vm"]["qemu_pid"]
    os.kill(qemu_pid, signal.SIGKILL)  # the VM spdlab started, by its recorded PID
    sp.proc.send_signal(signal.SIGCONT)
    code, out = finish(sp)
    assert code == 3, out
    assert "Traceback" not in out, out
    res = result(run)
    (vm,) = res["targets"]
    assert vm["verdict"] == "INFRA-ERROR", vm
    assert leftovers(runs) == []
    assert state(run)["phase"] == "down"


# ------------------------------------------------------------------ dockerd restarted


class Dockerd:
    """A docker daemon of our own (its socket, data and exec roots, containerd namespace),
    so restarting it touches nobody else's containers."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sdk-", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        ns = f"spdlab-faults-{os.getpid()}"
        log = open(self.dir / "dockerd.log", "ab")  # noqa: SIM115 (the daemon's)
        self.proc = subprocess.Popen(
            ["dockerd", f"--host={self.host}", f"--data-root={self.dir / 'data'}",
             f"--exec-root={self.dir / 'exec'}", f"--pidfile={self.dir / 'docker.pid'}",
             f"--containerd-namespace={ns}", f"--containerd-plugins-namespace={ns}-p",
             "--iptables=false", "--ip-forward=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        until(self.answers, "our dockerd to answer", 180, alive=lambda: self.proc.poll() is None)

    def answers(self) -> bool:
        import docker

        try:
            docker.DockerClient(base_url=self.host, timeout=10).ping()
            return True
        except docker.errors.DockerException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # our daemon, by the PID we started
            self.proc.wait(timeout=120)
        self.proc = None

    def containers(self, runs: Path) -> list[str]:
        import docker

        from orchestrator.targets.dockerapi import RUN_LABEL

        c = docker.DockerClient(base_url=self.host, timeout=30)
        ids = set(os.listdir(runs))
        found = c.api.containers(all=True, filters={"label": RUN_LABEL})
        return [x["Names"][0] for x in found if x["Labels"].get(RUN_LABEL) in ids]


@pytest.fixture
def own_dockerd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dockerd]:
    d = Dockerd()
    d.start()
    monkeypatch.setenv("DOCKER_HOST", d.host)  # for spdlab, and the runs fixture's down
    try:
        yield d
    finally:
        d.stop()
        subprocess.run(["umount", "-R", str(d.dir / "exec")], capture_output=True)
        shutil.rmtree(d.dir, ignore_errors=True)


@pytest.mark.docker
@pytest.mark.timeout(1800)  # two dockerd starts and a run on a loaded machine
def test_dockerd_restarted_mid_run(own_dockerd: Dockerd, runs: Path) -> None:
    # own_dockerd first: `runs` is torn down (spdlab down --all) while our daemon answers.
    lab = ROOT / "tests" / "labs" / "faults" / "docker.yaml"
    sp = Spdlab(runs, "run", str(lab), "--metrics-addr", "",
                env={"SPDLAB_STOP_AT": "drained:start"})  # fmt: skip
    try:
        until(lambda: stopped(sp.proc.pid) or sp.proc.poll() is not None, "spdlab held at drain",
              timeout=TIMEOUT_S)  # fmt: skip
        assert sp.proc.poll() is None, sp.output()
        (rid,) = os.listdir(runs)
        assert own_dockerd.containers(runs), "the container target is not on our dockerd"
        own_dockerd.stop()
        own_dockerd.start()
        sp.proc.send_signal(signal.SIGCONT)
        code, out = finish(sp)
    except BaseException:
        sp.kill()
        raise
    assert "Traceback" not in out, out
    assert code == 3, out
    verdicts = {t["name"]: t["verdict"] for t in result(runs / rid)["targets"]}
    assert verdicts == {"ct": "INFRA-ERROR", "ns": "PASS"}, out
    assert leftovers(runs) == [] and own_dockerd.containers(runs) == []
