"""The registry transport (``docker://``): the OCI Distribution API, auth and credentials."""

from zeroimage.transports.registry.transport import RegistrySink, RegistrySource

__all__ = ["RegistrySink", "RegistrySource"]
