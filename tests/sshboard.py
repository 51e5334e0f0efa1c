"""A board for the ssh kind's tests: a network namespace running Debian's OpenSSH sshd.

The namespace is plugged into this host by one veth pair on a /30 of its own; sshd
listens on the namespace's address only, with a host key and a client key generated
per board. Nothing listens on the host's own addresses. stop() ends sshd and every
process left in the namespace (sessions outlive the listener), then removes it.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
from pathlib import Path

from orchestrator import proc
from orchestrator.targets import cleanup
from orchestrator.wait import until

ROOT = Path(__file__).resolve().parents[1]
SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = """\
ListenAddress {address}:22
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding local
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
"""


def _sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=True)


def _free_subnet() -> int:
    """A third octet of 10.213.X.0/30 no interface on this host uses."""
    used = _sh("ip", "-4", "-o", "addr").stdout
    for _ in range(100):
        x = secrets.randbelow(250) + 1
        if f"10.213.{x}." not in used:
            return x
    raise RuntimeError("no free 10.213.X.0/30")


def keygen(path: Path) -> str:
    """An ed25519 key pair at path; returns the public key line."""
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "spdlab-test", "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


class Board:
    """One sshd board in a namespace: address, key and known_hosts for a lab file."""

    def __init__(self, d: Path):
        self.dir = d
        tag = secrets.token_hex(2)
        self.ns, self.veth = f"spdlab-board-{tag}", f"spdlb{tag}h"
        x = _free_subnet()
        self.host_ip, self.address = f"10.213.{x}.1", f"10.213.{x}.2"
        self.key = d / "id_ed25519"
        self.known_hosts = d / "known_hosts"
        self.sshd: subprocess.Popen | None = None

    def start(self) -> Board:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._net()
        pub = keygen(self.key)
        (self.dir / "authorized_keys").write_text(pub + "\n")
        host = keygen(self.dir / "host_key").split()
        self.known_hosts.write_text(f"{self.address} {host[0]} {host[1]}\n")
        cfg = self.dir / "sshd_config"
        cfg.write_text(SSHD_CONFIG.format(address=self.address, d=self.dir))
        self._sshd()
        return self

    def _sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        cfg = str(self.dir / "sshd_config")
        argv = ["ip", "netns", "exec", self.ns, SSHD, "-D", "-e", "-f", cfg]
        with open(self.dir / "sshd.log", "ab") as log:
            self.sshd = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        until(self._answers, f"sshd on {self.address}:22", 30)

    def _net(self) -> None:
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
            "netns", self.ns)  # fmt: skip
        _sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        _sh("ip", "link", "set", self.veth, "up")
        _sh("ip", "-n", self.ns, "addr", "add", f"{self.address}/30", "dev", "eth0")
        _sh("ip", "-n", self.ns, "link", "set", "eth0", "up")

    def _answers(self) -> bool:
        if self.sshd is not None and self.sshd.poll() is not None:
            log = (self.dir / "sshd.log").read_text(errors="replace")
            raise RuntimeError(f"sshd exited {self.sshd.returncode}: {log[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection((self.address, 22), 1) as s:
            return s.recv(4).startswith(b"SSH-")
        return False

    def new_host_key(self) -> None:
        """A new host key, as after the board was reinstalled: sshd restarted with it."""
        assert self.sshd is not None
        proc.terminate(self.sshd)
        for p in (self.dir / "host_key", self.dir / "host_key.pub"):
            p.unlink()
        keygen(self.dir / "host_key")
        self._sshd()

    def sshd_down(self) -> None:
        """Stop sshd and its sessions, as when a board's sshd is stopped: the rest stays."""
        assert self.sshd is not None
        proc.terminate(self.sshd)
        sshd = [p for p in self.pids() if (proc.cmdline(p) or "").startswith("sshd")]
        proc.stop_pids(sshd, lambda p: (proc.cmdline(p) or "").startswith("sshd"))

    def sshd_up(self) -> None:
        self._sshd()

    def pids(self) -> list[int]:
        """Processes in the board's namespace: sshd, its sessions, what they started."""
        return cleanup.netns_pids(self.ns)

    def ps(self) -> list[str]:
        """Command lines of the board's processes."""
        out = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        return out

    def stop(self) -> None:
        if self.sshd is not None:
            proc.terminate(self.sshd)
        proc.stop_pids(self.pids(), cleanup.in_netns(self.ns))
        if cleanup.netns_exists(self.ns):
            _sh("ip", "netns", "del", self.ns)  # takes the veth pair with it


class QemuBoard(Board):
    """A Linux af_key board: Debian's kernel under QEMU (TCG) running dropbear.

    QEMU runs inside the board's namespace; its user network forwards the namespace's
    address, port 22, to dropbear in the guest and gives the guest no other way out
    (restrict=on). The base initramfs is tests/qemu_board.sh's; the board's keys go in a
    second archive appended to it.
    """

    QEMU = "qemu-system-x86_64"

    def start(self) -> QemuBoard:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._net()
        initrd = self._initrd()
        kdir = ROOT / ".cache" / "qemu" / "current"
        argv = ["ip", "netns", "exec", self.ns, self.QEMU, "-accel", "tcg", "-cpu", "max",
                "-m", "256", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
                "-monitor", "none", "-serial", f"file:{self.dir / 'console.log'}",
                "-kernel", str(kdir / "vmlinuz"), "-initrd", str(initrd),
                "-append", "console=ttyS0 panic=-1 quiet", "-device", "virtio-rng-pci",
                "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:{self.address}:22-:22",
                "-device", "virtio-net-pci,netdev=n0"]  # fmt: skip
        with open(self.dir / "qemu.log", "ab") as log:
            self.sshd = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        until(self._answers, f"dropbear in the guest, via {self.address}:22", 300)
        return self

    def _initrd(self) -> Path:
        for script in ("scripts/qemu-kernel.sh", "tests/qemu_board.sh .cache/qemu"):
            subprocess.run(f"{ROOT}/{script}", shell=True, check=True, cwd=ROOT,
                           capture_output=True)  # fmt: skip
        keys = self.dir / "keys"
        (keys / "root" / ".ssh").mkdir(parents=True)
        (keys / "etc" / "dropbear").mkdir(parents=True)
        (keys / "root" / ".ssh" / "authorized_keys").write_text(keygen(self.key) + "\n")
        host = keys / "etc" / "dropbear" / "dropbear_ed25519_host_key"
        _sh("dropbearkey", "-t", "ed25519", "-f", str(host))
        pub = _sh("dropbearkey", "-y", "-f", str(host)).stdout
        line = next(w for w in pub.splitlines() if w.startswith("ssh-ed25519 ")).split()
        self.known_hosts.write_text(f"{self.address} {line[0]} {line[1]}\n")
        cpio = subprocess.run(
            "find . | sort | busybox cpio -o -H newc 2>/dev/null | gzip -1",
            shell=True, cwd=keys, capture_output=True, check=True,
        ).stdout  # fmt: skip
        out = self.dir / "initrd.gz"
        out.write_bytes((ROOT / ".cache/qemu/board-initramfs.gz").read_bytes() + cpio)
        return out

    def _answers(self) -> bool:
        if self.sshd is not None and self.sshd.poll() is not None:
            log = (self.dir / "qemu.log").read_text(errors="replace")
            raise RuntimeError(f"qemu exited {self.sshd.returncode}: {log[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection((self.address, 22), 2) as s:
            s.settimeout(5)
            return s.recv(4).startswith(b"SSH-")
        return False
