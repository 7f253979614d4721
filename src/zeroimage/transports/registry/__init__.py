"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials.

``client`` talks to one registry, composed of layers: ``origin`` (where trust belongs),
``authflow`` and ``auth`` (an ``httpx.Auth`` flow; challenges and tokens), ``retry``, ``faults``,
``replies`` (bounded reads, error bodies) and ``transport`` with ``speed`` (the low-speed limit on
every connection, through httpcore's public interfaces). ``source`` reads an image from it;
``sink`` pushes one to references of it, through ``upload`` sessions; ``credentials`` is where
Docker and Podman keep logins.
"""

from zeroimage.transports.registry.client import client_for
from zeroimage.transports.registry.sink import RegistrySink
from zeroimage.transports.registry.source import RegistrySource

__all__ = ["RegistrySink", "RegistrySource", "client_for"]
