"""What a qemu target boots: Debian's stock kernel (`linux-af_key`) or a kernel build, per arch.

A kernel build comes from kernels/builds.conf or from the lab file's `kernels:`
(the user's own patch files); orchestrator.kernel builds it through its cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import ConfigError, InfraError
from orchestrator.targets.preflight import Unmet, command, path

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab, TargetSpec

STOCK = "linux-af_key"
DEFAULT_ARCH = "x86_64"
# arch → QEMU binary, machine options, console device. x86_64 starts from qboot, not
# SeaBIOS: it sets up PCI and jumps to -kernel (PVH ELF or bzImage) without running any
# option ROM, 0.05 to 0.09 s less of a TCG guest's CPU per boot.
MACHINES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "x86_64": ("qemu-system-x86_64", ("-cpu", "max", "-bios", "qboot.rom"), "ttyS0"),
    "arm64": ("qemu-system-aarch64", ("-M", "virt", "-cpu", "cortex-a57"), "ttyAMA0"),
}
APT = {"x86_64": "qemu-system-x86", "arm64": "qemu-system-arm"}


@dataclass(frozen=True)
class Boot:
    """One VM's kernel, initramfs and architecture; meta: the build's versions."""

    arch: str
    kernel: str
    initrd: str
    release: str
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def arch_of(spec: TargetSpec) -> str:
    return spec.arch or DEFAULT_ARCH


def qemu_unmet(arch: str) -> Unmet | None:
    """The precondition "that arch's QEMU is on PATH"."""
    return command(MACHINES[arch][0], APT[arch])


def qemu_binary(arch: str) -> str:
    """Raises InfraError when that arch's QEMU is not installed."""
    unmet = qemu_unmet(arch)
    if unmet is not None:
        raise InfraError(unmet.line(), step="provision")
    return MACHINES[arch][0]


def kernel_unmet(lab: ResolvedLab, build: str, arch: str, stock_dir: Path) -> Unmet | None:
    """The precondition "the kernel is there, or what makes it is": Debian's kernel fetched
    (or busybox-static to make its initramfs), a kernel build's source package."""
    if build == STOCK:
        if (stock_dir / "vmlinuz").is_file() and (stock_dir / "initramfs.gz").is_file():
            return None
        return path(Path("/bin/busybox"), "busybox for the qemu initramfs:",
                    "apt-get install busybox-static")  # fmt: skip
    from orchestrator.kernel.cache import tarball

    try:
        source = kernel_build(lab, build).source
    except ConfigError:
        return None  # validate reports an unknown build
    return path(tarball(source), f"kernel {build} ({arch}): the source", "scripts/deps.sh kernel")


def kernel_build(lab: ResolvedLab | None, name: str):
    """The KernelBuild called name: the lab file's own, else kernels/builds.conf's."""
    from orchestrator.kernel import conf

    own = lab.kernels.get(name) if lab is not None else None
    if own is None:
        return conf.get(name)
    here = Path(lab.path).resolve().parent if lab and lab.path else Path.cwd()
    kb = conf.with_patches(name, list(own.patches), here, own.base, own.synthetic)
    return kb


def stock(arch: str, kdir: Path) -> Boot:
    if arch != "x86_64":
        raise ConfigError(f"build {STOCK} is Debian's amd64 kernel: arch x86_64 only")
    meta = {"build": STOCK, "source": "linux-image-amd64", "source_version": kdir.name}
    return Boot(arch, str(kdir / "vmlinuz"), str(kdir / "initramfs.gz"), kdir.name, meta)


def built(lab: ResolvedLab | None, spec: TargetSpec) -> Boot:
    """Build (or take from the cache) the target's kernel for its arch."""
    from orchestrator.kernel import build

    arch = arch_of(spec)
    b = build.build(kernel_build(lab, spec.build), arch)
    release = f"{b.meta['source_version']} {spec.build} {arch}"
    return Boot(arch, str(b.image), str(b.initramfs), release, b.meta)


@dataclass(frozen=True)
class Nic:
    """The VM's virtio-net on the lab switch: its tap, MAC, eth0's address (A/P), the
    protected address the guest also answers on (A/32) and its default gateway (the
    traffic host, where its outbound tunnels lead)."""

    tap: str
    mac: str
    addr: str
    local: str
    gw: str

    def argv(self) -> list[str]:
        return ["-netdev", f"tap,id=lab,ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=lab,mac={self.mac}"]  # fmt: skip

    def cmdline(self) -> str:
        return f" spdlab.addr={self.addr} spdlab.local={self.local} spdlab.gw={self.gw}"


def qemu_argv(
    boot: Boot, files: dict[str, Path], memory_mb: int, port: str, nic: Nic | None = None
) -> list[str]:
    """One VM: TCG, no display; the console to a file, the relay's port to a socket, and
    with `nic` a virtio-net on its tap (QEMU runs in the tap's namespace)."""
    qemu, machine, console = MACHINES[boot.arch]
    net = ["-nic", "none"] if nic is None else nic.argv()
    return [
        qemu, *machine, "-accel", "tcg", "-m", str(memory_mb), "-smp", "1",
        "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
        "-serial", f"file:{files['console']}",
        "-kernel", boot.kernel, "-initrd", boot.initrd,
        # slab_nomerge: xfrm_dst_cache keeps its own line in /proc/slabinfo (the bundles).
        # no_timer_check: on a loaded host a TCG guest's timer IRQ can miss the kernel's
        # boot-time check window, and x86 then panics ("IO-APIC + timer doesn't work").
        "-append", f"console={console} panic=-1 quiet no_timer_check slab_nomerge"
        + (nic.cmdline() if nic else ""), *net,
        "-device", "virtio-rng-pci", "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=pfkey,path={files['relay']},server=on,wait=off",
        "-device", f"virtserialport,chardev=pfkey,name={port}",
        "-pidfile", str(files["qemu_pid"]),
    ]  # fmt: skip
