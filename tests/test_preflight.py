"""A missing or busy environment: every verb says so in one line, with its exit code.

The sweep of issue "every verb meets a missing or busy environment": dockerd stopped
(DOCKER_HOST at a socket no daemon serves: the machine's own dockerd is left alone),
qemu missing from PATH, a read-only runs folder, a lab already up, a run id that does
not exist, a busy --metrics-addr, a Pushgateway that does not answer, and a control
socket left by a netkeyd that died. Each verb runs as its own process, as a user
runs it; a traceback anywhere fails the test. A precondition that fails creates
nothing: no namespace, link, container or process (tests/leftovers.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_docker
from leftovers import leftovers, short_runs

from orchestrator.runs import RunDir
from orchestrator.wait import until

ROOT = Path(__file__).resolve().parents[1]
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
VENV_BIN = str(Path(sys.executable).parent)
NETNS_LAB = """\
name: preflight-netns
range: 10.96.0.0/24
defaults: {kind: netns, tick_ms: 50, flow_idle_ticks: 100}
targets:
  - {name: gw, build: netkey}
scenario: {policies: 10, traffic: none, delete: flush}
"""
DOCKER_LAB = NETNS_LAB.replace("netns", "docker")
QEMU_LAB = """\
name: preflight-qemu
range: 10.96.1.0/24
defaults: {kind: qemu, build: linux-af_key, tick_ms: 1000}
targets:
  - name: vm
scenario: {policies: 10, traffic: none, delete: flush, algorithm: aes-cbc-hmac-sha256}
"""
BISECT_LAB = NETNS_LAB.replace("build: netkey", "build: canary").replace(
    "delete: flush}", "delete: flush, deterministic: true}"
)  # K=1 decides: exact comparisons
SSH_LAB = """\
name: preflight-ssh
range: 10.96.2.0/24
defaults:
  kind: ssh
  ssh: {{address: 127.0.0.1, user: root, key: {key}, known_hosts: {known_hosts}}}
targets:
  - {{name: board, build: netkey}}
scenario: {{policies: 10, traffic: none, delete: flush}}
"""
SA_CONF = (
    "add 10.96.0.2 10.96.0.10 esp 0x100 -E aes-gcm-16 "
    "0x0102030405060708090a0b0c0d0e0f1011121314;\n"
    "spdadd 10.96.0.2/32 10.96.0.10/32 any -P in ipsec esp/tunnel/10.96.0.2-10.96.0.10/require;\n"
)

pytestmark = pytest.mark.netns
dockerd = test_docker.dockerd  # the session's daemon: the one that answers, else one of ours


def env_of(runs: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """A verb's environment: this one, on `runs`, with the venv's tools first."""
    base = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return {**base, **(env or {})}


def spdlab(runs: Path, *args: str, env: dict[str, str] | None = None,
           prefix: tuple[str, ...] = ()) -> tuple[int, str, str]:  # fmt: skip
    """One verb in its own process: exit status, stdout, stderr (never a traceback)."""
    p = subprocess.run([*prefix, *SPDLAB, *args], cwd=ROOT, env=env_of(runs, env),
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    return p.returncode, p.stdout, p.stderr


def lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def listening() -> tuple[socket.socket, str]:
    """A port someone else holds: bound and listening on loopback."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, f"127.0.0.1:{s.getsockname()[1]}"


def healthy(runs: Path, rid: str) -> tuple[int, list[bool]]:
    """`status RID`'s exit code, and whether each target is healthy."""
    code, out, _ = spdlab(runs, "status", rid, "--json")
    return code, [t["healthy"] for t in json.loads(out)["targets"]]


def read_only(runs: Path) -> tuple[str, ...]:
    """A prefix that runs a verb with `runs` mounted read-only, in a mount namespace of its own."""
    return ("unshare", "-m", "sh", "-c",
            f'mount --bind "{runs}" "{runs}" && mount -o remount,bind,ro "{runs}" && exec "$@"',
            "ro")  # fmt: skip


def read_only_line(runs: Path) -> str:
    """What a verb that would write says of a read-only runs folder."""
    return (f"spdlab: runs folder {runs} is on a read-only file system; fix: make {runs} "
            "writable, or point SPDLAB_RUNS_DIR at a writable folder")  # fmt: skip


@contextlib.contextmanager
def serving(runs: Path, *args: str, env: dict[str, str] | None = None,
            prefix: tuple[str, ...] = ()) -> Iterator[Callable[[], str]]:  # fmt: skip
    """`spdlab serve ARGS` on any free port until the block ends (SIGTERM, then exit 0):
    yields a function that scrapes it."""
    fd, log = tempfile.mkstemp(prefix="spdlab-pf-serve-")
    argv = [*prefix, *SPDLAB, "serve", *args, "--metrics-addr", "127.0.0.1:0"]
    p = subprocess.Popen(argv, cwd=ROOT, env=env_of(runs, env), stdout=fd, stderr=fd)
    os.close(fd)

    def url() -> str | None:
        said = Path(log).read_text().split()
        return said[said.index("serving") + 1] if "serving" in said else None

    def scrape() -> str:
        import urllib.request

        with urllib.request.urlopen(url(), timeout=30) as r:
            return r.read().decode()

    try:
        until(url, "spdlab serve to listen", 120, alive=lambda: p.poll() is None)
        yield scrape
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        said = Path(log).read_text()
        os.unlink(log)
    assert p.returncode == 0 and "Traceback" not in said, said


def target_up(exposition: str) -> dict[str, float]:
    """spdlab_target_up per target, from a scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    (fam,) = [f for f in text_string_to_metric_families(exposition) if f.name == "spdlab_target_up"]
    return {s.labels["target"]: s.value for s in fam.samples}


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


@pytest.fixture
def runs() -> Iterator[Path]:
    yield from short_runs("spdlab-pf-")


@pytest.fixture
def labs(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for kind, text in (("netns", NETNS_LAB), ("docker", DOCKER_LAB), ("qemu", QEMU_LAB)):
        out[kind] = tmp_path / f"{kind}.yaml"
        out[kind].write_text(text)
    return out


def started_and_down(runs: Path, line: str) -> dict:
    """The one run `spdlab run` left for a failed precondition: result.json says why, every
    target INFRA-ERROR in preflight, and state.json says it is down with nothing to remove."""
    (run,) = run_dirs(runs)
    res = json.loads((run / "result.json").read_text())
    assert res["error"] == f"preflight: {line}" and not res["complete"]
    assert {(t["verdict"], t["infra"]["phase"]) for t in res["targets"]} == {
        ("INFRA-ERROR", "preflight")
    }
    state = json.loads((run / "state.json").read_text())
    assert state["phase"] == "down" and state["resources"] == []
    return res


# ------------------------------------------------------------------ dockerd stopped


@pytest.fixture(params=["no socket", "a socket no daemon serves"])
def no_dockerd(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], str]:
    """DOCKER_HOST at a socket with no daemon behind it, and what connecting says."""
    sock = tmp_path / "docker.sock"
    if request.param == "a socket no daemon serves":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(sock))
        s.close()  # the file stays; nothing listens
        why = "Connection refused"
    else:
        why = "No such file or directory"
    host = f"unix://{sock}"
    line = f"dockerd not reachable at {host} ({why})"
    fix = f"start a dockerd listening there (dockerd -H {host}), or unset DOCKER_HOST"
    return {"DOCKER_HOST": host}, f"{line}; fix: {fix}"


def test_dockerd_stopped_every_verb_one_line(runs, labs, no_dockerd) -> None:
    env, line = no_dockerd
    code, _, err = spdlab(runs, "validate", "--preflight", str(labs["docker"]), "--metrics-addr",
                          "", env=env)  # fmt: skip
    assert (code, lines(err)) == (3, [f"spdlab: {line}"])
    code, _, err = spdlab(runs, "up", str(labs["docker"]), env=env)
    assert (code, lines(err)) == (3, [f"spdlab: {line}"])
    assert run_dirs(runs) == [] and leftovers(runs) == []  # up created nothing
    code, _, err = spdlab(runs, "run", str(labs["docker"]), "--metrics-addr", "", env=env)
    assert (code, lines(err)) == (3, [f"spdlab: {line}"])
    started_and_down(runs, line.split("; fix: ")[0])
    assert leftovers(runs) == []
    # status and down read the record: nothing asks the missing dockerd
    code, out, _ = spdlab(runs, "status", env=env)
    assert code == 1 and "is down since" in out and out.rstrip().endswith("no lab is up")
    code, out, _ = spdlab(runs, "down", env=env)
    assert code == 0 and "already down since" in out
    code, out, _ = spdlab(runs, "status", "--all", "--json", env=env)
    (row,) = json.loads(out)["runs"]
    assert (code, row["phase"], row["lab"]) == (0, "down", "preflight-docker")
    assert row["note"].startswith("preflight: dockerd not reachable")


# ------------------------------------------------------------------ qemu missing from PATH


@pytest.fixture
def path_without_qemu(tmp_path: Path) -> str:
    """PATH as it is, through one folder of links that leaves out every qemu-system-*."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for d in [VENV_BIN, *os.environ["PATH"].split(os.pathsep)]:
        for f in Path(d).iterdir() if Path(d).is_dir() else ():
            if not f.name.startswith("qemu-system-") and not (farm / f.name).exists():
                (farm / f.name).symlink_to(f)
    return str(farm)


@pytest.mark.qemu
def test_qemu_missing_from_path_one_line(runs, labs, path_without_qemu) -> None:
    env = {"PATH": path_without_qemu}
    line = "qemu-system-x86_64 not found on PATH; fix: apt-get install qemu-system-x86"
    for verb in (["validate", "--preflight", "--metrics-addr", ""], ["up"],
                 ["run", "--metrics-addr", ""]):  # fmt: skip
        code, _, err = spdlab(runs, *verb[:1], str(labs["qemu"]), *verb[1:], env=env)
        assert (code, lines(err)) == (3, [f"spdlab: {line}"]), verb
    started_and_down(runs, line.split("; fix: ")[0])
    assert leftovers(runs) == []


# ------------------------------------------------------------------ root's capabilities


def test_without_root_capabilities_one_line(runs, labs) -> None:
    """Root without CAP_NET_ADMIN and CAP_SYS_ADMIN (dropped from the bounding set)."""
    drop = ("setpriv", "--bounding-set=-net_admin,-sys_admin", "--")
    line = ("spdlab: network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN; "
            "fix: run spdlab as root (sudo spdlab …)")  # fmt: skip
    for verb in (["validate", "--preflight", str(labs["netns"]), "--metrics-addr", ""],
                 ["up", str(labs["netns"])]):  # fmt: skip
        code, _, err = spdlab(runs, *verb, prefix=drop)
        assert (code, lines(err)) == (3, [line]), verb
    assert run_dirs(runs) == [] and leftovers(runs) == []


# ------------------------------------------------------------------ runs/ read-only


def test_runs_read_only_one_line(runs, labs) -> None:
    """runs/ mounted read-only (in a mount namespace of its own): the verbs that write say
    so; those that read a recorded run still work."""
    busy, addr = listening()
    # A recorded run first: `spdlab run` that stopped at a busy metrics port.
    code, _, _ = spdlab(runs, "run", str(labs["netns"]), "--metrics-addr", addr)
    busy.close()
    assert code == 3
    (run,) = run_dirs(runs)
    ro = read_only(runs)
    line = read_only_line(runs)
    for verb in (["validate", "--preflight", str(labs["netns"]), "--metrics-addr", ""],
                 ["up", str(labs["netns"])], ["run", str(labs["netns"]), "--metrics-addr", ""],
                 ["matrix", "--builds", "netkey", "--policies", "10"]):  # fmt: skip
        code, _, err = spdlab(runs, *verb, prefix=ro)
        assert (code, lines(err)) == (3, [line]), verb
    code, _, err = spdlab(runs, "report", run.name, "--html", prefix=ro)
    assert (code, lines(err)) == (
        3,
        [f"spdlab: cannot write {run}/report.html: Read-only file system"],
    )
    code, _, err = spdlab(runs, "compare", run.name, prefix=ro)
    assert (code, lines(err)) == (
        3,
        [f"spdlab: cannot write {run}/compare.png: Read-only file system"],
    )
    code, out, _ = spdlab(runs, "status", run.name, prefix=ro)
    assert code == 1 and "no lab is up" in out
    code, out, _ = spdlab(runs, "down", "--all", prefix=ro)
    assert code == 0 and out.strip() == "no run to take down: every recorded run is down"
    assert run_dirs(runs) == [run] and leftovers(runs) == []


# ------------------------------------------------------------------ a run id that does not exist


@pytest.mark.parametrize("verb", [
    ["status", "X"], ["down", "X"], ["report", "X", "--html"], ["compare", "X"],
    ["serve", "X"], ["setkey", "--target", "gw", "--run", "X", "-DP"],
])  # fmt: skip
def test_a_run_id_that_does_not_exist(runs, labs, verb) -> None:
    spdlab(runs, "run", str(labs["docker"]), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    code, _, err = spdlab(runs, *verb)
    assert (code, lines(err)) == (2, [f"spdlab: no such run 'X' under {runs}"])


def test_run_baseline_that_does_not_exist(runs, labs) -> None:
    """`run --baseline X` (and `compare --baseline X`) without such a run: one line naming
    the flag, exit 2, and no run folder made (the baseline is read before anything)."""
    args = ("run", str(labs["netns"]), "--metrics-addr", "", "--baseline", "X")
    code, _, err = spdlab(runs, *args)
    assert (code, lines(err)) == (2, [f"spdlab: --baseline: no runs recorded under {runs}"])
    spdlab(runs, "run", str(labs["docker"]), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    made = run_dirs(runs)
    code, _, err = spdlab(runs, *args)
    assert (code, lines(err)) == (2, [f"spdlab: --baseline: no such run 'X' under {runs}"])
    assert run_dirs(runs) == made and len(made) == 1 and leftovers(runs) == []
    (rid,) = made
    code, _, err = spdlab(runs, "compare", rid, "--baseline", "X")
    assert (code, lines(err)) == (2, [f"spdlab: --baseline: no such run 'X' under {runs}"])


# ------------------------------------------------------------------ --metrics-addr busy


def test_metrics_addr_busy_before_anything_is_created(runs, labs) -> None:
    busy, addr = listening()
    fix = "give a free one (--metrics-addr 127.0.0.1:0 picks any), or --metrics-addr '' for none"
    line = f"--metrics-addr {addr}: in use"
    try:
        code, _, err = spdlab(runs, "validate", "--preflight", str(labs["netns"]),
                              "--metrics-addr", addr)  # fmt: skip
        assert (code, lines(err)) == (3, [f"spdlab: {line}; fix: {fix}"])
        code, _, err = spdlab(runs, "run", str(labs["netns"]), "--metrics-addr", addr)
        assert (code, lines(err)) == (3, [f"spdlab: {line}; fix: {fix}"])
        started_and_down(runs, line)
        assert leftovers(runs) == []  # the lab was never brought up
        (run,) = run_dirs(runs)
        code, _, err = spdlab(runs, "serve", run.name, "--metrics-addr", addr)
        assert (code, lines(err)) == (3, [f"spdlab: {line}; fix: {fix}"])
        code, _, err = spdlab(runs, "monitor", "--listen", addr)
        fix = "give a free one, e.g. --listen 127.0.0.1:9091"
        assert (code, lines(err)) == (3, [f"spdlab: --listen {addr}: in use; fix: {fix}"])
    finally:
        busy.close()


# ------------------------------------------------------------------ the Pushgateway unreachable


def test_pushgateway_unreachable(runs, labs) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    line = f"--pushgateway {url} does not answer: Connection refused"
    fix = "start the Pushgateway there, or drop --pushgateway"
    try:
        code, _, err = spdlab(runs, "validate", "--preflight", str(labs["netns"]),
                              "--metrics-addr", "", "--pushgateway", url)  # fmt: skip
        assert (code, lines(err)) == (3, [f"spdlab: {line}; fix: {fix}"])
        code, _, err = spdlab(runs, "run", str(labs["netns"]), "--metrics-addr", "",
                              "--pushgateway", url)  # fmt: skip
        assert (code, lines(err)) == (3, [f"spdlab: {line}; fix: {fix}"])
        started_and_down(runs, line)
        (run,) = run_dirs(runs)
        code, _, err = spdlab(runs, "serve", run.name, "--metrics-addr", "127.0.0.1:0",
                              "--pushgateway", url)  # fmt: skip
        assert (code, lines(err)) == (3, [f"spdlab: {line}; fix: {fix}"])
    finally:
        closed.close()
    assert leftovers(runs) == []


class Pushgateway:
    """Debian's Pushgateway on a port of its own, started and stopped by PID."""

    BIN = ROOT / ".cache" / "pushgateway" / "usr" / "bin" / "prometheus-pushgateway"

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"
        argv = [str(self.BIN), f"--web.listen-address=127.0.0.1:{port}"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(self.answers, "the Pushgateway to answer", 60, alive=lambda: self.proc.poll() is None)

    def answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/-/healthy", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.mark.prometheus
def test_pushgateway_gone_before_down(runs, labs) -> None:
    """A kept run's group stays on a Pushgateway that went away: `down` says so in one line,
    exits 3, and removes it once the Pushgateway answers again."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    gw = Pushgateway(port)
    try:
        code, _, err = spdlab(runs, "run", str(labs["netns"]), "--metrics-addr", "",
                              "--pushgateway", gw.url, "--keep")  # fmt: skip
        assert code == 0, err
    finally:
        gw.stop()
    (run,) = run_dirs(runs)
    rid = run.name
    code, out, err = spdlab(runs, "down", rid)
    why = f"--pushgateway {gw.url}: Connection refused: the group run={rid} stays; " \
          f"spdlab down {rid} again once it answers"  # fmt: skip
    assert (code, out.strip(), lines(err)) == (3, f"{rid}: down, 1 left over", [f"  {why}"])
    code, out, _ = spdlab(runs, "status", rid)
    assert code == 1 and out.rstrip().endswith(f"1 left over: spdlab down {rid}")
    gw = Pushgateway(port)
    try:
        code, out, err = spdlab(runs, "down", rid)
        assert (code, out.strip()) == (0, f"{rid}: down"), err
    finally:
        gw.stop()
    assert leftovers(runs) == []


# ------------------------------------------------------------------ a lab already up


@pytest.fixture(scope="module")
def up_runs() -> Iterator[Path]:
    yield from short_runs("spdlab-pfup-")


@pytest.fixture(scope="module")
def lab_up(up_runs: Path) -> Iterator[tuple[Path, str]]:
    """The netns lab brought up with `spdlab up`, as a user does."""
    lab = Path(tempfile.mkdtemp(prefix="spdlab-pf-lab-")) / "netns.yaml"
    lab.write_text(NETNS_LAB)
    code, out, err = spdlab(up_runs, "up", str(lab))
    assert code == 0, err
    yield lab, out.strip()


def test_a_lab_already_up(up_runs, lab_up) -> None:
    """Its namespaces are its own: a second `up` of the same lab is a second run; status
    and down then speak of each run as state.json records it."""
    lab, first = lab_up
    code, out, err = spdlab(up_runs, "up", str(lab))
    second = out.strip()
    assert code == 0 and second != first, err
    code, out, _ = spdlab(up_runs, "status", "--all", "--json")
    assert {(r["run_id"], r["phase"]) for r in json.loads(out)["runs"]} == {
        (first, "up"), (second, "up")}  # fmt: skip
    code, out, _ = spdlab(up_runs, "down", second)
    assert (code, out.strip()) == (0, f"{second}: down")
    code, out, _ = spdlab(up_runs, "down", second)
    assert code == 0 and out.startswith(f"{second}: already down since ")
    code, out, _ = spdlab(up_runs, "status", second)
    assert code == 1
    assert out.startswith(f"run {second} (lab preflight-netns) is down since ")
    assert out.rstrip().endswith(": no lab is up")
    code, _, err = spdlab(up_runs, "setkey", "--target", "gw", "-DP")  # the latest run: down
    assert (code, len(lines(err))) == (3, 1) and err.startswith(f"spdlab: run {second} ")
    assert err.rstrip().endswith(": no lab is up")
    code, out, _ = spdlab(up_runs, "status", first, "--json")
    (t,) = json.loads(out)["targets"]
    assert (code, t["name"], t["healthy"]) == (0, "gw", True)


def test_validate_preflight_says_the_lab_is_up(up_runs, lab_up) -> None:
    """The names a run makes derive from its own id, so a lab that is up takes nothing a
    new run needs: validate --preflight passes, and says which run of the lab is up."""
    lab, first = lab_up
    code, out, err = spdlab(up_runs, "validate", "--preflight", str(lab), "--metrics-addr", "")
    assert (code, err) == (0, "")
    assert lines(out)[-1] == (f"{lab}: preflight: run {first} of this lab is up; a run now is "
                              "another, with its own namespaces and switch")  # fmt: skip


def test_run_and_matrix_with_a_lab_already_up(up_runs, lab_up) -> None:
    """A run of the same lab, and the matrix, beside the lab that is up: each its own run,
    PASS, exit 0, taken down after; the lab that was up still is."""
    lab, first = lab_up
    code, out, err = spdlab(up_runs, "run", str(lab), "--metrics-addr", "", "--json")
    assert (code, [t["verdict"] for t in json.loads(out)["targets"]]) == (0, ["PASS"]), err
    code, out, err = spdlab(up_runs, "matrix", "--builds", "netkey", "--policies", "10",
                            "--mode", "flush", "--json")  # fmt: skip
    (mx,) = json.loads(out)["runs"]
    assert (code, [t["verdict"] for t in mx["targets"]]) == (0, ["PASS"]), err
    code, out, _ = spdlab(up_runs, "status", "--all", "--json")
    phases = {r["run_id"]: r["phase"] for r in json.loads(out)["runs"]}
    assert phases[first] == "up" and list(phases.values()).count("up") == 1
    assert healthy(up_runs, first) == (0, [True])


def test_bisect_with_a_lab_already_up(up_runs, lab_up, tmp_path) -> None:
    """bisect of canary's one-patch series beside the lab that is up: deterministic, so
    K=1 decides; it names the patch (exit 0) and leaves the other run up."""
    _, first = lab_up
    lab = tmp_path / "bisect.yaml"
    lab.write_text(BISECT_LAB)
    code, out, err = spdlab(up_runs, "bisect", str(lab), "--build", "canary", "--json")
    doc = json.loads(out)
    assert (code, doc["steps"][doc["first"]]["patch"]) == (0, "canary-earlyexit"), err
    assert healthy(up_runs, first) == (0, [True])


def test_an_address_range_an_up_run_holds(up_runs, lab_up, tmp_path) -> None:
    """The bridge and the address range cannot clash with another run's: a run's
    addresses live only in its own namespaces (switch, traffic host, gateways), none in
    this one, and its names derive from its run id. Another lab on the same range comes
    up beside the lab that is up, both healthy, and this namespace holds neither's."""
    _, first = lab_up
    other = tmp_path / "other.yaml"
    other.write_text(NETNS_LAB.replace("preflight-netns", "preflight-other"))
    code, out, err = spdlab(up_runs, "up", str(other))
    second = out.strip()
    assert code == 0, err
    try:
        assert healthy(up_runs, first) == healthy(up_runs, second) == (0, [True])
        here = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        assert " 10.96.0." not in here
    finally:
        code, out, _ = spdlab(up_runs, "down", second)
    assert (code, out.strip()) == (0, f"{second}: down")


def test_down_of_an_up_run_on_a_read_only_runs_folder(up_runs, lab_up) -> None:
    """down records what it removed in state.json: on a read-only runs folder it says so
    in one line and removes nothing, so the record still tells the truth (the lab is up)."""
    _, first = lab_up
    line = read_only_line(up_runs)
    for verb in (["down", first], ["down", "--all"]):
        code, out, err = spdlab(up_runs, *verb, prefix=read_only(up_runs))
        assert (code, out, lines(err)) == (3, "", [line]), verb
    assert healthy(up_runs, first) == (0, [True])


def test_setkey_and_serve_on_a_read_only_runs_folder(up_runs, lab_up) -> None:
    """setkey --target only reads runs/ (state.json, then the target's socket): it works.
    serve writes Prometheus's target list there: one line says so and how to do without."""
    _, first = lab_up
    code, out, err = spdlab(up_runs, "setkey", "--target", "gw", "--run", first, "-DP",
                            prefix=read_only(up_runs))  # fmt: skip
    assert (code, out.strip()) == (0, "No SPD entries."), err
    code, _, err = spdlab(up_runs, "serve", first, "--metrics-addr", "127.0.0.1:0",
                          prefix=read_only(up_runs))  # fmt: skip
    own = up_runs / first / "prometheus-targets.json"
    assert (code, lines(err)) == (
        3, [f"spdlab: cannot write {own}: Read-only file system; fix: --no-file-sd serves "
            "without it"]), err  # fmt: skip
    with serving(up_runs, first, "--no-file-sd", prefix=read_only(up_runs)) as metrics:
        assert target_up(metrics()) == {"gw": 1.0}


# ------------------------------------------------------------------ a control socket, daemon dead


def test_a_control_socket_whose_daemon_is_dead(up_runs, lab_up, tmp_path) -> None:
    """netkeyd killed with SIGKILL leaves its sockets: each verb that uses them says so."""
    _, rid = lab_up
    state = json.loads((up_runs / rid / "state.json").read_text())
    pid = state["targets"]["gw"]["pid"]
    control = up_runs / rid / "targets" / "gw" / "control.sock"
    admin = control.with_name("admin.sock")
    os.kill(pid, signal.SIGKILL)
    until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), "netkeyd to die", 30)
    assert control.is_socket() and admin.is_socket()
    gone = "nothing listens there (its daemon is gone, the socket file was left)"
    for verb in (["setkey", "-s", str(control), "-DP"],
                 ["setkey", "--target", "gw", "--run", rid, "-FP"]):  # fmt: skip
        code, _, err = spdlab(up_runs, *verb)
        assert (code, lines(err)) == (3, [f"spdlab: pfkey connect: {control}: {gone}"]), verb
    sa = tmp_path / "sa.conf"
    sa.write_text(SA_CONF)
    code, _, err = spdlab(up_runs, "traffic", "--setkey", str(sa), "--control", str(control),
                          "--install", "--rate", "1", "--count", "1")  # fmt: skip
    assert (code, lines(err)) == (3, [f"spdlab: pfkey connect: {control}: {gone}"])
    code, _, err = spdlab(up_runs, "traffic", "--setkey", str(sa), "--admin", str(admin),
                          "--rate", "1", "--count", "1")  # fmt: skip
    assert (code, lines(err)) == (3, [f"spdlab: admin: {admin}: {gone}"])
    with serving(up_runs, rid) as metrics:  # each scrape finds nothing there, says so: up 0
        assert target_up(metrics()) == {"gw": 0.0}
    code, out, _ = spdlab(up_runs, "status", rid, "--json")
    (t,) = json.loads(out)["targets"]
    assert (code, t["healthy"], t["reason"]) == (1, False, f"netkeyd (pid {pid}) is not running")
    code, out, err = spdlab(up_runs, "down", rid)
    assert (code, out.strip()) == (0, f"{rid}: down"), err


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


# ------------------------------------------------------------------ the bridge's names free


def test_names_a_namespace_holds_are_not_free() -> None:
    """A switch namespace left with a run's names (its folder removed): LabRun.up never
    picks a run id whose short id gives those names (RunDir.create(free=names_free))."""
    from orchestrator.runs import run_short
    from orchestrator.targets.labnet import names_free

    taken = run_short(f"left-{os.getpid()}")
    ns = f"spdlab-{taken}-sw"
    assert names_free(taken)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        assert not names_free(taken)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert names_free(taken)


# ------------------------------------------------------------------ matrix's exit code


def test_matrix_exits_as_run_does(runs) -> None:
    """matrix's exit code is run's (cli.run.exit_code): a target INFRA-ERROR gives 3. Its
    netkeyd is killed while spdlab is held after up (SPDLAB_STOP_AT=up)."""
    argv = [*SPDLAB, "matrix", "--builds", "netkey", "--policies", "10", "--mode", "flush",
            "--json"]  # fmt: skip
    p = subprocess.Popen(argv, cwd=ROOT, env=env_of(runs, {"SPDLAB_STOP_AT": "up"}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        until(lambda: _stopped(p.pid), "spdlab matrix to stop after up", 600,
              alive=lambda: p.poll() is None)  # fmt: skip
        (run,) = run_dirs(runs)
        (target,) = json.loads((run / "state.json").read_text())["targets"].values()
        os.kill(target["pid"], signal.SIGKILL)
        until(lambda: _zombie(target["pid"]), "netkeyd to die", 30)
    finally:
        os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=600)
    assert "Traceback" not in out + err, err
    (mx,) = json.loads(out)["runs"]
    assert (p.returncode, [t["verdict"] for t in mx["targets"]]) == (3, ["INFRA-ERROR"])
    assert leftovers(runs) == []


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("T")
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------ bisect


def test_bisect_meets_the_machine_in_one_line(runs, tmp_path, path_without_qemu) -> None:
    """bisect runs the same preflight as run: dockerd stopped (a docker lab), qemu missing
    from PATH (a kernel lab), a read-only runs folder; one line each, exit 3."""
    docker_lab, qemu_lab = tmp_path / "docker.yaml", tmp_path / "qemu.yaml"
    docker_lab.write_text(BISECT_LAB.replace("netns", "docker"))
    qemu_lab.write_text(QEMU_LAB.replace("build: linux-af_key", "build: linux-canary"))
    host = f"unix://{tmp_path}/docker.sock"
    dockerd = f"dockerd not reachable at {host} (No such file or directory); fix: start a " \
              f"dockerd listening there (dockerd -H {host}), or unset DOCKER_HOST"  # fmt: skip
    code, _, err = spdlab(runs, "bisect", str(docker_lab), "--build", "canary",
                          env={"DOCKER_HOST": host})  # fmt: skip
    assert (code, lines(err)) == (3, [f"spdlab: {dockerd}"])
    code, _, err = spdlab(runs, "bisect", str(qemu_lab), "--build", "linux-canary",
                          env={"PATH": path_without_qemu})  # fmt: skip
    assert (code, lines(err)) == (
        3,
        ["spdlab: qemu-system-x86_64 not found on PATH; fix: apt-get install qemu-system-x86"],
    )
    made = run_dirs(runs)  # each left a result.json saying why, and nothing else
    lab = tmp_path / "netns.yaml"
    lab.write_text(BISECT_LAB)
    code, _, err = spdlab(runs, "bisect", str(lab), "--build", "canary", prefix=read_only(runs))
    line = read_only_line(runs)
    assert (code, lines(err)) == (3, [line])
    assert run_dirs(runs) == made and len(made) == 2 and leftovers(runs) == []


# ------------------------------------------------------------------ low disk, kernel, ssh


def test_low_disk_space_for_runs(labs) -> None:
    """runs/ on a 16 MiB tmpfs (mounted in a mount namespace of its own, gone with it)."""
    d = Path(tempfile.mkdtemp(prefix="spdlab-pf-small-", dir="/tmp"))
    small = ("unshare", "-m", "sh", "-c",
             f'mount -t tmpfs -o size=16m tmpfs "{d}" && exec "$@"', "small")  # fmt: skip
    line = f"spdlab: runs folder {d} has 16 MiB free, a run needs 64 MiB; fix: free space " \
           "there, or point SPDLAB_RUNS_DIR elsewhere"  # fmt: skip
    try:
        for verb in (["validate", "--preflight", str(labs["netns"]), "--metrics-addr", ""],
                     ["up", str(labs["netns"])], ["run", str(labs["netns"]), "--metrics-addr", ""],
                     ["matrix", "--builds", "netkey", "--policies", "10"]):  # fmt: skip
            code, _, err = spdlab(d, *verb, prefix=small)
            assert (code, lines(err)) == (3, [line]), verb
        assert leftovers(d) == []
    finally:
        d.rmdir()  # the tmpfs went with its namespace: what it held, too


@pytest.mark.qemu
def test_a_kernel_build_without_its_source(runs, labs, tmp_path) -> None:
    """A kernel build's source is Debian's linux-source tarball in /usr/src (read by
    kernel.cache.tarball): an empty folder mounted there, in a mount namespace of its own."""
    empty = tmp_path / "src"
    empty.mkdir()
    no_src = ("unshare", "-m", "sh", "-c", f'mount --bind "{empty}" /usr/src && exec "$@"',
              "nosrc")  # fmt: skip
    lab = tmp_path / "kernel.yaml"
    lab.write_text(QEMU_LAB.replace("build: linux-af_key", "build: linux"))
    line = "spdlab: kernel linux (x86_64): the source /usr/src/linux-source-6.1.tar.xz does " \
           "not exist; fix: scripts/deps.sh kernel"  # fmt: skip
    for verb in (["validate", "--preflight", str(lab), "--metrics-addr", ""], ["up", str(lab)]):
        code, _, err = spdlab(runs, *verb, prefix=no_src)
        assert (code, lines(err)) == (3, [line]), verb
    assert run_dirs(runs) == [] and leftovers(runs) == []


def test_ssh_board_without_its_key_or_known_hosts(runs, tmp_path) -> None:
    """kind ssh: each board's key file and known_hosts are checked before anything."""
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    lab = tmp_path / "ssh.yaml"
    lab.write_text(SSH_LAB.format(key=key, known_hosts=known))
    want = [f"spdlab: board: known_hosts {known} does not exist; fix: add the board's host key "
            "there (ssh-keyscan, then check it)",
            f"spdlab: board: SSH key {key} does not exist; fix: ssh-keygen -t ed25519 -f KEY, "
            "then put KEY.pub on the board"]  # fmt: skip
    for verb in (["validate", "--preflight", str(lab), "--metrics-addr", ""], ["up", str(lab)]):
        code, _, err = spdlab(runs, *verb)
        assert (code, lines(err)) == (3, want), verb
    key.write_text("")
    code, _, err = spdlab(runs, "validate", "--preflight", str(lab), "--metrics-addr", "")
    assert (code, lines(err)) == (3, want[:1])
    assert run_dirs(runs) == [] and leftovers(runs) == []


# ------------------------------------------------------------------ a docker run up, dockerd gone


@pytest.fixture(scope="module")
def docker_runs() -> Iterator[Path]:
    yield from short_runs("spdlab-pfdk-")


@pytest.fixture(scope="module")
def docker_up(docker_runs: Path, dockerd: object) -> Iterator[str]:
    """The docker lab brought up with `spdlab up` against the session's dockerd."""
    lab = Path(tempfile.mkdtemp(prefix="spdlab-pf-lab-")) / "docker.yaml"
    lab.write_text(DOCKER_LAB)
    code, out, err = spdlab(docker_runs, "up", str(lab))
    assert code == 0, err
    yield out.strip()


@pytest.mark.docker
def test_an_up_docker_run_when_dockerd_is_stopped(docker_runs, docker_up, no_dockerd,
                                                  tmp_path) -> None:  # fmt: skip
    """DOCKER_HOST at no daemon while a docker run is up: status asks dockerd of each
    container and says, in one line, that it cannot (exit 1); setkey, traffic and serve
    speak to netkeyd's sockets in the run folder and never ask dockerd."""
    env, line = no_dockerd
    rid = docker_up
    code, out, _ = spdlab(docker_runs, "status", rid, "--json", env=env)
    (t,) = json.loads(out)["targets"]
    assert (code, t["healthy"], t["reason"]) == (1, False, f"status: {line.split('; fix: ')[0]}")
    code, out, err = spdlab(docker_runs, "setkey", "--target", "gw", "--run", rid, "-DP", env=env)
    assert (code, out.strip()) == (0, "No SPD entries."), err
    gw = docker_runs / rid / "targets" / "gw"
    sa = tmp_path / "sa.conf"
    sa.write_text(SA_CONF)
    th = f"spdlab-{RunDir(rid, docker_runs).short}-th"  # the lab's traffic host
    code, out, err = spdlab(docker_runs, "traffic", "--setkey", str(sa), "--install",
                            "--control", str(gw / "control.sock"), "--netns", th, "--rate",
                            "100", "--count", "1", "--json", env=env)  # fmt: skip
    sent = json.loads(out)["sender"]
    assert (code, sent["sent"], sent["errors"]) == (0, 1, 0), err
    with serving(docker_runs, rid, env=env) as metrics:
        assert target_up(metrics()) == {"gw": 1.0}
    for flush in ("-F", "-FP"):  # as up left it, for the next DOCKER_HOST
        code, out, err = spdlab(docker_runs, "setkey", "--target", "gw", "--run", rid, flush,
                                env=env)  # fmt: skip
        assert code == 0, err
