"""One registry client per registry for a whole build, shared by its sources and sinks.

A push's client is then warm (its connection open, its token fetched) for the images under the
tags it pushes to and for ``--cache-from`` images of the same registry, as go-containerregistry's
``remote.Reuse`` shares a pusher's transport. Clients are made on first use — a build that reads
nothing from a registry makes none — and closed with the pool.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroimage.transports.registry.client import RegistryClient


class ClientPool:
    def __init__(self) -> None:
        self._clients: dict[tuple[str, tuple[str, ...]], RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, registry: str, insecure_registries: tuple[str, ...] = ()) -> RegistryClient:
        """The client of ``registry`` (as references name it), made on first use."""
        from zeroimage.transports.registry.client import client_for

        key = (registry, insecure_registries)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = client_for(registry, insecure_registries)
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
