"""atheris harness for the Python parsers of untrusted input.

    python firmware/fuzz/fuzz_py.py TARGET [libFuzzer flags] [CORPUS...]

TARGET is one of:
    setkey  orchestrator.pfkey.setkey.parse over the input as text
    codec   orchestrator.pfkey.codec.decode and iter_messages, both sockaddr flavours
    lab     orchestrator.lab.load.load_lab over the input written to a lab file

Each documents the one error type it raises on bad input (SetkeyError, PfkeyError,
LabError); any other exception escapes, and atheris reports it as a crash.  The seed
corpora are firmware/fuzz/corpus/py-TARGET, written by mkseeds.py.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["orchestrator"]):
    from orchestrator.errors import PfkeyError
    from orchestrator.lab.load import LabError, load_lab
    from orchestrator.pfkey import codec, setkey

# The lab target writes each input here: a file, as a user would name one.
_LAB = Path(tempfile.mkdtemp(prefix="fuzz-py-lab-")) / "lab.yaml"
_BUILDS = ["netkey", "netipsec"]


def setkey_one(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(setkey.SetkeyError):
        setkey.parse(text, "fuzz.conf")


def codec_one(data: bytes) -> None:
    for flavour in codec.FLAVOURS:
        with contextlib.suppress(PfkeyError):
            codec.decode(data, flavour)
        with contextlib.suppress(PfkeyError):
            list(codec.iter_messages(data, flavour))


def lab_one(data: bytes) -> None:
    _LAB.write_bytes(data)
    with contextlib.suppress(LabError):
        load_lab(_LAB, builds=_BUILDS)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "setkey": setkey_one,
    "codec": codec_one,
    "lab": lab_one,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.stderr.write(f"usage: fuzz_py.py {'|'.join(TARGETS)} [libFuzzer flags] [CORPUS...]\n")
        raise SystemExit(2)
    one = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], one)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(_LAB.parent, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
