"""Target kinds as data: which exist, what builds they run, what they cannot observe.

Declared, not discovered, in one place below both the lab model and the drivers: the
lab validates against it without importing a driver, and targets/registry.py maps each
kind to its driver class.
"""

from __future__ import annotations

from orchestrator.kernel import conf as kernel_conf

# Declared, not discovered: every kind's module, in one place.
KIND_MODULES: dict[str, str] = {
    "docker": "orchestrator.targets.docker",
    "netns": "orchestrator.targets.netns",
    "qemu": "orchestrator.targets.qemu",
    "ssh": "orchestrator.targets.ssh",
}

# Kinds a multi-host lab may place on a lab host (`host:`); the rest run on this machine.
LAB_HOST_KINDS: tuple[str, ...] = ("netns",)

# Kinds that do not run a firmware build from builds.conf, and the builds they run
# instead (a real kernel is its own build). Every other kind runs firmware builds.
KIND_BUILDS: dict[str, tuple[str, ...]] = {
    "qemu": ("linux-af_key", *kernel_conf.known_names()),
}

# Kinds that run firmware builds and these builds as well (`kernel`: the board's own).
KIND_EXTRA_BUILDS: dict[str, tuple[str, ...]] = {
    "ssh": ("kernel",),
}

# What a real kernel's target (qemu, an ssh board's `kernel`) cannot observe, measure →
# why: its stats are SPDDUMP polled. The engine records these measures as not observable
# (never 0) and `spdlab validate` rejects an expectation on one of them.
_FREES = "SPDDUMP polling cannot see frees: a deleted policy leaves the dump either way"
POLLED_UNOBSERVABLE: dict[str, str] = {
    "premature_frees": _FREES,
    "use_after_free": _FREES,
    "free_ticks": _FREES,
    "timer_unlinked_during_delete": "SPDDUMP polling cannot tell who unlinked a policy",
    "walked_per_lookup": "PF_KEY shows no SPD lookups",
    "esp_ok": "PF_KEY shows no ESP counters",
    "esp_drop": "PF_KEY shows no ESP counters",
}
# A qemu guest also sends its kernel's own counters each observation (targets/kstat.py):
# ESP from its SAs and xfrm_stat, frees from kprobes where the kernel has kprobe events.
_NO_PREMATURE = ("Linux frees a policy only at its last reference, and no kernel counter "
                 "counts a free while referenced")  # fmt: skip
QEMU_UNOBSERVABLE: dict[str, str] = {
    "premature_frees": _NO_PREMATURE,
    "use_after_free": _NO_PREMATURE,
    "timer_unlinked_during_delete": POLLED_UNOBSERVABLE["timer_unlinked_during_delete"],
    "walked_per_lookup": "Linux counts no SPD lookups",
}
_UNCOUNTED_FREES = {
    "free_ticks": "this kernel has neither kprobe events nor the xfrm-census patch: "
    "its frees are not counted"
}
KIND_UNOBSERVABLE: dict[str, dict[str, str]] = {"qemu": QEMU_UNOBSERVABLE}
# The builds of a kind whose frees the kernel counts: kprobes on Debian's kernel, the
# xfrm-census patch first in every build of kernels/builds.conf.
KIND_COUNTED_FREES: dict[str, tuple[str, ...]] = {
    "qemu": ("linux-af_key", *kernel_conf.known_names())
}

# What a kind cannot observe under one delete mode only, (kind, mode) → measure → why.
KIND_MODE_UNOBSERVABLE: dict[tuple[str, str], dict[str, str]] = {
    ("qemu", "spdupdate"): {
        "removed_by_delete": "Linux replaces a policy in place, under its old index: "
        "SPDDUMP cannot tell the replaced policy from its replacement",
    },
}

# What one tick is on each kind; the default is netkeyd's timer.
POLLED_TICK = "one SPDDUMP observation"
KIND_TICK: dict[str, str] = {"qemu": POLLED_TICK}
DEFAULT_TICK = "one netkeyd timer tick"


# How SPDDUMP shows a policy in use. netkeyd's refcnt counts each flow's cached reference
# (>= 2: the table's and a flow's). Linux holds an inbound policy only for the length of a
# check, but stamps its CURRENT lifetime's usetime on every inbound check
# (__xfrm_policy_check) and outbound bundle lookup (xfrm_lookup_with_ifid); an outbound
# policy is also held by its flow's bundle (refcnt >= 2).
IN_USE_BY_REFCNT = "refcnt >= 2 (a flow's cached reference)"
IN_USE_BY_USETIME = "usetime set (a packet checked against it; outbound: and refcnt >= 2)"
KIND_IN_USE: dict[str, str] = {"qemu": IN_USE_BY_USETIME}
DIR_OUT = 2  # sadb_x_policy_dir


# Kinds whose gateway sends flows of its own, one per outbound policy (spdlab_flows in a
# qemu guest): with traffic, their scenario mirrors each inbound policy with an outbound
# one, held by the bundle of the guest's flow (Linux holds outbound policies that way).
KIND_GUEST_FLOWS: tuple[str, ...] = ("qemu",)


def in_use(kind: str, refcnt: int, usetime: int, dir: int = 0) -> bool:
    """One SPDDUMP entry shows its policy in use, as this kind's kernel shows it."""
    if KIND_IN_USE.get(kind) == IN_USE_BY_USETIME:
        return usetime > 0 and (dir != DIR_OUT or refcnt >= 2)
    return refcnt >= 2


def runs_netkeyd(kind: str, build: str) -> bool:
    """A firmware build's netkeyd, whose virtual clock spdlab can drive (admin `tick`);
    a real kernel (qemu, an ssh board's `kernel`) keeps its own time."""
    return kind not in KIND_BUILDS and build not in KIND_EXTRA_BUILDS.get(kind, ())


def supported_kinds() -> tuple[str, ...]:
    """Kinds a lab file may use (without importing the drivers)."""
    return tuple(sorted(KIND_MODULES))


def unobservable(kind: str, build: str = "", mode: str | None = None) -> dict[str, str]:
    """Measures a target of this kind and build cannot show (under that delete mode), each
    with the reason."""
    if runs_netkeyd(kind, build):
        base: dict[str, str] = {}
    elif kind in KIND_UNOBSERVABLE:
        counted = build in KIND_COUNTED_FREES.get(kind, ())
        base = {**KIND_UNOBSERVABLE[kind], **({} if counted else _UNCOUNTED_FREES)}
    else:
        base = POLLED_UNOBSERVABLE
    return {**base, **KIND_MODE_UNOBSERVABLE.get((kind, mode or ""), {})}


def tick_meaning(kind: str, build: str = "") -> str:
    return DEFAULT_TICK if runs_netkeyd(kind, build) else POLLED_TICK
