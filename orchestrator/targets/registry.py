"""The one driver registry: the rest of spdlab never branches on a target's kind."""

from __future__ import annotations

import importlib

from orchestrator.errors import ConfigError
from orchestrator.kinds import (  # noqa: F401  (declared there; the registry's public names)
    KIND_BUILDS,
    KIND_EXTRA_BUILDS,
    KIND_GUEST_FLOWS,
    KIND_MODULES,
    KIND_TICK,
    KIND_UNOBSERVABLE,
    in_use,
    supported_kinds,
    tick_meaning,
    unobservable,
)

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
