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

# What a kind cannot observe, measure → why. The engine records these measures as not
# observable (never 0) and `spdlab validate` rejects an expectation on one of them.
_FREES = "SPDDUMP polling cannot see frees: a deleted policy leaves the dump either way"
KIND_UNOBSERVABLE: dict[str, dict[str, str]] = {
    "qemu": {
        "premature_frees": _FREES,
        "use_after_free": _FREES,
        "free_ticks": _FREES,
        "timer_unlinked_during_delete": "SPDDUMP polling cannot tell who unlinked a policy",
        "walked_per_lookup": "PF_KEY shows no SPD lookups",
        "esp_ok": "PF_KEY shows no ESP counters",
        "esp_drop": "PF_KEY shows no ESP counters",
    },
}

# What one tick is on each kind; the default is netkeyd's timer.
KIND_TICK: dict[str, str] = {"qemu": "one SPDDUMP observation"}
DEFAULT_TICK = "one netkeyd timer tick"


def supported_kinds() -> tuple[str, ...]:
    """Kinds a lab file may use (without importing the drivers)."""
    return tuple(sorted(KIND_MODULES))


def unobservable(kind: str) -> dict[str, str]:
    """Measures a kind's targets cannot show, each with the reason."""
    return KIND_UNOBSERVABLE.get(kind, {})


def tick_meaning(kind: str) -> str:
    return KIND_TICK.get(kind, DEFAULT_TICK)
