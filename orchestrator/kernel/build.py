"""Kernel builds through the cache: a key per (source version, config, patches), an O= per arch.

Versions for result.json come from meta.json: the source package and its version, the
config hash, every patch's sha256, the image's sha256.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.atomic import write_json
from orchestrator.errors import ConfigError
from orchestrator.kernel import cache, config, initramfs, tree
from orchestrator.kernel.conf import ARCHES, KernelBuild


@dataclass(frozen=True)
class Built:
    """A kernel ready to boot."""

    image: Path
    initramfs: Path
    meta: dict[str, Any]


def versions(kb: KernelBuild, arch: str) -> dict[str, Any]:
    """What names the build: the cache key is the sha256 of this document."""
    return {
        "source": kb.source,
        "source_version": cache.source_version(kb.source),
        "arch": arch,
        "config": kb.config,
        "config_sha256": config.config_hash(kb.config, arch),
        "patches": [{"name": p.name, "sha256": p.sha256()} for p in kb.patches],
    }


def cache_key(v: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:20]


def build(kb: KernelBuild, arch: str, jobs: int = 2) -> Built:
    """The build's kernel for arch, from the cache or built now.

    Raises:
        ConfigError: unknown arch, a missing fragment or patch, a patch that does not apply.
        InfraError: the source package is missing, or make failed.
    """
    if arch not in ARCHES:
        raise ConfigError(f"unknown arch '{arch}'. Known arches are: {', '.join(ARCHES)}")
    v = versions(kb, arch)
    out = cache.root() / "out" / cache_key(v)
    src = tree.pristine(kb.source, v["source_version"])
    if not (out / "meta.json").is_file():
        work = cache.root() / "work" / v["source_version"] / arch
        with cache.locked(work / "lock"):
            if not (out / "meta.json").is_file():
                _compile(kb, arch, v, src, work, out, jobs)
    meta = json.loads((out / "meta.json").read_text())
    meta["build"], meta["synthetic"] = kb.name, kb.synthetic
    return Built(out / Path(config.IMAGE[arch]).name, initramfs.build(src, arch), meta)


def _compile(kb: KernelBuild, arch: str, v: dict[str, Any], src: Path, work: Path,
             out: Path, jobs: int) -> None:  # fmt: skip
    t0 = time.monotonic()
    tree.work_tree(src, work)
    tree.carry(src, work, kb.patches)
    obj, log = work / "obj", work / "build.log"
    log.write_text(f"# {kb.name} {arch}\n")
    fresh = not (obj / "vmlinux").is_file()
    config.configure(work / "src", obj, kb.config, arch, log)
    config.run_make(config.make_argv(work / "src", obj, arch, Path(config.IMAGE[arch]).name,
                                     jobs=jobs), log)  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    image = shutil.copy2(obj / config.IMAGE[arch], tmp)
    shutil.copy2(obj / ".config", tmp / "config")
    meta = {
        **v,
        "image": Path(image).name,
        "image_sha256": hashlib.sha256(Path(image).read_bytes()).hexdigest(),
        "dot_config_sha256": hashlib.sha256((obj / ".config").read_bytes()).hexdigest(),
        "build_s": round(time.monotonic() - t0, 1),
        "incremental": not fresh,
    }
    write_json(tmp / "meta.json", meta)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
