"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials."""

from zeroimage.transports.registry.transport import RegistrySink, RegistrySource, client_for

__all__ = ["RegistrySink", "RegistrySource", "client_for"]
