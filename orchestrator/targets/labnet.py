"""LabNetwork — the lab's switch (a bridge in its own namespace) and the traffic host.

Every kind whose gateways plug into the switch shares it: the names derive from the run
alone, so when a lab mixes netns and docker targets both drivers record the same resources
(state.json keeps one copy) and the idempotent lab.sh creates the network once.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InfraError
from orchestrator.targets.ansible import PLAYBOOKS

if TYPE_CHECKING:
    from orchestrator.lab.resolve import ResolvedLab

BRIDGE = "br0"
LAB_SH = PLAYBOOKS / "roles" / "netns_gateway" / "files" / "lab.sh"


def names_free(short: str) -> bool:
    """No namespace or link here carries the names a run with this short id makes (say,
    left by a run whose folder was removed): its bridge and veths would be reused."""
    found = []
    for argv in (["ip", "netns", "list"], ["ip", "-o", "link"]):
        try:
            found.append(subprocess.run(argv, capture_output=True, text=True).stdout)
        except OSError:
            return True  # no iproute2: no lab switch either
    netns, links = found
    if any(n.startswith(f"spdlab-{short}-") for n in netns.split()):
        return False
    return not any(f": s{short}" in line for line in links.splitlines())


@dataclass(frozen=True)
class LabNetwork:
    """The switch namespace, its bridge and the traffic host of one run.

    Args:
        short: the run's four hex digits (RunDir.short).
        host: the lab host it is on; None: this machine. Each host has its own network,
            named after the host too, so hosts that share a kernel never collide.
    """

    short: str
    host: str | None = None

    @property
    def _prefix(self) -> str:
        return f"spdlab-{self.short}-" + (f"{self.host}-" if self.host else "")

    @property
    def switch_ns(self) -> str:
        return f"{self._prefix}sw"

    @property
    def traffic_ns(self) -> str:
        return f"{self._prefix}th"

    @property
    def traffic_veth(self) -> str:
        return f"s{self.short}th"

    def resources(self) -> list[dict[str, Any]]:
        """What the network is made of, for state.json (record before `up`)."""
        return [
            {"type": "netns", "name": self.switch_ns},
            {"type": "link", "name": BRIDGE, "netns": self.switch_ns, "what": "bridge"},
            {"type": "netns", "name": self.traffic_ns},
            {"type": "link", "name": self.traffic_veth, "netns": self.switch_ns, "what": "veth"},
        ]

    def env(self, lab: ResolvedLab) -> dict[str, str]:
        """lab.sh's environment (the same variables the netns role templates)."""
        return {
            "SW": self.switch_ns,
            "BRIDGE": BRIDGE,
            "TH": self.traffic_ns,
            "TH_VETH": self.traffic_veth,
            "TH_ADDR": str(lab.traffic_host.address),
            "PLEN": str(lab.range.prefixlen),
        }

    def up(self, lab: ResolvedLab, base: Mapping[str, str] | None = None) -> None:
        """Create the switch and the traffic host (idempotent), without ansible.

        Args:
            lab: the resolved lab.
            base: lab.sh's environment before the network's variables (default: ours).

        Raises:
            InfraError: lab.sh failed.
        """
        env = {**(os.environ if base is None else base), **self.env(lab)}
        r = subprocess.run(["sh", str(LAB_SH), "up"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise InfraError(f"lab network: {r.stderr.strip() or r.returncode}", step="network")


class OnTheSwitch:
    """For a kind whose targets sit on the lab's switch: its network, and traffic to its
    targets comes from the switch's traffic host. Put before TargetDriver in the bases."""

    run: Any

    @property
    def network(self) -> LabNetwork:
        """The lab's switch and traffic host, shared with other kinds on the switch."""
        return LabNetwork(self.run.short)

    def traffic_netns(self) -> str:
        return self.network.traffic_ns
