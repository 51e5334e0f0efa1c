"""The kernel source: unpacked once, and a per-arch work tree that carries one patch series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from orchestrator.atomic import write_json
from orchestrator.errors import ConfigError, InfraError
from orchestrator.kernel import cache
from orchestrator.kernel.conf import Patch


def pristine(package: str, version: str) -> Path:
    """src/<version>/: the package's tarball unpacked (about 30 s, once per version)."""
    dest = cache.root() / "src" / version
    with cache.locked(cache.root() / "src" / ".lock"):
        if dest.is_dir():
            return dest
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tar = cache.tarball(package)
        r = subprocess.run(["tar", "-xf", str(tar), "-C", str(tmp)], capture_output=True, text=True)
        tops = list(tmp.iterdir())
        if r.returncode != 0 or len(tops) != 1:
            raise InfraError(f"unpacking {tar}: {r.stderr.strip()[-200:]}", step="kernel")
        tops[0].rename(dest)
        tmp.rmdir()
    return dest


def work_tree(src: Path, work: Path) -> Path:
    """work/<version>/<arch>/src: a hard-linked copy of the pristine tree."""
    tree = work / "src"
    if not tree.is_dir():
        tmp = work / "src.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(src.resolve()), str(tmp)], check=True)
        tmp.rename(tree)
    return tree


def _applied(work: Path) -> list[dict]:
    try:
        return json.loads((work / "applied.json").read_text())
    except (OSError, ValueError):
        return []


def _save(work: Path, applied: list[dict]) -> None:
    write_json(work / "applied.json", applied, indent=1)


def _restore(src: Path, tree: Path, files: set[str]) -> None:
    """Put pristine copies back (with a new mtime, so make rebuilds what they feed)."""
    for f in sorted(files):
        dst = tree / f
        dst.unlink(missing_ok=True)
        for suffix in (".orig", ".rej"):
            (tree / (f + suffix)).unlink(missing_ok=True)
        if (src / f).is_file():
            shutil.copyfile(src / f, dst)


def _failure(patch: Patch, out: str) -> str:
    """One line: the patch, the file and the first hunk that failed."""
    file = ""
    for line in out.splitlines():
        m = re.match(r"(?:checking|patching) file (\S+)", line)
        if m:
            file = m.group(1)
        m = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
        if m:
            return (
                f"patch {patch.name} does not apply: {file} hunk #{m.group(1)} at line {m.group(2)}"
            )
        if "can't find file to patch" in line or "No file to patch" in line:
            return f"patch {patch.name} does not apply: it names a file the source does not have"
        if "Reversed (or previously applied)" in line:
            return f"patch {patch.name} does not apply: {file} is already patched so (reversed?)"
    last = out.strip().splitlines()[-1:] or ["no output"]
    return f"patch {patch.name} does not apply: {last[0]}"


def _argv(tree: Path) -> list[str]:
    return ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-d", str(tree)]


def _check(tree: Path, patch: Patch) -> tuple[bytes, list[str]]:
    """The patch's bytes and the files it touches, if it applies.

    Raises:
        ConfigError: it does not apply, naming the patch, the file and the hunk.
    """
    try:
        data = patch.path.read_bytes()
    except OSError as e:
        raise ConfigError(f"patch {patch.name}: {patch.path}: {e.strerror}") from None
    dry = subprocess.run([*_argv(tree), "--dry-run"], input=data, capture_output=True)
    out = dry.stdout.decode(errors="replace")
    if dry.returncode != 0:
        raise ConfigError(_failure(patch, out))
    return data, re.findall(r"^checking file (\S+)", out, re.M)


def carry(src: Path, work: Path, patches: tuple[Patch, ...]) -> None:
    """Make the work tree carry exactly `patches`, touching as few files as it can.

    A series that extends the one applied is applied on top; any other first
    puts back the pristine copy of every file the old series touched.
    """
    tree = work / "src"
    want = [{"name": p.name, "sha256": p.sha256()} for p in patches]
    have = _applied(work)
    keep = 0
    while keep < min(len(have), len(want)) and have[keep]["sha256"] == want[keep]["sha256"]:
        keep += 1
    if keep < len(have):
        _restore(src, tree, {f for rec in have[keep:] for f in rec["files"]})
        have = have[:keep]
        _save(work, have)
    for p, rec in zip(patches[keep:], want[keep:], strict=True):
        data, rec["files"] = _check(tree, p)
        # Recorded before it is applied: after a crash in between, the files go back.
        _save(work, [*have, {**rec, "sha256": "pending"}])
        subprocess.run(_argv(tree), input=data, capture_output=True, check=True)
        have.append(rec)
        _save(work, have)
