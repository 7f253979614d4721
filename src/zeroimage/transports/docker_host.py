"""Where the Docker daemon is, and how to speak to it, found as the Docker CLI finds it.

The CLI's order (docker/cli ``cli/command/cli.go``, ``cli/flags/options.go``):

1. ``DOCKER_HOST`` set (not empty): that host, with TLS when ``DOCKER_TLS_VERIFY`` or
   ``DOCKER_TLS`` is set to anything at all (``DOCKER_TLS_VERIFY=0`` verifies too, as in the CLI).
   The files come from ``DOCKER_CERT_PATH``, else the Docker config folder (``DOCKER_CONFIG``,
   else ``~/.docker``; none without a ``HOME``, as for credentials): ``ca.pem`` must exist;
   ``cert.pem`` and ``key.pem``, when both exist, are the client's certificate. ``DOCKER_TLS``
   alone is TLS *without* verifying the daemon's certificate — the CLI's meaning, which
   :attr:`DaemonTLS.verify` says.
2. Else the context ``DOCKER_CONTEXT`` names, else the ``currentContext`` of ``config.json``
   (what ``docker context use`` sets): its endpoint in ``contexts/meta/<sha256 of the
   name>/meta.json`` of the config folder, its TLS files in ``contexts/tls/<sha256>/docker/``.
   A context has TLS when it has such files or says ``SkipTLSVerify``.
3. Else (or for the context ``default``) as 1. without ``DOCKER_HOST``: the default socket
   ``/var/run/docker.sock``, or ``tcp://localhost:2376`` when TLS is asked for.

Hosts take the CLI's forms: ``unix:///path``, ``tcp://host[:port][/base]`` (port 2375 when
missing, TLS or not, as in the CLI), and without a scheme a path (``/…``, ``./…``: a socket) or
``host:port``. A host name beyond ASCII is reached by its IDNA form (``xn--…``); a host that is
neither a host name nor an IP address is refused, as the CLI refuses it. ``ssh://``,
``npipe://`` and ``fd://`` are refused with what to do instead, and so are ``http(s)://`` (which
the CLI refuses too). TLS is never used on a unix socket (the CLI does
not either), and plain HTTP is never used when TLS was asked for.

Nothing here talks to the daemon; :mod:`.docker_client` does.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zeroimage.errors import InputError, UsageError
from zeroimage.layers.entries import shown
from zeroimage.oci.descriptor import loads
from zeroimage.transports.registry.credentials import docker_config_dir
from zeroimage.untrusted import read_regular

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_TCP_PORT = 2375
DEFAULT_TLS_HOST = "tcp://localhost:2376"
#: The largest PEM file (CA bundle, certificate, key) read.
MAX_PEM = 1 << 20
#: The largest config.json or context meta.json read.
MAX_CONFIG = 4 << 20

CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"
#: A host name's characters (as Go's url.Parse takes them, ``_`` included).
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)

_SSH_ADVICE = (
    "zeroimage does not reach Docker over ssh; forward the daemon's socket "
    "(ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock USER@HOST) and set "
    "DOCKER_HOST=unix:///tmp/docker.sock, or pipe the image: "
    "zeroimage build -o docker-archive:- … | docker load"
)


@dataclass(frozen=True)
class DaemonTLS:
    """The TLS a daemon is spoken to with: the CA to verify it by (None: the system's CAs),
    the client's certificate and key (both or neither), and whether it is verified at all."""

    ca: Path | None
    cert: Path | None
    key: Path | None
    verify: bool
    #: Where these came from, for messages (``DOCKER_CERT_PATH=/x``, ``the Docker context 'ci' (…)``).
    origin: str

    def ssl_context(self) -> ssl.SSLContext:
        """A client context as the CLI's (go-connections ``tlsconfig.ClientDefault``: TLS 1.2 or
        newer); InputError naming a file that is missing, unreadable or not what it should be."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is not None:
            pem = _read_pem(self.ca, "the Docker daemon's CA")
            try:
                context.load_verify_locations(cadata=pem.decode("ascii"))
            except (ssl.SSLError, ValueError, UnicodeDecodeError):
                raise InputError(f"{self.ca} holds no PEM certificate (the Docker daemon's CA)") from None
        else:
            context.load_default_certs()
        if self.cert is not None and self.key is not None:
            _read_pem(self.cert, "the Docker client certificate")
            key = _read_pem(self.key, "the Docker client key")
            if b"ENCRYPTED" in key:
                raise InputError(
                    f"{self.key} is an encrypted private key, which Docker no longer supports either: "
                    "decrypt it (openssl pkey -in key.pem -out key.pem)"
                )
            try:
                # A password that never matches: an encrypted key must never prompt on a terminal.
                context.load_cert_chain(self.cert, self.key, password=lambda: b"\x00")
            except (ssl.SSLError, ValueError, OSError):
                raise InputError(
                    f"{self.cert} and {self.key} are not a certificate and its private key (PEM)"
                ) from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class DockerEndpoint:
    """A daemon's address: a unix socket (``socket``) or a TCP ``host`` and ``port``, an API
    path prefix (``base``, usually empty), and TLS (TCP only)."""

    #: The host as the CLI writes it: ``unix:///var/run/docker.sock``, ``tcp://127.0.0.1:2376``.
    host: str
    socket: str | None = None
    hostname: str = ""
    port: int = 0
    base: str = ""
    tls: DaemonTLS | None = None
    #: The context it belongs to, when one chose it.
    context: str | None = None

    @property
    def url(self) -> str:
        """The URL requests are made against (``http://docker`` for a socket)."""
        if self.socket is not None:
            return f"http://docker{self.base}"
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{self.base}"

    def __str__(self) -> str:
        """What messages call it: its host, and the context that chose it."""
        return self.host if self.context is None else f"{self.host} (Docker context {self.context!r})"


def resolve_endpoint(env: Mapping[str, str]) -> DockerEndpoint:
    """The daemon the Docker CLI would speak to with this environment (see the module)."""
    config_dir = docker_config_dir(env)
    if env.get("DOCKER_HOST", ""):
        return _from_environment(env, config_dir)
    name, chosen_by = _context_name(env, config_dir)
    if name == "default":
        return _from_environment(env, config_dir)
    return _from_context(name, chosen_by, config_dir)


# -- hosts -----------------------------------------------------------------------------------------


def parse_host(value: str, default_to_tls: bool, context: str | None = None) -> DockerEndpoint:
    """A host in the CLI's forms (``opts.ParseHost``), without TLS, of the ``context`` that
    names it (None: ``DOCKER_HOST``); UsageError for any other, naming where the value came from."""
    quoted = shown(value, 200, quoted=True)
    setting = f"DOCKER_HOST={quoted}" if context is None else f"the Docker context {context!r} (host {quoted})"
    text = value.strip()
    if not text:
        text = DEFAULT_TLS_HOST if default_to_tls else f"unix://{DEFAULT_SOCKET}"
    scheme, sep, rest = text.partition("://")
    if not sep:  # the CLI's newest reading of a host without a scheme
        scheme, rest = ("unix" if text.startswith(("/", "./")) else "tcp"), text
    scheme = scheme.lower()
    if scheme == "unix":
        path = rest or DEFAULT_SOCKET
        if "://" in path or not path.isprintable():  # (a NUL or a lone surrogate, from a context's JSON)
            raise UsageError(f"{setting} is not a unix socket path")
        return DockerEndpoint(host=f"unix://{path}", socket=path, context=context)
    if scheme == "tcp":
        return _parse_tcp(rest, setting, context)
    if scheme == "ssh":
        raise UsageError(f"{setting}: {_SSH_ADVICE}")
    if scheme == "npipe":
        raise UsageError(f"{setting}: named pipes are Docker's on Windows; use tcp://HOST:PORT there")
    if scheme == "fd":
        raise UsageError(
            f"{setting}: fd:// is for dockerd's socket activation, not for clients; use the daemon's unix:///path"
        )
    if scheme in ("http", "https"):
        raise UsageError(f"{setting}: write tcp://HOST:PORT, with DOCKER_TLS_VERIFY=1 for TLS, as for the Docker CLI")
    raise UsageError(f"{setting} is not a Docker host: use unix:///PATH or tcp://HOST:PORT")


def _parse_tcp(rest: str, setting: str, context: str | None) -> DockerEndpoint:
    if not rest:
        rest = f"localhost:{DEFAULT_TCP_PORT}"
    if "://" in rest or not rest.isprintable():  # (urlsplit would drop tabs and newlines silently)
        raise UsageError(f"{setting} is not tcp://HOST:PORT")
    try:
        parts = urlsplit(f"tcp://{rest}")
        hostname = _host_name(parts.hostname or "localhost")
    except (ValueError, UnicodeError):  # a bracket left open, no IP in brackets, an empty or long label
        raise UsageError(f"{setting}: the host is not a host name or an IP address") from None
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"{setting}: the port is not a number from 0 to 65535") from None
    if parts.query or parts.fragment or parts.username is not None:
        raise UsageError(f"{setting} is not tcp://HOST:PORT")
    port = DEFAULT_TCP_PORT if port is None else port
    base = parts.path.rstrip("/")
    shown_host = f"[{hostname}]" if ":" in hostname else hostname
    return DockerEndpoint(
        host=f"tcp://{shown_host}:{port}{base}", hostname=hostname, port=port, base=base, context=context
    )


def _host_name(name: str) -> str:
    """A host as it is connected to: an IP address, or a name in its ASCII (IDNA) form; ValueError
    or UnicodeError for anything else (a label empty or longer than 63, a character no name has)."""
    if ":" in name:
        ipaddress.ip_address(name)
        return name
    ascii_name = name.encode("idna").decode("ascii")
    if not _HOST_NAME.fullmatch(ascii_name):
        raise ValueError(name)
    return ascii_name


# -- the environment (the "default" context) ------------------------------------------------------


def _from_environment(env: Mapping[str, str], config_dir: Path | None) -> DockerEndpoint:
    verify = env.get("DOCKER_TLS_VERIFY", "") != ""
    use_tls = verify or env.get("DOCKER_TLS", "") != ""
    endpoint = parse_host(env.get("DOCKER_HOST", ""), use_tls)
    if not use_tls or endpoint.socket is not None:
        return endpoint
    asked = "DOCKER_TLS_VERIFY" if verify else "DOCKER_TLS"
    if given := env.get("DOCKER_CERT_PATH", ""):
        cert_path, origin = Path(given), f"DOCKER_CERT_PATH={given}"
    elif config_dir is not None:
        cert_path, origin = config_dir, f"the Docker config folder {config_dir}"
    else:
        raise InputError(
            f"{asked} is set, but there is no Docker config folder to find ca.pem in (neither DOCKER_CONFIG "
            "nor HOME is set): set DOCKER_CERT_PATH to the folder that holds ca.pem, cert.pem and key.pem"
        )
    ca = cert_path / CA_FILE
    if not ca.exists():
        raise InputError(
            f"{asked} is set, but {ca} does not exist: put the daemon's CA there (with cert.pem and key.pem), "
            "or set DOCKER_CERT_PATH to the folder that holds them"
        )
    cert, key = cert_path / CERT_FILE, cert_path / KEY_FILE
    # As the CLI: a certificate or key that is not there is not used (and the daemon may refuse).
    both = cert.exists() and key.exists()
    tls = DaemonTLS(ca=ca, cert=cert if both else None, key=key if both else None, verify=verify, origin=origin)
    return replace(endpoint, tls=tls)


# -- contexts --------------------------------------------------------------------------------------


def _context_name(env: Mapping[str, str], config_dir: Path | None) -> tuple[str, str]:
    """The context's name and what chose it."""
    if name := env.get("DOCKER_CONTEXT", ""):
        return name, "DOCKER_CONTEXT"
    if config_dir is None:
        return "default", ""
    path = config_dir / "config.json"
    doc = _read_json(path, "the Docker config file")
    current = doc.get("currentContext") if doc is not None else None
    if current is None or current == "":
        return "default", ""
    if not isinstance(current, str):
        raise InputError(f"{path}: currentContext is not a string")
    return current, f"currentContext of {path}"


def _from_context(name: str, chosen_by: str, config_dir: Path | None) -> DockerEndpoint:
    missing = f"the Docker context {shown(name, 200, quoted=True)} ({chosen_by}) does not exist"
    if config_dir is None:
        raise UsageError(f"{missing}: there is no Docker config folder (neither DOCKER_CONFIG nor HOME is set)")
    try:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()  # (Go hashes the bytes)
    except UnicodeError:  # a lone surrogate, which config.json's JSON can carry: no context has it
        raise UsageError(f"{missing} (docker context ls lists the contexts)") from None
    meta_path = config_dir / "contexts" / "meta" / digest / "meta.json"
    meta = _read_json(meta_path, f"the Docker context {name!r}")
    if meta is None:
        raise UsageError(f"{missing}: there is no {meta_path} (docker context ls lists the contexts)")
    endpoints = meta.get("Endpoints")
    docker: Any = endpoints.get("docker") if isinstance(endpoints, dict) else None
    if not isinstance(docker, dict):
        raise InputError(f"{meta_path}: the Docker context {name!r} has no docker endpoint")
    host, skip = docker.get("Host", ""), docker.get("SkipTLSVerify", False)
    if not isinstance(host, str) or not isinstance(skip, bool):
        raise InputError(f"{meta_path}: the docker endpoint's Host or SkipTLSVerify is malformed")
    endpoint = parse_host(host, False, context=name)
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    has_files = tls_dir.is_dir()
    if endpoint.socket is not None or not (has_files or skip):
        return endpoint
    ca, cert, key = (tls_dir / f for f in (CA_FILE, CERT_FILE, KEY_FILE))
    both = cert.exists() and key.exists()
    tls = DaemonTLS(
        ca=ca if ca.exists() else None,
        cert=cert if both else None,
        key=key if both else None,
        verify=not skip,
        origin=f"the Docker context {name!r} ({tls_dir})",
    )
    return replace(endpoint, tls=tls)


# -- files -----------------------------------------------------------------------------------------


def _read_small(path: Path, limit: int, what: str) -> bytes | None:
    """A small regular file of the user's (a symlink to one is followed, as the CLI does), or
    None when it does not exist; InputError naming it when it cannot be read or is too large."""
    try:
        return read_regular(path, limit, f"{path} ({what})", follow_symlinks=True)
    except FileNotFoundError:
        return None


def _read_pem(path: Path, what: str) -> bytes:
    data = _read_small(path, MAX_PEM, what)
    if data is None:
        raise InputError(f"{path} ({what}) does not exist")
    return data


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    """A JSON object from a small file (an empty one is ``{}``, as for the CLI); None when the
    file does not exist."""
    data = _read_small(path, MAX_CONFIG, what)
    if data is None:
        return None
    return loads(data, f"{path} ({what})") if data.strip() else {}
