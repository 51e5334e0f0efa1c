"""result.json on disk: written atomically from RunResult, read back into it.

The schema file is generated from the models (`python -m orchestrator.export.result`)
and versioned by RunResult's `schema` ("spdlab.result/2"); a test keeps them equal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator import atomic
from orchestrator.errors import ConfigError
from orchestrator.result.model import SCHEMA, RunResult

SCHEMA_FILE = Path(__file__).with_name("result.schema.json")
OLD_SCHEMAS = {"spdlab.result/1": "written by spdlab before typed results; rerun its lab"}


class ResultError(ConfigError):
    """A result.json that cannot be read: one line naming the file and the problem."""


def dump(res: RunResult) -> dict[str, Any]:
    return res.model_dump(mode="json", by_alias=True)


def write(path: Path, res: RunResult) -> None:
    atomic.write_json(path, dump(res))


def parse(doc: Any, where: str = "result.json") -> RunResult:
    """A decoded result.json as RunResult.

    Raises:
        ResultError: an old or unknown schema, or a field that does not validate.
    """
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema in OLD_SCHEMAS:
        raise ResultError(f"{where}: schema {schema} is not {SCHEMA}: {OLD_SCHEMAS[schema]}")
    if schema != SCHEMA:
        raise ResultError(f"{where}: not a {SCHEMA} file (schema: {schema!r})")
    try:
        return RunResult.model_validate(doc)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ResultError(f"{where}: {field}: {err['msg']}") from None


def load(path: Path) -> RunResult:
    """Read runs/<id>/result.json.

    Raises:
        ResultError: missing, not JSON, or not a valid result (one line).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ResultError(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ResultError(f"{path}: not JSON: {e}") from None
    return parse(doc, str(path))


def schema() -> dict[str, Any]:
    """The JSON schema of result.json, generated from RunResult."""
    out = RunResult.model_json_schema(by_alias=True, mode="serialization")
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["$id"] = SCHEMA
    return out


def validate(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if doc does not match the checked-in schema."""
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))


def main(argv: list[str]) -> int:
    """Regenerate the schema file; --check: exit 1 if it is out of date."""
    text = json.dumps(schema(), indent=1) + "\n"
    if "--check" in argv:
        ok = SCHEMA_FILE.exists() and SCHEMA_FILE.read_text() == text
        if not ok:
            print(f"{SCHEMA_FILE}: out of date; run python -m orchestrator.export.result")
        return 0 if ok else 1
    atomic.write_text(SCHEMA_FILE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
