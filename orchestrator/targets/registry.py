"""The one driver registry: the rest of spdlab never branches on a target's kind."""

from __future__ import annotations

import importlib

from orchestrator.errors import ConfigError
from orchestrator.kernel import conf as kernel_conf

# Declared, not discovered: every kind's module, in one place.
KIND_MODULES: dict[str, str] = {
    "docker": "orchestrator.targets.docker",
    "netns": "orchestrator.targets.netns",
    "qemu": "orchestrator.targets.qemu",
    "ssh": "orchestrator.targets.ssh",
}

# Kinds that do not run a firmware build from builds.conf, and the builds they run
# instead (a real kernel is its own build). Every other kind runs firmware builds.
KIND_BUILDS: dict[str, tuple[str, ...]] = {
    "qemu": ("linux-af_key", *kernel_conf.known_names()),
}

# Kinds that run firmware builds and these builds as well (`kernel`: the board's own).
KIND_EXTRA_BUILDS: dict[str, tuple[str, ...]] = {
    "ssh": ("kernel",),
}

_DRIVERS: dict[str, type] = {}


def register_kind(kind: str):
    """Class decorator: `@register_kind("netns")` makes the class the driver for that kind.

    Raises:
        ValueError: the kind already has a driver.
    """

    def deco(cls: type) -> type:
        if kind in _DRIVERS and _DRIVERS[kind] is not cls:
            raise ValueError(f"kind '{kind}' is already registered by {_DRIVERS[kind].__name__}")
        cls.kind = kind
        _DRIVERS[kind] = cls
        return cls

    return deco


def supported_kinds() -> tuple[str, ...]:
    """Kinds a lab file may use (without importing the drivers)."""
    return tuple(sorted(KIND_MODULES))


def driver_class(kind: str) -> type:
    """The driver class for `kind`.

    Raises:
        ConfigError: unknown kind, listing the supported ones.
    """
    if kind not in KIND_MODULES:
        raise ConfigError(
            f"unknown kind '{kind}'. Supported kinds are: {', '.join(supported_kinds())}"
        )
    if kind not in _DRIVERS:
        importlib.import_module(KIND_MODULES[kind])
    return _DRIVERS[kind]
