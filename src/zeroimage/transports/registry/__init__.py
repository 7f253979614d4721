"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials."""

from zeroimage.transports.registry.client import client_for
from zeroimage.transports.registry.transport import RegistrySink, RegistrySource

__all__ = ["RegistrySink", "RegistrySource", "client_for"]
