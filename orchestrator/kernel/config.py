"""The kernel config: `make tinyconfig`, then the build's fragment and the arch's, all built in."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from orchestrator.errors import ConfigError, InfraError
from orchestrator.kernel.conf import kernels_dir

CROSS = {"x86_64": "", "arm64": "aarch64-linux-gnu-"}
IMAGE = {"x86_64": "vmlinux", "arm64": "arch/arm64/boot/Image"}


def fragments(config: str, arch: str) -> list[Path]:
    """kernels/config/<config>.config and kernels/config/<arch>.config.

    Raises:
        ConfigError: one of them is missing.
    """
    out = [
        kernels_dir() / "config" / f"{config}.config",
        kernels_dir() / "config" / f"{arch}.config",
    ]
    for f in out:
        if not f.is_file():
            raise ConfigError(f"kernel config '{config}' for {arch}: no {f}")
    return out


# A fragment's settings: `CONFIG_X=v` and `# CONFIG_X is not set`; comments and blank
# lines decide nothing, so editing them must not rebuild every kernel.
SETTING = re.compile(r"^(CONFIG_\w+=.*|# CONFIG_\w+ is not set)$")


def config_hash(config: str, arch: str) -> str:
    """sha256 of what decides the .config: the base, the arch and both fragments' settings."""
    h = hashlib.sha256(f"tinyconfig\0{arch}\0".encode())
    for f in fragments(config, arch):
        lines = (ln.strip() for ln in f.read_text().splitlines())
        h.update("".join(f"{ln}\n" for ln in lines if SETTING.match(ln)).encode())
        h.update(b"\0")
    return h.hexdigest()


def make_argv(tree: Path, obj: Path, arch: str, *targets: str, jobs: int = 2) -> list[str]:
    return [
        "make", "-s", f"-j{jobs}", "-C", str(tree), f"O={obj}", f"ARCH={arch}",
        f"CROSS_COMPILE={CROSS[arch]}", "KBUILD_BUILD_USER=spdlab",
        "KBUILD_BUILD_HOST=spdlab", "KBUILD_BUILD_TIMESTAMP=@0", *targets,
    ]  # fmt: skip


def run_make(argv: list[str], log: Path) -> None:
    """Run make, its output appended to log.

    Raises:
        InfraError: make failed, with the first error line.
    """
    with open(log, "ab") as out:
        r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        errs = [ln for ln in lines if "error" in ln.lower()] or lines[-1:] or ["no output"]
        raise InfraError(f"kernel build failed: {errs[0].strip()} (log: {log})", step="kernel")


def _missing(dot_config: Path, frags: list[Path]) -> list[str]:
    """Fragment settings the resolved .config does not carry (a dependency was not met)."""
    have = set(dot_config.read_text().splitlines())
    miss = []
    for f in frags:
        for line in f.read_text().splitlines():
            if not line.startswith("CONFIG_"):
                continue
            key, _, val = line.partition("=")
            want = f"# {key} is not set" if val == "n" else line
            if want not in have:
                miss.append(line)
    return miss


def configure(tree: Path, obj: Path, config: str, arch: str, log: Path) -> None:
    """Write obj/.config unless it was made from the same inputs.

    Raises:
        ConfigError: a fragment setting did not survive olddefconfig.
    """
    want = config_hash(config, arch)
    stamp = obj / ".spdlab-config"
    if (obj / ".config").is_file() and stamp.is_file() and stamp.read_text() == want:
        return
    obj.mkdir(parents=True, exist_ok=True)
    frags = fragments(config, arch)
    run_make(make_argv(tree, obj, arch, "tinyconfig"), log)
    merge = tree / "scripts" / "kconfig" / "merge_config.sh"
    argv = ["sh", str(merge), "-m", "-O", str(obj), str(obj / ".config"), *map(str, frags)]
    with open(log, "ab") as out:
        subprocess.run(argv, cwd=obj, stdout=out, stderr=subprocess.STDOUT, check=True)
    run_make(make_argv(tree, obj, arch, "olddefconfig"), log)
    miss = _missing(obj / ".config", frags)
    if miss:
        raise ConfigError(f"kernel config '{config}' for {arch}: not set: {', '.join(miss)}")
    stamp.write_text(want)
