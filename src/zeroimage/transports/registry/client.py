"""An OCI Distribution client: one registry, its scheme, its auth, retries and redirects.

Trust belongs to an origin (scheme, host, port):

* HTTPS with verification first. Plain HTTP only for loopback hosts and ``--insecure-registry``
  hosts, and only when the server does not speak TLS at all: a certificate error is never a
  reason to fall back.
* Credentials go to the registry's own origin, and to the token realm the registry's own challenge
  names; nowhere else. ``Authorization`` is sent only to the registry's scheme, host and port. A
  challenge is learnt only from the registry's origin: a 401 from any other host (a redirect
  target, an upload ``Location`` elsewhere, a storage host) is an error that names that host, and
  never makes us fetch a token or send Basic credentials.
* A registry reached over HTTPS that points anywhere over plain HTTP — a redirect or an upload
  ``Location``, same host or not — is refused: nothing travels in clear text from a registry
  reached over TLS. A token realm over plain HTTP is taken only from a plain-HTTP registry.
* Only ``http`` and ``https`` URLs are followed; redirects are followed by hand, at most a few.

Bounded memory: a reply body is read into memory only up to a bound — :data:`MAX_REPLY_BODY` for
replies whose body is at most an error message (a ping, an upload step, a manifest PUT: the rest is
dropped unread), :data:`MAX_TOKEN_REPLY` for token replies (a larger one is refused); documents
have their own bound (:mod:`.source`). Bodies are read as sent, never decoded
(``Accept-Encoding: identity``): a compressed reply cannot expand in memory, and digests are
taken of the bytes the registry sent.

Bounded time: every transfer obeys a low-speed limit in the manner of curl's
``--speed-limit/--speed-time``: one that moves fewer than 1024 bytes in 30 seconds fails. The
environment variable ``ZEROIMAGE_LOW_SPEED_LIMIT=BYTES/SECONDS`` (two whole numbers, e.g.
``1024/30``) sets the rate and the window. Connection faults, cut replies and 408/429/5xx are
retried with exponential backoff and jitter (honouring ``Retry-After``), within a bounded number of
tries and a bounded time; but a stall is not such a transient fault: one client retries a stalled
transfer once only (:class:`TransferStalled`), and after a second stall every request of that
client fails at once, so a registry that trickles fails a build in about two windows. A ping that
failed is not tried again by the client's other threads either.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from zeroimage.errors import (
    AuthError,
    NetworkError,
    NotFoundError,
    RegistryError,
    TLSError,
    UsageError,
)
from zeroimage.reference import api_host_of
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.auth import (
    Challenge,
    TokenCache,
    basic_header,
    parse_challenge,
    parse_token_reply,
)
from zeroimage.transports.registry.credentials import Credential, CredentialStore

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
USER_AGENT = "zeroimage"
#: What is kept of a reply whose body is at most an error message; the rest is never read.
MAX_REPLY_BODY = 64 * 1024
#: The largest token reply taken (a JWT is a few kilobytes).
MAX_TOKEN_REPLY = 1 << 20
#: Stalled transfers one client retries: a stall is not a transient fault.
STALL_RETRIES = 1
LOW_SPEED_VARIABLE = "ZEROIMAGE_LOW_SPEED_LIMIT"

Body = bytes | Callable[[], Iterable[bytes]] | None
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class LowSpeedLimit:
    """A transfer fails when it moves fewer than ``bytes_per_second * seconds`` bytes in ``seconds``."""

    bytes_per_second: int = 1024
    seconds: int = 30

    @property
    def window_bytes(self) -> int:
        return self.bytes_per_second * self.seconds

    def __str__(self) -> str:
        return f"under {self.bytes_per_second} bytes/s for {self.seconds} s"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> LowSpeedLimit:
        """The limit ``ZEROIMAGE_LOW_SPEED_LIMIT`` sets, else the default; a malformed one is a UsageError."""
        text = environ.get(LOW_SPEED_VARIABLE, "").strip()
        if not text:
            return cls()
        rate, slash, seconds = text.partition("/")
        if not (slash and rate.strip().isdigit() and seconds.strip().isdigit()):
            raise UsageError(f"{LOW_SPEED_VARIABLE} must be BYTES/SECONDS (e.g. 1024/30), not {text[:40]!r}")
        limit = cls(int(rate), int(seconds))
        if limit.bytes_per_second < 1 or limit.seconds < 1:
            raise UsageError(f"{LOW_SPEED_VARIABLE}: both numbers must be at least 1, not {text[:40]!r}")
        return limit


@dataclass(frozen=True)
class ClientOptions:
    insecure_registries: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    #: How long a request waits for a free connection of the client's pool.
    pool_timeout: float = 60.0
    max_attempts: int = 5
    #: No retried request keeps trying longer than this (seconds).
    retry_deadline: float = 40.0
    base_backoff: float = 0.25
    max_backoff: float = 8.0
    low_speed: LowSpeedLimit = field(default_factory=LowSpeedLimit)


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


@dataclass(frozen=True)
class Reply:
    """A reply with its body read: at most :data:`MAX_REPLY_BODY` bytes of it (the rest is dropped)."""

    status: int
    headers: httpx.Headers
    body: bytes


class TransferStalled(NetworkError):
    """A transfer stayed under the low-speed limit for a whole window. ``final`` when this
    client has used up its retries of stalls: whoever retries transfers must not retry it."""

    def __init__(self, message: str, final: bool) -> None:
        super().__init__(message)
        self.final = final


def is_loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


def client_for(registry: str, insecure_registries: tuple[str, ...] = ()) -> RegistryClient:
    """A client for ``registry`` as references name it (``docker.io`` talks to registry-1.docker.io),
    with the low-speed limit the environment sets."""
    options = ClientOptions(
        insecure_registries=insecure_registries, low_speed=LowSpeedLimit.from_environment(os.environ)
    )
    return RegistryClient(registry, api_host_of(registry), options)


def read_at_most(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a streamed reply's body as sent, and whether that was all of it."""
    try:
        data = response.content  # a reply a transport gave whole (made from bytes in memory)
    except httpx.ResponseNotRead:
        pass
    else:
        return data[:limit], len(data) <= limit
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


def _release(response: httpx.Response) -> None:
    """Close a reply whose body is not wanted. A short body is read first, so that the kept-alive
    connection serves the next request (a retry, the answer to a challenge, a redirect's target)
    instead of costing a new TCP and TLS handshake; a longer one is left, and its connection with it."""
    with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
        read_at_most(response, MAX_REPLY_BODY)
    response.close()


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        yield current
        current = current.__cause__ or current.__context__
        seen += 1


def _tls_verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for item in _cause_chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            return item
    return None


def _not_tls(exc: BaseException) -> bool:
    """True when the server answered, but not with TLS (a plain-HTTP registry)."""
    for item in _cause_chain(exc):
        if isinstance(item, ssl.SSLError) and not isinstance(item, ssl.SSLCertVerificationError):
            return True
    text = str(exc).lower()
    return "wrong version number" in text or "record layer failure" in text or "packet length too long" in text


def _registry_errors(body: bytes) -> list[dict[str, Any]]:
    """The errors of a registry's JSON error body (``{"errors": [{"code", "message"}]}``); none
    when it is anything else."""
    try:
        errors = json.loads(body).get("errors") or []
    except Exception:  # noqa: BLE001 - anything a server sends: no errors then
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def error_codes(reply: Reply) -> set[str]:
    """The error codes (``MANIFEST_BLOB_UNKNOWN``, …) a registry's reply gives."""
    return {str(e.get("code")) for e in _registry_errors(reply.body)}


def _registry_message(body: bytes) -> str:
    """The registry's own error text (code: message), short, from its JSON error body."""
    errors = _registry_errors(body)[:2]
    parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
    return "; ".join(p for p in parts if p)[:200]


class RegistryClient:
    """Talks to one registry. Thread-safe: pushes use it from several threads.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); without it, connections
    obey ``options.low_speed``. ``sleep`` waits between retries (tests make it instant)."""

    def __init__(
        self,
        registry: str,
        api_host: str,
        options: ClientOptions | None = None,
        credentials: CredentialStore | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.registry = registry  # as in references ("docker.io"), for credentials and messages
        self.host = api_host  # where requests go ("registry-1.docker.io")
        self.options = options or ClientOptions()
        self._store = credentials if credentials is not None else CredentialStore()
        self._credential: Credential | None = None
        self._credential_loaded = False
        self._scheme: str | None = None
        self._challenge: Challenge | None = None
        self._tokens = TokenCache()
        self._lock = threading.Lock()
        self._ping_lock = threading.Lock()
        self._stall_lock = threading.Lock()
        self._stalls = 0
        self._gave_up: NetworkError | None = None  # a final stall, or a ping that failed: ends every request
        self._sleep = sleep
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
        if transport is None:
            from zeroimage.transports.registry.speed import limited_transport

            transport = limited_transport(self.options.low_speed, ssl_context_for(api_host), limits)
        self._http = httpx.Client(
            transport=transport,
            # No read or write timeout: the low-speed limit bounds every wait, and more closely.
            timeout=httpx.Timeout(None, connect=self.options.connect_timeout, pool=self.options.pool_timeout),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            trust_env=False,
        )

    # -- credentials, scheme and origin ----------------------------------------------------------

    def credential(self) -> Credential | None:
        with self._lock:
            if not self._credential_loaded:
                self._credential = self._store.get(self.registry)
                self._credential_loaded = True
            return self._credential

    def set_credential(self, credential: Credential | None) -> None:
        """Use ``credential`` instead of the stored one (login validates this way)."""
        with self._lock:
            self._credential = credential
            self._credential_loaded = True

    def _plain_http_allowed(self) -> bool:
        host = self.host
        name = urlsplit(f"//{host}").hostname or host
        return is_loopback(host) or host in self.options.insecure_registries or name in self.options.insecure_registries

    def base_url(self) -> str:
        with self._ping_lock:  # concurrent uploads must not each ping, nor ping again after a failure
            if self._scheme is None:
                if self._gave_up is not None:
                    raise self._gave_up
                try:
                    self.ping()
                except NetworkError as exc:
                    self._gave_up = exc
                    raise
        assert self._scheme is not None
        return f"{self._scheme}://{self.host}"

    def _is_registry(self, url: str) -> bool:
        """True when ``url`` is on the registry's own origin (scheme, host and port)."""
        return Origin.of(url) == Origin.of(self.base_url())

    def ping(self) -> Challenge | None:
        """GET /v2/: learn the scheme and the auth challenge. Returns the challenge, if any."""
        try:
            response = self._send_retrying("GET", f"https://{self.host}/v2/", {}, None)
            self._scheme = "https"
        except NetworkError as exc:
            if not (exc.__cause__ is not None and _not_tls(exc.__cause__) and self._plain_http_allowed()):
                raise
            response = self._send_retrying("GET", f"http://{self.host}/v2/", {}, None)
            self._scheme = "http"
        reply = self.reply_of(response)  # its body is not needed: a bounded part of it is read
        if reply.status == 401:
            self._challenge = parse_challenge(reply.headers.get("www-authenticate", ""))
        elif reply.status >= 400 and reply.status != 404:
            raise RegistryError(f"{self.host} does not answer as a registry (GET /v2/ gave {reply.status})")
        return self._challenge

    def _check_target(self, url: str, verb: str) -> None:
        """Refuse a URL the registry gave that is not http(s), or that leaves TLS for plain HTTP."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https") or Origin.of(url) is None:
            raise RegistryError(f"{self.registry} {verb} {_redact_url(url)}: only http(s) URLs are followed")
        if scheme == "http" and self._scheme == "https":
            raise RegistryError(
                f"{self.registry} is reached over HTTPS but {verb} plain HTTP ({urlsplit(url).netloc}); "
                "refusing to send credentials or data in clear text"
            )

    def _foreign_challenge(self, url: str) -> AuthError:
        return AuthError(
            f"{urlsplit(url).netloc} asked for credentials (HTTP 401), but it is not the registry "
            f"{self.registry}: credentials are sent to the registry only"
        )

    # -- requests --------------------------------------------------------------------------------

    def _send_once(
        self, method: str, url: str, headers: Mapping[str, str], body: Body, timeout: float | None
    ) -> httpx.Response:
        content: Any = body() if callable(body) else body
        extra: dict[str, Any] = {} if timeout is None else {"timeout": httpx.Timeout(timeout)}
        request = self._http.build_request(method, url, headers=dict(headers), content=content, **extra)
        try:
            return self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            failure = _tls_verify_failure(exc)
            if failure is not None:
                host = urlsplit(url).netloc
                raise TLSError(
                    f"TLS verification failed for {host}: {failure.verify_message or failure.reason}. "
                    f"Trust its CA with SSL_CERT_FILE=ca.pem or by copying it to /etc/docker/certs.d/{host}/ca.crt"
                ) from None
            raise

    def _send_retrying(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body,
        retry: bool = True,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send, retrying transport faults and retryable statuses; the last (streamed) response."""
        options = self.options
        started = time.monotonic()
        attempt = 0
        while True:
            if self._gave_up is not None and isinstance(self._gave_up, TransferStalled):
                raise self._gave_up  # this registry trickles: a new request would only stall again
            attempt += 1
            last_try = (
                not retry or attempt >= options.max_attempts or time.monotonic() - started > options.retry_deadline
            )
            try:
                response = self._send_once(method, url, headers, body, timeout)
            except httpx.TransportError as exc:
                error = self.transfer_error(exc, urlsplit(url).netloc)
                final = isinstance(error, TransferStalled) and error.final
                if final or last_try or (_not_tls(exc) and url.startswith("https:")):
                    raise error from exc
                self.pause(attempt, None)
                continue
            if response.status_code in RETRYABLE_STATUS and not last_try:
                retry_after = response.headers.get("retry-after")
                _release(response)
                self.pause(attempt, retry_after)
                continue
            return response

    def pause(self, attempt: int, retry_after: str | None = None) -> None:
        """Wait before try ``attempt + 1``: exponential backoff with jitter, or what the
        registry's ``Retry-After`` asks (both capped)."""
        delay = min(self.options.max_backoff, self.options.base_backoff * 2 ** (attempt - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after and retry_after.strip().isdigit():
            delay = min(max(delay, float(retry_after)), self.options.max_backoff)
        self._sleep(delay)

    def transfer_error(self, exc: httpx.TransportError, where: str, reading: str = "") -> NetworkError:
        """The error to report for ``exc`` met talking to ``where`` (while ``reading`` a body, if
        given). A stall counts against the one retry this client gives stalls."""
        from zeroimage.transports.registry.speed import is_stall

        if is_stall(exc):
            doing = f"reading {reading} from {where}" if reading else where
            with self._stall_lock:
                self._stalls += 1
                stalled = TransferStalled(
                    f"{doing}: the transfer stalled ({self.options.low_speed}; "
                    f"{LOW_SPEED_VARIABLE}=BYTES/SECONDS changes the limit)",
                    final=self._stalls > STALL_RETRIES,
                )
                if stalled.final and self._gave_up is None:
                    self._gave_up = stalled
            return stalled
        if reading:
            return NetworkError(f"reading {reading} failed: {_describe_transport_error(exc)}")
        return NetworkError(f"cannot reach {where}: {_describe_transport_error(exc)}")

    def _exchange(
        self,
        method: str,
        path: str,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None,
        body: Body,
        retry: bool,
        follow_redirects: bool,
        timeout: float | None,
    ) -> httpx.Response:
        url = urljoin(self.base_url() + "/", path)
        self._check_target(url, "pointed to")
        own = self._is_registry(url)
        sent_headers = dict(headers or {})
        authorization = self._authorization(scopes) if own else None
        for attempt in range(2):
            if authorization:
                sent_headers["Authorization"] = authorization
            response = self._send_retrying(method, url, sent_headers, body, retry, timeout)
            if response.status_code != 401:
                break
            if not own:
                response.close()
                raise self._foreign_challenge(url)
            challenge = parse_challenge(response.headers.get("www-authenticate", ""))
            if attempt == 1 or challenge is None:
                break
            self._challenge = challenge
            renewed = self._authorization(scopes, challenge, renew=True)
            if renewed is None:
                break  # nothing to answer it with: the caller reports the 401
            _release(response)
            authorization = renewed
        if follow_redirects:
            response = self._follow(method, url, response, sent_headers)
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        retry: bool = True,
        follow_redirects: bool = False,
        timeout: float | None = None,
    ) -> Reply:
        """Send an authenticated request to ``path`` (or an absolute URL the registry gave); the
        reply with at most :data:`MAX_REPLY_BODY` bytes of its body."""
        return self.reply_of(self._exchange(method, path, scopes, headers, body, retry, follow_redirects, timeout))

    def open(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """As :meth:`request`, but the reply's body is left to the caller to read (bounded, as
        sent: ``iter_raw``) and the reply to close."""
        return self._exchange(method, path, scopes, headers, None, True, follow_redirects, None)

    @staticmethod
    def reply_of(response: httpx.Response) -> Reply:
        """The reply, with a bounded part of its body; the response is closed."""
        try:
            body, _ = read_at_most(response, MAX_REPLY_BODY)
        except httpx.TransportError:
            body = b""  # only ever an error message: the status and headers say what matters
        finally:
            response.close()
        return Reply(response.status_code, response.headers, body)

    def _follow(self, method: str, url: str, response: httpx.Response, headers: dict[str, str]) -> httpx.Response:
        seen = {url}
        for _ in range(MAX_REDIRECTS):
            if response.status_code not in REDIRECT_STATUS:
                return response
            location = response.headers.get("location", "")
            _release(response)
            if not location:
                raise RegistryError(f"{self.registry} sent a redirect without a location")
            url = urljoin(url, location)
            self._check_target(url, "redirected to")
            if url in seen:
                raise RegistryError(f"{self.registry}: redirect loop at {_redact_url(url)}")
            seen.add(url)
            own = self._is_registry(url)
            if not own:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            response = self._send_retrying(method, url, headers, None)
            if response.status_code == 401 and not own:
                response.close()
                raise self._foreign_challenge(url)
        if response.status_code in REDIRECT_STATUS:
            response.close()
            raise RegistryError(f"{self.registry}: more than {MAX_REDIRECTS} redirects")
        return response

    # -- authorization ---------------------------------------------------------------------------

    def _authorization(
        self, scopes: tuple[str, ...], challenge: Challenge | None = None, renew: bool = False
    ) -> str | None:
        challenge = challenge or self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credential = self.credential()
            if credential is None or not credential.username:
                return None
            return basic_header(credential)
        if challenge.scheme == "bearer":
            realm, service = challenge.realm, challenge.params.get("service", "")
            wanted = tuple(
                sorted(set(scopes) | ({challenge.params["scope"]} if renew and "scope" in challenge.params else set()))
            )
            if renew:
                self._tokens.forget(realm, service, wanted)
            token = self._tokens.get(realm, service, wanted)
            if token is None:
                token, expires_in = self._fetch_token(realm, service, wanted)
                self._tokens.put(realm, service, wanted, token, expires_in)
            return f"Bearer {token}"
        return None

    def _fetch_token(self, realm: str, service: str, scopes: tuple[str, ...]) -> tuple[str, int]:
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or Origin.of(realm) is None:
            raise AuthError(f"{self.registry} asked for a token from an invalid realm")
        if parts.scheme == "http" and self._scheme != "http":
            raise AuthError(
                f"{self.registry} is reached over HTTPS but asked for a token over plain HTTP from "
                f"{parts.netloc}; refusing"
            )
        credential = self.credential()
        headers: dict[str, str] = {}
        if credential is not None and credential.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "client_id": USER_AGENT,
                "service": service,
                "scope": " ".join(scopes),
            }
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._send_retrying("POST", realm, headers, urlencode(form).encode())
        else:
            params: list[tuple[str, str]] = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            if credential is not None and credential.username:
                headers["Authorization"] = basic_header(credential)
                params.append(("account", credential.username))
            url = str(httpx.URL(realm).copy_merge_params(tuple(params))) if params else realm
            response = self._send_retrying("GET", url, headers, None)
        try:
            if response.status_code in (401, 403):
                if credential is not None:
                    raise AuthError(
                        f"{self.registry}: the stored credentials were rejected; run `zeroimage login {self.registry}`"
                    )
                raise AuthError(f"{self.registry}: authentication required; run `zeroimage login {self.registry}`")
            if response.status_code != 200:
                raise RegistryError(f"token service of {self.registry} answered {response.status_code}")
            try:
                data, whole = read_at_most(response, MAX_TOKEN_REPLY)
            except httpx.TransportError as exc:
                raise self.transfer_error(exc, parts.netloc, "a token") from None
        finally:
            response.close()
        if not whole:
            raise RegistryError(f"the token reply of {parts.netloc} is larger than {MAX_TOKEN_REPLY} bytes; refused")
        parsed = parse_token_reply(data)
        if parsed is None:
            raise RegistryError(f"the token service of {self.registry} sent a malformed reply (no usable token)")
        return parsed

    def login_check(self) -> None:
        """Verify the current credential against the registry, as ``docker login`` does."""
        challenge = self.ping()
        if challenge is None:
            return
        if challenge.scheme == "basic":
            reply = self.request("GET", "/v2/")
            if reply.status == 401:
                raise AuthError(f"{self.registry}: username or password rejected")
            self.raise_for_status(reply, "/v2/")
        elif challenge.scheme == "bearer":
            self._fetch_token(challenge.realm, challenge.params.get("service", ""), ())

    # -- errors ----------------------------------------------------------------------------------

    def raise_for_status(self, reply: Reply, what: str, repository: str = "") -> None:
        status = reply.status
        if status < 400:
            return
        detail = _registry_message(reply.body)
        suffix = f" ({detail})" if detail else ""
        if status == 401:
            raise AuthError(
                f"{self.registry}: unauthorized for {repository or what}{suffix}; run `zeroimage login {self.registry}`"
            )
        if status == 403:
            raise AuthError(f"{self.registry}: access to {repository or what} denied{suffix}")
        if status == 404:
            raise NotFoundError(f"{self.registry}: {what} not found{suffix}")
        raise RegistryError(f"{self.registry}: {what} failed with HTTP {status}{suffix}")

    def close(self) -> None:
        self._http.close()


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:200] + ("?…" if parts.query else "")


def _describe_transport_error(exc: httpx.TransportError) -> str:
    for item in _cause_chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, TimeoutError | httpx.TimeoutException):
            return "timed out"
    text = str(exc) or type(exc).__name__
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name" in text:
        return "unknown host"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed mid-reply"
    return text[:160]
