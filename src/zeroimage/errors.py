"""One exception family for everything zeroimage reports to a user.

Every error carries the one line the CLI prints and the exit code it exits with.
Code below the CLI raises these (never prints); the CLI turns them into
``zeroimage: error: <message>`` on stderr. Messages must never contain secrets.
"""

from __future__ import annotations


class ZeroimageError(Exception):
    """Base of every error zeroimage reports to its user."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ZeroimageError):
    """The command line asks for something impossible or contradictory."""

    exit_code = 2


class InvalidReference(UsageError):
    """An image reference or transport name that does not parse."""


class PlatformError(ZeroimageError):
    """A platform that is contradictory or missing from a base, or a machine whose platform
    cannot be told."""


class InvalidPlatform(UsageError, PlatformError):
    """A platform the user wrote that does not parse, or names an unknown OS, architecture or
    variant: a usage error (exit 2, from UsageError first in the MRO), still a PlatformError
    for whoever catches those."""


class InputError(ZeroimageError):
    """A local input (binary, archive, layout, file) is missing, unreadable or malformed."""


class DigestError(InputError):
    """Content did not match the digest or size it was addressed by."""


class OutputError(ZeroimageError):
    """An output could not be written (missing directory, disk full, permissions)."""


class RegistryError(ZeroimageError):
    """A registry answered with an error, or sent something malformed.

    As go-containerregistry's ``transport.Error``, it keeps what the registry said besides the
    line users read: ``status``, the HTTP status when there was one; ``codes``, the error codes of
    the registry's JSON error body (``MANIFEST_BLOB_UNKNOWN``, ``DENIED``, …) in the order sent;
    ``repository``, the repository the request was for, when known."""

    def __init__(
        self, message: str, *, status: int | None = None, codes: tuple[str, ...] = (), repository: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes
        self.repository = repository


class NotFoundError(RegistryError):
    """A repository, tag, manifest or blob does not exist."""


class AuthError(RegistryError):
    """Authentication failed or access was denied."""


class NetworkError(RegistryError):
    """A registry could not be reached, or kept failing after retries."""


class TLSError(NetworkError):
    """TLS verification failed."""


class CredentialError(ZeroimageError):
    """Docker/Podman credentials could not be read, stored or erased (config file or helper)."""


class Interrupted(ZeroimageError):
    """The build was stopped by SIGINT (130) or SIGTERM (143)."""

    def __init__(self, signum: int) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}")
        self.exit_code = 128 + signum


class RunCheckError(ZeroimageError):
    """With --strict: the entrypoint could not start in the image (loader, library or interpreter missing)."""


class SignatureError(ZeroimageError):
    """A signature, a Sigstore bundle or an attestation that does not verify: made by another key,
    speaking of another image, altered, or malformed. Exit 1, with the one line saying why."""
