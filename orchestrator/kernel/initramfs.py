"""The built kernels' initramfs: a static init, pfkey_relay and spdlab_flows, packed by
gen_init_cpio."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from orchestrator.atomic import write_bytes
from orchestrator.errors import InfraError
from orchestrator.kernel import cache
from orchestrator.runs import project_root

# /dev/console must exist before init runs, or init starts with no stdout.
LIST = """dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /bin 0755 0 0
file /init {init} 0755 0 0
file /bin/pfkey_relay {relay} 0755 0 0
file /bin/spdlab_flows {flows} 0755 0 0
"""


def _binaries(arch: str) -> tuple[Path, Path, Path]:
    """firmware/build/relay/<arch>/{init,pfkey_relay,spdlab_flows}, cross-built statically."""
    relay_dir = project_root() / "firmware" / "relay"
    r = subprocess.run(["make", "-s", "-C", str(relay_dir), f"ARCH={arch}"],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        raise InfraError(
            f"relay for {arch}: {(r.stderr or r.stdout).strip()[-200:]}", step="kernel"
        )
    out = project_root() / "firmware" / "build" / "relay" / arch
    return out / "init", out / "pfkey_relay", out / "spdlab_flows"


def _gen_init_cpio(src: Path) -> Path:
    """The kernel's usr/gen_init_cpio, compiled for the host once per source version."""
    tool = cache.root() / "bin" / f"gen_init_cpio-{src.name}"
    if not tool.is_file():
        tool.parent.mkdir(parents=True, exist_ok=True)
        tmp = tool.with_suffix(".tmp")
        subprocess.run(["cc", "-O2", "-o", str(tmp), str(src / "usr" / "gen_init_cpio.c")],
                       check=True, capture_output=True)  # fmt: skip
        tmp.rename(tool)
    return tool


def build(src: Path, arch: str) -> Path:
    """initramfs/<arch>-<hash>.cpio (uncompressed), made once per content."""
    init, relay, flows = _binaries(arch)
    listing = LIST.format(init=init, relay=relay, flows=flows)
    h = hashlib.sha256(listing.encode() + init.read_bytes() + relay.read_bytes()
                       + flows.read_bytes()).hexdigest()  # fmt: skip
    out = cache.root() / "initramfs" / f"{arch}-{h[:16]}.cpio"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([str(_gen_init_cpio(src)), "-"], input=listing.encode(), capture_output=True)
    if r.returncode != 0:
        raise InfraError(
            f"gen_init_cpio: {r.stderr.decode(errors='replace').strip()}", step="kernel"
        )
    write_bytes(out, r.stdout)
    return out
