"""Where trust belongs: an origin (scheme, host, port), and the rules one registry's origin keeps.

* HTTPS with verification first. Plain HTTP only for loopback hosts and ``--insecure-registry``
  hosts, and only when the server does not speak TLS at all: a certificate error is never a
  reason to fall back (:meth:`RegistryOrigin.plain_http_allowed`; the client's ping decides).
* Credentials go to the registry's own origin, and to the token realm the registry's own challenge
  names; nowhere else. ``Authorization`` is sent only to the registry's scheme, host and port
  (:meth:`RegistryOrigin.is_registry`). A challenge is learnt only from the registry's origin: a
  401 from any other host (a redirect target, an upload ``Location`` elsewhere, a storage host) is
  an error that names that host (:meth:`RegistryOrigin.foreign_challenge`), and never makes us
  fetch a token or send Basic credentials.
* A registry reached over HTTPS that points anywhere over plain HTTP — a redirect or an upload
  ``Location``, same host or not — is refused: nothing travels in clear text from a registry
  reached over TLS. A token realm over plain HTTP is taken only from a plain-HTTP registry
  (:meth:`RegistryOrigin.check_target`, :meth:`RegistryOrigin.check_realm`).
* Only ``http`` and ``https`` URLs are followed.

TLS trust is per host too: the system's CAs plus Docker's and Podman's ``certs.d/<host>``
(:func:`ssl_context_for`). Nothing here sends a request.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from zeroimage.errors import AuthError, RegistryError


@dataclass(frozen=True)
class Origin:
    """Where trust belongs: a scheme, a host and a port (the scheme's default when not given)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin | None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            return None
        default = {"http": 80, "https": 443}.get(parts.scheme)
        if default is None or not parts.hostname:
            return None
        return cls(parts.scheme, parts.hostname, port or default)


def is_loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """A URL for a message: no user information, no query (it may hold a signature or a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        netloc = host
    return f"{parts.scheme}://{netloc}{parts.path}"[:200] + ("?…" if parts.query else "")


class RegistryOrigin:
    """The origin rules of one registry: ``host`` (where requests go, ``registry-1.docker.io``),
    named ``registry`` in messages (``docker.io``). Its ``scheme`` is learnt once, by the
    client's ping; until then no URL is the registry's."""

    def __init__(self, registry: str, host: str, insecure_registries: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.host = host
        self.insecure_registries = insecure_registries
        self.scheme: str | None = None

    def plain_http_allowed(self) -> bool:
        """Whether plain HTTP may be tried, when the registry does not speak TLS at all."""
        name = urlsplit(f"//{self.host}").hostname or self.host
        return is_loopback(self.host) or self.host in self.insecure_registries or name in self.insecure_registries

    def url(self) -> str:
        """The registry's base URL (its scheme must be known)."""
        assert self.scheme is not None, "the registry's scheme is learnt by a ping first"
        return f"{self.scheme}://{self.host}"

    def is_registry(self, url: str) -> bool:
        """True when ``url`` is on the registry's own origin (scheme, host and port)."""
        return self.scheme is not None and Origin.of(url) == Origin.of(self.url())

    def check_target(self, url: str, verb: str) -> None:
        """Refuse a URL the registry gave that is not http(s), or that leaves TLS for plain HTTP."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https") or Origin.of(url) is None:
            raise RegistryError(f"{self.registry} {verb} {redact_url(url)}: only http(s) URLs are followed")
        if scheme == "http" and self.scheme == "https":
            raise RegistryError(
                f"{self.registry} is reached over HTTPS but {verb} plain HTTP ({urlsplit(url).netloc}); "
                "refusing to send credentials or data in clear text"
            )

    def check_realm(self, realm: str) -> None:
        """Refuse a token realm that is not http(s), or is plain HTTP named by a registry reached over TLS."""
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or Origin.of(realm) is None:
            raise AuthError(f"{self.registry} asked for a token from an invalid realm")
        if parts.scheme == "http" and self.scheme != "http":
            raise AuthError(
                f"{self.registry} is reached over HTTPS but asked for a token over plain HTTP from "
                f"{parts.netloc}; refusing"
            )

    def foreign_challenge(self, url: str) -> AuthError:
        """The error for a 401 from ``url``, which is not the registry's origin."""
        return AuthError(
            f"{urlsplit(url).netloc} asked for credentials (HTTP 401), but it is not the registry "
            f"{self.registry}: credentials are sent to the registry only",
            status=401,
        )


def _cert_dirs(host: str) -> list[str]:
    home = os.path.expanduser("~")
    dirs = [
        f"/etc/docker/certs.d/{host}",
        f"/etc/containers/certs.d/{host}",
        f"{home}/.config/containers/certs.d/{host}",
        f"{home}/.docker/certs.d/{host}",
    ]
    if os.environ.get("DOCKER_CERT_PATH"):
        dirs.append(os.path.join(os.environ["DOCKER_CERT_PATH"], host))
    return [d for d in dirs if os.path.isdir(d)]


def ssl_context_for(host: str) -> ssl.SSLContext:
    """System CAs (honouring SSL_CERT_FILE/SSL_CERT_DIR) plus Docker/Podman ``certs.d/<host>``."""
    context = ssl.create_default_context()
    for directory in _cert_dirs(host):
        for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
            context.load_verify_locations(cafile=ca)
        for cert in sorted(glob.glob(os.path.join(directory, "*.cert"))):
            key = cert[: -len(".cert")] + ".key"
            if os.path.exists(key):
                context.load_cert_chain(cert, key)
    return context
