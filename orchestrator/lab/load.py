"""Read a lab file: YAML nodes keep their line:col, so every error points into the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.errors import ConfigError
from orchestrator.lab.issues import Issue, LabIssues, Loc
from orchestrator.lab.model import LabDef
from orchestrator.lab.resolve import ResolvedLab, resolve


class LabError(ConfigError):
    """A lab file that cannot be used: one `file:line:col: field: message` line per problem."""

    def __init__(self, lines: Sequence[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def field_name(loc: Loc) -> str:
    """Format a document path like pydantic's loc: `targets[2].build`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


class SourceMap:
    """Line:col of every node in a YAML document, keyed by its path."""

    def __init__(self, path: str):
        self.path = path
        self.values: dict[Loc, tuple[int, int]] = {}
        self.keys: dict[Loc, tuple[int, int]] = {}

    def where(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the node at `loc`, or of its nearest ancestor."""
        loc = tuple(loc)
        if key and loc in self.keys:
            return self.keys[loc]
        while loc:
            if loc in self.values:
                return self.values[loc]
            if loc in self.keys:
                return self.keys[loc]
            loc = loc[:-1]
        return self.values.get((), (1, 1))

    def line(self, issue: Issue, *, key: bool = False) -> str:
        line, col = self.where(issue.loc, key=key)
        return f"{self.path}:{line}:{col}: {field_name(issue.loc)}: {issue.message}"


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, smap: SourceMap) -> Any:
    smap.values[loc] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | bool | float) or key is None:
                raise LabIssues([Issue(loc, "mapping keys must be plain scalars")])
            if key in out:
                smap.values[(*loc, key)] = _mark(key_node)
                raise LabIssues([Issue((*loc, key), "duplicate key")])
            smap.keys[(*loc, key)] = _mark(key_node)
            out[key] = _build(loader, value_node, (*loc, key), smap)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, n, (*loc, i), smap) for i, n in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, path: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map.

    Raises:
        LabError: on a YAML syntax error or an empty file.
    """
    smap = SourceMap(path)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise LabError([f"{path}:1:1: (root): the file is empty"])
        data = _build(loader, node, (), smap)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise LabError([f"{path}:{line}:{col}: (yaml): {e.problem or e}"]) from None
    except LabIssues as e:
        raise LabError([smap.line(i, key=True) for i in e.issues]) from None
    finally:
        loader.dispose()
    return data, smap


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


def _message(e: dict, loc: Loc) -> str:
    """A short message for one pydantic error."""
    ctx, kind = e.get("ctx") or {}, e["type"]
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {e['input']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}, got {e['input']}"
    if kind == "string_pattern_mismatch" and loc[-2:-1] == ("labels",):
        return f"'{e['input']}' is not a valid label: use A-Z, a-z, 0-9, '_', '.', '-'"
    if kind == "string_pattern_mismatch":
        return f"'{e['input']}' is not a valid name: use a-z, 0-9 and '-', at most 24 characters"
    msg = _MESSAGES.get(kind, e["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def _pydantic_issues(err: ValidationError) -> list[tuple[Issue, bool]]:
    out = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p != "[key]")
        out.append((Issue(loc, _message(e, loc)), e["type"] == "extra_forbidden"))
    return out


def validate_data(data: Any, smap: SourceMap) -> LabDef:
    """Stage 1: plain data → LabDef.

    Raises:
        LabError: one line per pydantic error, located in the file.
    """
    if not isinstance(data, dict):
        raise LabError([f"{smap.path}:1:1: (root): the lab file must be a mapping"])
    try:
        return LabDef.model_validate(data)
    except ValidationError as e:
        lines = [smap.line(issue, key=is_key) for issue, is_key in _pydantic_issues(e)]
        raise LabError(sorted(set(lines), key=_line_order)) from None


def _line_order(line: str) -> tuple[int, int, str]:
    parts = line.rsplit(": ", 2)[0].split(":")
    try:
        return int(parts[-2]), int(parts[-1]), line
    except (ValueError, IndexError):
        return 0, 0, line


def read_lab(path: str | Path) -> tuple[LabDef, SourceMap]:
    """Read and validate a lab file (stage 1).

    Args:
        path: the lab file.

    Returns:
        The validated definition and the source map used to place later errors.

    Raises:
        LabError: the file is missing, is not YAML, or does not validate.
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise LabError([f"{shown}:1:1: (file): {e.strerror or e}"]) from None
    data, smap = parse_yaml(text, shown)
    return validate_data(data, smap), smap


def load_lab(
    path: str | Path, *, builds: Sequence[str] | None = None, kinds: Sequence[str] | None = None
) -> ResolvedLab:
    """Read, validate and resolve a lab file (stages 1 and 2).

    Args:
        path: the lab file.
        builds: known firmware builds; default: firmware/builds.conf.
        kinds: supported target kinds; default: the driver registry.

    Returns:
        ResolvedLab, with sorted runtime target specs.

    Raises:
        LabError: every problem, one `file:line:col: field: message` line each.
    """
    lab, smap = read_lab(path)
    try:
        return resolve(lab, builds=builds, kinds=kinds, path=str(path))
    except LabIssues as e:
        lines = [smap.line(i) for i in e.issues]
        raise LabError(sorted(dict.fromkeys(lines), key=_line_order)) from None
