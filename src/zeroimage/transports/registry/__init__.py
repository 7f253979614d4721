"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials.

``client`` talks to one registry (origins, auth, retries, bounds); ``source`` reads an image from
it; ``sink`` pushes one to references of it, through ``upload`` sessions; ``auth`` and
``credentials`` hold challenges, tokens and where Docker and Podman keep logins; ``speed`` is the
low-speed limit on every connection; ``pool`` shares one client per registry across a build.

The names below load on first use: a build that never talks to a registry never imports the
HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroimage.transports.registry.client import client_for
    from zeroimage.transports.registry.sink import RegistrySink
    from zeroimage.transports.registry.source import RegistrySource

__all__ = ["RegistrySink", "RegistrySource", "client_for"]

_LAZY = {
    "client_for": "zeroimage.transports.registry.client",
    "RegistrySink": "zeroimage.transports.registry.sink",
    "RegistrySource": "zeroimage.transports.registry.source",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
