"""zeroimage: container images for single-binary programs, without Docker.

    import zeroimage

    result = zeroimage.build(["./app"], base="gcr.io/distroless/static", push=["registry.example.com/app:v1"])
    result.digest                          # "sha256:…" of the image (or index)
    zeroimage.inspect("oci-archive:app.tar")

The library prints nothing and never exits; every failure is a :class:`ZeroimageError`. The
heavier parts load on first use, so that importing zeroimage (and ``zeroimage --help``) is fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zeroimage.errors import (
    AuthError,
    CredentialError,
    DigestError,
    InputError,
    Interrupted,
    InvalidPlatform,
    InvalidReference,
    NetworkError,
    NotFoundError,
    OutputError,
    PlatformError,
    RegistryError,
    RunCheckError,
    SignatureError,
    TLSError,
    UsageError,
    ZeroimageError,
)

if TYPE_CHECKING:
    from zeroimage.api import build, check_auth, inspect, login, logout, raw_manifest, verify
    from zeroimage.describe import InspectedImage, Inspection
    from zeroimage.image import WriteResult
    from zeroimage.oci import Descriptor, Platform
    from zeroimage.pipeline import BuildResult, LayerResult, PlatformResult
    from zeroimage.progress import CallbackReporter, Event, NullReporter, Reporter, Task
    from zeroimage.reference import Reference
    from zeroimage.signing.verification import Attachment, Verification

__version__ = "0.1.0"

_LAZY = {
    "build": "zeroimage.api",
    "inspect": "zeroimage.api",
    "raw_manifest": "zeroimage.api",
    "login": "zeroimage.api",
    "logout": "zeroimage.api",
    "check_auth": "zeroimage.api",
    "verify": "zeroimage.api",
    "Verification": "zeroimage.signing.verification",
    "Attachment": "zeroimage.signing.verification",
    "Inspection": "zeroimage.describe",
    "InspectedImage": "zeroimage.describe",
    "Descriptor": "zeroimage.oci",
    "Platform": "zeroimage.oci",
    "Reference": "zeroimage.reference",
    "BuildResult": "zeroimage.pipeline",
    "LayerResult": "zeroimage.pipeline",
    "PlatformResult": "zeroimage.pipeline",
    "WriteResult": "zeroimage.image",
    "CallbackReporter": "zeroimage.progress",
    "Event": "zeroimage.progress",
    "NullReporter": "zeroimage.progress",
    "Reporter": "zeroimage.progress",
    "Task": "zeroimage.progress",
}

__all__ = [
    "Attachment",
    "AuthError",
    "BuildResult",
    "CallbackReporter",
    "CredentialError",
    "Descriptor",
    "DigestError",
    "Event",
    "InputError",
    "InspectedImage",
    "Inspection",
    "Interrupted",
    "InvalidPlatform",
    "InvalidReference",
    "LayerResult",
    "NetworkError",
    "NotFoundError",
    "NullReporter",
    "OutputError",
    "PlatformError",
    "Platform",
    "PlatformResult",
    "Reference",
    "RegistryError",
    "Reporter",
    "RunCheckError",
    "SignatureError",
    "TLSError",
    "Task",
    "UsageError",
    "Verification",
    "WriteResult",
    "ZeroimageError",
    "__version__",
    "build",
    "check_auth",
    "inspect",
    "login",
    "logout",
    "raw_manifest",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zeroimage' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
