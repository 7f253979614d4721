"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials.

``client`` talks to one registry (origins, auth, retries, bounds); ``source`` reads an image from
it; ``sink`` pushes one to references of it, through ``upload`` sessions; ``auth`` and
``credentials`` hold challenges, tokens and where Docker and Podman keep logins; ``speed`` is the
low-speed limit on every connection.
"""

from zeroimage.transports.registry.client import client_for
from zeroimage.transports.registry.sink import RegistrySink
from zeroimage.transports.registry.source import RegistrySource

__all__ = ["RegistrySink", "RegistrySource", "client_for"]
