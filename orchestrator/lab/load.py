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
from orchestrator.userfile import UserFileError, read_text

MAX_BYTES = 1 << 20  # lab files are a few KB; this bounds the parse
MAX_NODES = 100_000  # values, aliases expanded
MAX_DEPTH = 32  # a lab nests 4 levels


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


class _Builder:
    """YAML nodes → plain data and their source map, within bounds.

    Aliases are expanded, so a few lines can stand for billions of values (a YAML
    bomb) or for themselves (`&a [*a]`): the node count and the depth are capped.
    """

    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap):
        self.loader = loader
        self.smap = smap
        self.nodes = 0

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.smap.values[loc] = _mark(node)
        self.nodes += 1
        # Named by the top-level key: the full path of an expanded alias is endless.
        if self.nodes > MAX_NODES:
            raise LabIssues([Issue(loc[:1], f"more than {MAX_NODES} values once aliases expand")])
        if len(loc) > MAX_DEPTH:
            raise LabIssues([Issue(loc[:1], f"nested deeper than {MAX_DEPTH} levels")])
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, (*loc, i)) for i, n in enumerate(node.value)]
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as e:  # 2026-13-01, or an int of more digits than Python converts
            why = str(e).split(":")[0]
            raise LabIssues([Issue(loc, f"cannot read this value: {why}")]) from None

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = None
            if isinstance(key_node, yaml.ScalarNode):
                key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | bool | float):
                self.smap.values[(*loc, "(key)")] = _mark(key_node)
                raise LabIssues([Issue((*loc, "(key)"), "mapping keys must be plain scalars")])
            if key in out:
                self.smap.values[(*loc, key)] = _mark(key_node)
                raise LabIssues([Issue((*loc, key), "duplicate key")])
            self.smap.keys[(*loc, key)] = _mark(key_node)
            out[key] = self.build(value_node, (*loc, key))
        return out


def _yaml_error(e: yaml.YAMLError, text: str, path: str) -> LabError:
    """One located line for any error PyYAML raises."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return LabError([f"{path}:{line}:{col}: (yaml): {e.problem or e}"])
    if isinstance(e, yaml.reader.ReaderError):  # a control character
        before = text[: e.position]
        line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        char = f"U+{e.character:04X}" if isinstance(e.character, int) else repr(e.character)
        return LabError([f"{path}:{line}:{col}: (yaml): {char} is not allowed in YAML"])
    return LabError([f"{path}:1:1: (yaml): {e}"])


def parse_yaml(text: str, path: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map.

    Raises:
        LabError: on a YAML syntax error, an empty file, or a document past the caps.
    """
    smap = SourceMap(path)
    try:
        loader = yaml.SafeLoader(text)  # checks for control characters
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, path) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise LabError([f"{path}:1:1: (root): the file is empty"])
        data = _Builder(loader, smap).build(node, ())
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, path) from None
    except RecursionError:
        mark = loader.get_mark()
        where = f"{mark.line + 1}:{mark.column + 1}"
        raise LabError([f"{path}:{where}: (yaml): nested too deeply"]) from None
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
        # "[key]", and the tags of a union's members ("[hosts]"), are not places in the file
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("[")))
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
        LabError: the file cannot be read as UTF-8 text of at most MAX_BYTES, is not
            YAML, or does not validate.
    """
    shown = str(path)
    try:
        text = read_text(path, MAX_BYTES)
    except UserFileError as e:
        raise LabError([f"{e.path}:{e.line}:{e.col}: (file): {e.message}"]) from None
    data, smap = parse_yaml(text, shown)
    return validate_data(data, smap), smap


def load_lab(
    path: str | Path,
    *,
    builds: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    scenario: dict[str, Any] | None = None,
) -> ResolvedLab:
    """Read, validate and resolve a lab file (stages 1 and 2).

    Args:
        path: the lab file.
        builds: known firmware builds; default: firmware/builds.conf.
        kinds: supported target kinds; default: the driver registry.
        scenario: scenario fields set from the command line (`--seed`), over the file's.

    Returns:
        ResolvedLab, with sorted runtime target specs.

    Raises:
        LabError: every problem, one `file:line:col: field: message` line each.
    """
    lab, smap = read_lab(path)
    if scenario:
        lab = lab.model_copy(update={"scenario": lab.scenario.model_copy(update=scenario)})
    try:
        return resolve(lab, builds=builds, kinds=kinds, path=str(path))
    except LabIssues as e:
        lines = [smap.line(i) for i in e.issues]
        raise LabError(sorted(dict.fromkeys(lines), key=_line_order)) from None
