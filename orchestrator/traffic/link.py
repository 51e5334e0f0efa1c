"""Where packets leave: one long-lived socket, opened in the sender's namespace.

- `RawIpLink` ("ip"): socket(AF_INET, SOCK_RAW, IPPROTO_RAW) with IP_HDRINCL. The kernel
  routes each packet. ESP and UDP-encapsulated ESP both go out this one socket.
- `PacketLink` ("packet"): AF_PACKET with PACKET_QDISC_BYPASS. The route and the next hop's
  MAC address are resolved once at open; every frame then skips the IP output path (about
  2 us a packet on this machine). A neighbour that changes later is not followed.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import threading
from typing import Protocol

from orchestrator.errors import ConfigError, InfraError
from orchestrator.traffic import netns as nsutil
from orchestrator.traffic.template import Template
from orchestrator.wait import WaitTimeout, until

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
SO_SNDBUFFORCE = 32
ETH_P_IP = 0x0800


class Link(Protocol):
    """An open socket and how to reach each flow's destination."""

    kind: str

    def frame(self, templates: list[Template]) -> list[Template]:
        """The templates as this link sends them (a link header may be prepended)."""

    def sender(self, templates: list[Template]) -> tuple:
        """(send, None) when one call fits every flow, else (sendto, per-flow address)."""

    def close(self) -> None: ...


def _sndbuf(sock: socket.socket, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, size)  # root only
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _outer_dst(t: Template, offset: int = 0) -> str:
    return socket.inet_ntoa(t.header[offset + 16 : offset + 20])


class RawIpLink:
    """IPv4 packets with our own header (IP_HDRINCL); the kernel routes them."""

    kind = "ip"

    def __init__(self, netns: str | None = None, sndbuf: int = 4 << 20):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        _sndbuf(self.sock, sndbuf)
        self._peer: tuple[str, int] | None = None  # what send() goes to, once connected

    def frame(self, templates: list[Template]) -> list[Template]:
        return templates

    def sender(self, templates: list[Template]) -> tuple:
        dsts = [(_outer_dst(t), 0) for t in templates]
        if len(set(dsts)) == 1 and self._peer in (None, dsts[0]):
            if self._peer is None:
                # Once: connecting again would move an earlier sender's packets too.
                self.sock.connect(dsts[0])
                self._peer = dsts[0]
            return self.sock.send, None
        return self.sock.sendto, dsts

    def close(self) -> None:
        self.sock.close()


@dataclasses.dataclass(frozen=True)
class NextHop:
    dev: str
    src_mac: bytes
    dst_mac: bytes

    @property
    def eth(self) -> bytes:
        return self.dst_mac + self.src_mac + ETH_P_IP.to_bytes(2, "big")


def _ip_json(netns: str | None, *args: str) -> list[dict]:
    ns = ["-n", netns] if netns else []
    out = subprocess.run(["ip", *ns, "-j", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InfraError(f"ip {' '.join(args)}: {out.stderr.strip()}", step="link")
    return json.loads(out.stdout or "[]")


def resolve(
    dst: str, netns: str | None = None, probe: socket.socket | None = None, timeout: float = 2.0
) -> NextHop:
    """The interface and MAC addresses that reach `dst` from `netns` (a name; None = ours).

    `probe`, a UDP socket in that namespace, makes the kernel resolve a missing neighbour.

    Raises:
        InfraError: no route, or the neighbour does not answer within `timeout`.
    """
    route = _ip_json(netns, "route", "get", dst)
    if not route:
        raise InfraError(f"no route to {dst}", step="link")
    dev, hop = route[0]["dev"], route[0].get("gateway", dst)
    link = _ip_json(netns, "link", "show", "dev", dev)[0]
    src_mac = bytes.fromhex(link["address"].replace(":", ""))

    def resolved() -> bytes | None:
        for n in _ip_json(netns, "neigh", "show", "to", hop, "dev", dev):
            if "lladdr" in n and not {"FAILED", "INCOMPLETE"} & set(n.get("state", [])):
                return bytes.fromhex(n["lladdr"].replace(":", ""))
        if probe is not None:
            probe.sendto(b"", (hop, 9))  # the kernel resolves the neighbour
        return None

    try:
        mac = until(resolved, f"a neighbour entry for {hop} on {dev}", timeout)
    except WaitTimeout:
        raise InfraError(f"no neighbour entry for {hop} on {dev}", step="link") from None
    return NextHop(dev, src_mac, mac)


class PacketLink:
    """Ethernet frames on AF_PACKET, queueing discipline bypassed."""

    kind = "packet"

    def __init__(self, netns: str | None = None, sndbuf: int = 4 << 20):
        if netns is not None and "/" in netns:
            raise ConfigError("the packet link needs a namespace name, not a path")
        self.netns = netns
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self._bound: tuple[str, int] | None = None  # the device send() goes out of
        self.sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        _sndbuf(self.sock, sndbuf)
        self.probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._hops: list[NextHop] = []

    def frame(self, templates: list[Template]) -> list[Template]:
        cache: dict[str, NextHop] = {}
        out = []
        self._hops = []
        for t in templates:
            dst = _outer_dst(t)
            if dst not in cache:
                cache[dst] = resolve(dst, self.netns, self.probe)
            hop = cache[dst]
            self._hops.append(hop)
            eth = hop.eth
            out.append(dataclasses.replace(t, header=eth + t.header, length=t.length + len(eth)))
        return out

    @property
    def hops(self) -> list[NextHop]:
        """The next hop of each template the last frame() call returned."""
        return list(self._hops)

    def sender(self, templates: list[Template]) -> tuple:
        if len(self._hops) != len(templates):
            raise ConfigError("PacketLink.sender() needs the templates frame() returned")
        devs = [(h.dev, 0) for h in self._hops]
        if len(set(devs)) == 1 and self._bound in (None, devs[0]):
            if self._bound is None:
                self.sock.bind(devs[0])  # once, as RawIpLink connects once
                self._bound = devs[0]
            return self.sock.send, None
        return self.sock.sendto, devs

    def close(self) -> None:
        self.sock.close()
        self.probe.close()


LINKS: dict[str, type] = {"ip": RawIpLink, "packet": PacketLink}


def open_link(kind: str = "ip", netns: str | None = None) -> Link:
    """Open a link of `kind` ("ip" or "packet"), in `netns` if given, else in ours.

    With `netns`, the sockets are opened by a short-lived thread that enters the namespace:
    the caller's thread stays where it is, the sockets belong to `netns`.

    Raises:
        ConfigError: unknown kind.
        InfraError: the namespace cannot be entered.
    """
    try:
        cls = LINKS[kind]
    except KeyError:
        raise ConfigError(f"unknown link '{kind}'. Supported are: {', '.join(LINKS)}") from None
    if netns is None:
        return cls()
    out: list = []

    def body() -> None:
        try:
            nsutil.enter(netns)
            out.append(cls(netns))
        except BaseException as e:  # handed to the caller's thread
            out.append(e)

    t = threading.Thread(target=body, name=f"netns-{netns}")
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]
