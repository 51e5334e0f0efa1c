"""KernelCounters — a guest kernel's own counters, as pfkey_relay's STAT reads them.

The STAT answer is "== PATH" sections, each followed by that file's text:
- /proc/net/xfrm_stat: XFRM's error counters (`XfrmInNoStates 0`, ...), one per line;
- /proc/slabinfo, its xfrm lines only: `xfrm_dst_cache <active_objs> ...`, the bundles
  (SLUB; the VM boots with slab_nomerge, so the cache is not merged into another);
- /proc/net/xfrm_census (a kernel with the census patch): `name value` lines;
- /sys/kernel/tracing/kprobe_profile: `policy_alloc <hits> <missed>`, the probes
  spdlab_init sets on xfrm_policy_alloc and xfrm_policy_destroy_rcu.
A section that is missing means the kernel has no such counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

XFRM_STAT = "/proc/net/xfrm_stat"
SLABINFO = "/proc/slabinfo"
CENSUS = "/proc/net/xfrm_census"
KPROBES = "/sys/kernel/tracing/kprobe_profile"


def sections(text: str) -> dict[str, list[str]]:
    """PATH → its lines."""
    out: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            cur = out.setdefault(line[3:].strip(), [])
        elif cur is not None and line.strip():
            cur.append(line)
    return out


def _pairs(lines: list[str]) -> dict[str, int]:
    got = {}
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[1].isdigit():
            got[words[0]] = int(words[1])
    return got


@dataclass
class KernelCounters:
    """One STAT answer, parsed. None: the kernel has no such counter."""

    xfrm_stat: dict[str, int] = field(default_factory=dict)
    bundles: int | None = None
    allocs: int | None = None  # policies ever allocated
    frees: int | None = None  # policies ever freed

    @classmethod
    def parse(cls, text: str) -> KernelCounters:
        s = sections(text)
        k = cls(xfrm_stat=_pairs(s.get(XFRM_STAT, [])))
        slab = _pairs(s.get(SLABINFO, []))
        k.bundles = slab.get("xfrm_dst_cache")
        census = _pairs(s.get(CENSUS, []))
        probes = _pairs(s.get(KPROBES, []))
        if "alloc" in census:
            k.allocs, k.frees = census["alloc"], census.get("free", 0)
        elif "policy_alloc" in probes:
            k.allocs, k.frees = probes["policy_alloc"], probes.get("policy_free", 0)
        return k

    @property
    def allocated(self) -> int | None:
        return None if self.allocs is None or self.frees is None else self.allocs - self.frees

    @property
    def in_errors(self) -> int | None:
        """Inbound packets XFRM dropped, every reason (the XfrmIn* counters)."""
        if not self.xfrm_stat:
            return None
        return sum(v for k, v in self.xfrm_stat.items() if k.startswith("XfrmIn"))
