"""result.json: the schema comes from the models; old or broken files fail in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from orchestrator.export import result
from orchestrator.result.model import SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def test_the_checked_in_schema_is_the_generated_one() -> None:
    assert json.loads(result.SCHEMA_FILE.read_text()) == result.schema()
    assert result.schema()["properties"]["schema"]["const"] == SCHEMA == "spdlab.result/2"


NO = {"not_observable": "SPDDUMP"}


def minimal() -> dict:
    return {"schema": SCHEMA, "run_id": "r", "started": "t", "tick_ms": 15,
            "lab": {"name": "x"}, "scenario": {},
            "versions": {"spdlab": "0", "kernel": "k", "hostname": "h"},
            "targets": [{"name": "vm", "build": "linux-af_key", "kind": "qemu",
                         "tick_ms": 1000,
                         "measures": {"premature_frees": NO}}]}  # fmt: skip


def test_not_observable_is_a_reason_never_a_number() -> None:
    doc = minimal()
    result.validate(doc)
    res = result.parse(doc)
    assert res.targets[0].measures.premature_frees.not_observable == "SPDDUMP"
    doc["targets"][0]["measures"]["premature_frees"] = {"not_observable": 0}
    with pytest.raises(jsonschema.ValidationError):
        result.validate(doc)


def test_a_version_1_file_gives_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text(json.dumps({"schema": "spdlab.result/1"}))
    with pytest.raises(result.ResultError) as e:
        result.load(tmp_path / "result.json")
    assert str(e.value) == (f"{tmp_path}/result.json: schema spdlab.result/1 is not "
                            "spdlab.result/2: written by spdlab before typed results; "
                            "rerun its lab")  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "compare", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().endswith("rerun its lab"), p.stderr


def test_a_bad_field_is_named(tmp_path: Path) -> None:
    doc = minimal()
    doc["tick_ms"] = "fast"
    with pytest.raises(result.ResultError, match=r"result.json: tick_ms: "):
        result.parse(doc)
