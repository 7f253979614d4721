"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials.

``client`` talks to one registry, composed of layers: ``origin`` (where trust belongs),
``authflow`` and ``auth`` (an ``httpx.Auth`` flow; challenges and tokens), ``retry``, ``faults``,
``replies`` (bounded reads, error bodies) and ``transport`` with ``speed`` (the low-speed limit on
every connection, through httpcore's public interfaces). ``source`` reads an image from it;
``sink`` pushes one to references of it, through ``upload`` sessions; ``credentials`` is where
Docker and Podman keep logins.
``pool`` shares one client per registry across a build; ``referrers`` stores and lists OCI 1.1
referrers (the Referrers API, or the tag schema).

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
