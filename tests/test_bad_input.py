"""Files a user gets wrong: one `file:line:col` line and exit 2, never a traceback.

Lab files through `spdlab validate` and `spdlab run`, setkey scripts through `spdlab setkey
-f` (with --check, and against a socket: the file is read before anything is sent) and
`spdlab traffic --setkey`. Commands run through the CLI's main(); an unreadable file needs
a process of its own, without root's override of file modes.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.lab.load import MAX_BYTES
from orchestrator.pfkey.setkey import MAX_SCRIPT_BYTES

ROOT = Path(__file__).resolve().parents[1]
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]
# Without these, root reads a file of mode 000 like any other.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
LAB = b"name: x\nrange: 10.0.0.0/24\ntargets:\n  - name: gw\n"
BOMB = b"a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + b"".join(
    b"%c: &%c [%s]\n" % (c, c, b", ".join([b"*%c" % (c - 1)] * 9)) for c in b"bcdefg"
)


@pytest.fixture
def spdlab(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str]]:
    """Run one spdlab command: its exit status and what it wrote to stderr."""
    monkeypatch.setenv("SPDLAB_RUNS_DIR", "/nonexistent/runs")

    def run(*args: str, no_dac: bool = False, stdin: bytes = b"") -> tuple[int, str]:
        if no_dac:
            p = subprocess.run([*NO_DAC, *SPDLAB, *args], cwd=ROOT, capture_output=True)
            return p.returncode, p.stderr.decode(errors="replace")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capfd.readouterr()
        code = main(list(args))
        return code, capfd.readouterr().err

    return run


def write(data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "input"
        path.write_bytes(data)
        return path

    return make


def directory(tmp: Path) -> Path:
    (tmp / "a-folder").mkdir()
    return tmp / "a-folder"


def sized(n: int) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "big"
        with open(path, "wb") as f:
            f.truncate(n)  # sparse: no disk used
        return path

    return make


def loop(tmp: Path) -> Path:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


def missing(tmp: Path) -> Path:
    return tmp / "no-such-file"


def unreadable(tmp: Path) -> Path:
    path = tmp / "locked"
    path.write_bytes(LAB)
    path.chmod(0)
    return path


def dev_zero(tmp: Path) -> Path:
    return Path("/dev/zero")


# name: (make the input, the message after `path:`)
LAB_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not-utf8": (write(LAB[:-1] + b"\xff\n"), "4:13: (file): not UTF-8: byte 0xff at offset 48"),
    "latin1-mid-line": (
        write(b"name: caf\xe9\n"),
        "1:10: (file): not UTF-8: byte 0xe9 at offset 9",
    ),
    "directory": (directory, "1:1: (file): is a directory, not a file"),
    "empty": (write(b""), "1:1: (root): the file is empty"),
    "only-comments": (write(b"# name: x\n\n"), "1:1: (root): the file is empty"),
    "huge": (
        sized(MAX_BYTES + 1),
        f"1:1: (file): {MAX_BYTES + 1} bytes: more than the 1 MiB allowed",
    ),
    "endless": (dev_zero, "1:1: (file): more than the 1 MiB allowed"),
    "symlink-loop": (loop, "1:1: (file): Too many levels of symbolic links"),
    "missing": (missing, "1:1: (file): No such file or directory"),
    "unreadable": (unreadable, "1:1: (file): Permission denied"),
    "yaml-bomb": (write(BOMB), "6:1: f: more than 100000 values once aliases expand"),
    "alias-loop": (
        write(b"name: x\nlabels: &l [*l]\n"),
        "2:1: labels: nested deeper than 32 levels",
    ),
    "nul-byte": (write(b"name: x\x00\n"), "1:8: (yaml): U+0000 is not allowed in YAML"),
    "too-deep": (write(b"a: " + b"[" * 5000 + b"]" * 5000), "(yaml): nested too deeply"),
    "long-int": (
        write(b"name: x\nrange: " + b"9" * 5000),
        "2:1: range: cannot read this value: "
        "Exceeds the limit (4300 digits) for integer string conversion",
    ),
    "complex-key": (
        write(b"name: x\n? [a, b]\n: 1\n"),
        "2:3: (key): mapping keys must be plain scalars",
    ),
}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("verb", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(LAB_CASES))
def test_bad_lab_file(
    spdlab: Callable[..., tuple[int, str]], tmp_path: Path, case: str, verb: str
) -> None:
    make, message = LAB_CASES[case]
    path = make(tmp_path)
    args = [verb, str(path)] + (["--metrics-addr", ""] if verb == "run" else [])
    code, err = spdlab(*args, no_dac=case == "unreadable")
    line = one_line(err)
    assert code == 2, err
    assert line.startswith(f"{path}:") and line.endswith(message), line


def test_unreadable_is_unreadable_without_dac_override(tmp_path: Path) -> None:
    """The unreadable cases mean something: root, without its override, cannot read it."""
    path = unreadable(tmp_path)
    assert subprocess.run([*NO_DAC, "cat", str(path)], capture_output=True).returncode != 0


def test_a_bom_and_anchors_are_still_fine(
    spdlab: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    lab = b"\xef\xbb\xbfname: x\nrange: 10.0.0.0/24\ndefaults: &d {tick_ms: 10}\n" \
          b"targets: [{name: gw, build: netkey}]\nscenario: {policies: 1}\n"  # fmt: skip
    code, err = spdlab("validate", str(write(lab)(tmp_path)))
    assert code == 0, err


SCRIPT = b"spdflush;\nflush;\n"
SETKEY_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not-utf8": (write(SCRIPT + b"flush esp\xff;\n"), "3:10: not UTF-8: byte 0xff at offset 26"),
    "directory": (directory, "1:1: is a directory, not a file"),
    "huge": (
        sized(MAX_SCRIPT_BYTES + 1),
        f"1:1: {MAX_SCRIPT_BYTES + 1} bytes: more than the 16 MiB allowed",
    ),
    "endless": (dev_zero, "1:1: more than the 16 MiB allowed"),
    "symlink-loop": (loop, "1:1: Too many levels of symbolic links"),
    "missing": (missing, "1:1: No such file or directory"),
    "unreadable": (unreadable, "1:1: Permission denied"),
    "nul-byte": (write(SCRIPT + b"flush\x00;\n"), "3:6: U+0000 is not allowed"),
    "sparse-nuls": (sized(1 << 20), "1:1: U+0000 is not allowed"),
    "long-word": (write(SCRIPT + b"x" * 5000), "3:1: 5000 characters: more than 4096"),
}


@pytest.mark.parametrize("how", ["check", "socket", "traffic"])
@pytest.mark.parametrize("case", sorted(SETKEY_CASES))
def test_bad_setkey_script(
    spdlab: Callable[..., tuple[int, str]], tmp_path: Path, case: str, how: str
) -> None:
    make, message = SETKEY_CASES[case]
    path = make(tmp_path)
    args = {
        "check": ["setkey", "-f", str(path), "--check"],
        "socket": ["setkey", "-f", str(path), "-s", str(tmp_path / "no.sock")],
        "traffic": ["traffic", "--setkey", str(path), "--rate", "1", "--count", "1"],
    }[how]
    code, err = spdlab(*args, no_dac=case == "unreadable")
    line = one_line(err)
    assert code == 2, err
    assert line == f"spdlab: {path}:{message}", line


def test_setkey_stdin_not_utf8(spdlab: Callable[..., tuple[int, str]]) -> None:
    code, err = spdlab("setkey", "-c", "--check", stdin=b"spdflush;\n\xc3(\n")
    assert code == 2
    assert one_line(err) == "spdlab: <stdin>:2:1: not UTF-8: byte 0xc3 at offset 10"


def test_an_empty_setkey_script_is_no_statements(
    spdlab: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    code, err = spdlab("setkey", "-f", str(write(b"")(tmp_path)), "--check")
    assert code == 0, err
