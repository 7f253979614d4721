"""An OCI Distribution client: one registry host, its scheme, its auth, retries and redirects.

* HTTPS with verification first. Plain HTTP only for loopback hosts and ``--insecure-registry``
  hosts, and only when the server does not speak TLS at all: a certificate error is never a
  reason to fall back.
* Timeouts bound each connection and each idle read, never a whole transfer.
* Connection faults, cut replies and 408/429/5xx are retried with exponential backoff and jitter
  (honouring ``Retry-After``), within a bounded number of tries and a bounded time.
* Redirects are followed by hand, at most a few, and a request that leaves the registry's host
  carries no Authorization header.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from zeroimage.errors import (
    AuthError,
    CredentialError,
    NetworkError,
    NotFoundError,
    RegistryError,
    TLSError,
)
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.auth import (
    Challenge,
    TokenCache,
    basic_header,
    parse_challenge,
)
from zeroimage.transports.registry.credentials import Credential, CredentialStore

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
USER_AGENT = "zeroimage"

Body = bytes | Callable[[], Iterable[bytes]] | None


@dataclass(frozen=True)
class ClientOptions:
    insecure_registries: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 5
    #: No retried request keeps trying longer than this (seconds).
    retry_deadline: float = 40.0
    base_backoff: float = 0.25
    max_backoff: float = 8.0


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


def _registry_message(response: httpx.Response) -> str:
    """The registry's own error text (code: message), short, from its JSON error body."""
    try:
        body = response.json()
        errors = body.get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors[:2] if isinstance(e, dict)]
        return "; ".join(p for p in parts if p)[:200]
    except Exception:
        return ""


class RegistryClient:
    """Talks to one registry host. Thread-safe: pushes use it from several threads."""

    def __init__(
        self,
        registry: str,
        api_host: str,
        options: ClientOptions | None = None,
        credentials: CredentialStore | None = None,
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
        timeout = httpx.Timeout(
            connect=self.options.connect_timeout,
            read=self.options.read_timeout,
            write=self.options.read_timeout,
            pool=self.options.read_timeout,
        )
        self._http = httpx.Client(
            verify=ssl_context_for(api_host),
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            trust_env=False,
        )

    # -- credentials and scheme ------------------------------------------------------------------

    def credential(self) -> Credential | None:
        with self._lock:
            if not self._credential_loaded:
                try:
                    self._credential = self._store.get(self.registry)
                except CredentialError:
                    raise
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
        with self._ping_lock:  # concurrent uploads must not each ping
            if self._scheme is None:
                self.ping()
        assert self._scheme is not None
        return f"{self._scheme}://{self.host}"

    def ping(self) -> Challenge | None:
        """GET /v2/: learn the scheme and the auth challenge. Returns the challenge, if any."""
        try:
            response = self._send_retrying("GET", f"https://{self.host}/v2/", {}, None, stream=False)
            self._scheme = "https"
        except NetworkError as exc:
            if not (exc.__cause__ is not None and _not_tls(exc.__cause__) and self._plain_http_allowed()):
                raise
            response = self._send_retrying("GET", f"http://{self.host}/v2/", {}, None, stream=False)
            self._scheme = "http"
        if response.status_code == 401:
            header = response.headers.get("www-authenticate", "")
            self._challenge = parse_challenge(header)
        elif response.status_code >= 400 and response.status_code not in (404,):
            raise RegistryError(f"{self.host} does not answer as a registry (GET /v2/ gave {response.status_code})")
        return self._challenge

    # -- requests --------------------------------------------------------------------------------

    def _send_once(self, method: str, url: str, headers: Mapping[str, str], body: Body, stream: bool) -> httpx.Response:
        content: Any = body() if callable(body) else body
        request = self._http.build_request(method, url, headers=dict(headers), content=content)
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            failure = _tls_verify_failure(exc)
            if failure is not None:
                raise TLSError(
                    f"TLS verification failed for {self.host}: {failure.verify_message or failure.reason}. "
                    f"Trust its CA with SSL_CERT_FILE=ca.pem or by copying it to /etc/docker/certs.d/{self.host}/ca.crt"
                ) from None
            raise

    def _send_retrying(
        self, method: str, url: str, headers: Mapping[str, str], body: Body, stream: bool, retry: bool = True
    ) -> httpx.Response:
        """Send, retrying transport faults and retryable statuses; returns the last response."""
        options = self.options
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            last_try = (
                not retry or attempt >= options.max_attempts or time.monotonic() - started > options.retry_deadline
            )
            try:
                response = self._send_once(method, url, headers, body, stream)
            except httpx.TransportError as exc:
                if last_try or (_not_tls(exc) and url.startswith("https:")):
                    where = urlsplit(url).netloc
                    raise NetworkError(f"cannot reach {where}: {_describe_transport_error(exc)}") from exc
                self._sleep(attempt, None)
                continue
            if response.status_code in RETRYABLE_STATUS and not last_try:
                retry_after = response.headers.get("retry-after")
                response.close()
                self._sleep(attempt, retry_after)
                continue
            return response

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.options.max_backoff, self.options.base_backoff * 2 ** (attempt - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after and retry_after.strip().isdigit():
            delay = min(max(delay, float(retry_after)), self.options.max_backoff)
        time.sleep(delay)

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send an authenticated request to ``path`` (or an absolute URL the registry gave)."""
        url = urljoin(self.base_url() + "/", path) if not path.startswith(("http://", "https://")) else path
        sent_headers = dict(headers or {})
        authorization = self._authorization(scopes)
        for attempt in range(2):
            if authorization and self._same_host(url):
                sent_headers["Authorization"] = authorization
            response = self._send_retrying(method, url, sent_headers, body, stream, retry)
            if response.status_code == 401 and attempt == 0:
                challenge = parse_challenge(response.headers.get("www-authenticate", ""))
                response.close()
                if challenge is None:
                    break
                self._challenge = challenge
                authorization = self._authorization(scopes, challenge, renew=True)
                if authorization is None:
                    return response
                continue
            break
        if follow_redirects:
            response = self._follow(method, url, response, sent_headers, stream)
        return response

    def _same_host(self, url: str) -> bool:
        return urlsplit(url).netloc == self.host

    def _follow(
        self, method: str, url: str, response: httpx.Response, headers: dict[str, str], stream: bool
    ) -> httpx.Response:
        seen = {url}
        for _ in range(MAX_REDIRECTS):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location", "")
            response.close()
            if not location:
                raise RegistryError(f"{self.host} sent a redirect without a location")
            url = urljoin(url, location)
            if url in seen:
                raise RegistryError(f"{self.host}: redirect loop at {_redact_url(url)}")
            seen.add(url)
            if not self._same_host(url):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            response = self._send_retrying(method, url, headers, None, stream)
        if response.status_code in (301, 302, 303, 307, 308):
            response.close()
            raise RegistryError(f"{self.host}: more than {MAX_REDIRECTS} redirects")
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
        if not realm.startswith(("https://", "http://")):
            raise AuthError(f"{self.host} asked for a token from an invalid realm")
        if realm.startswith("http://") and not (is_loopback(urlsplit(realm).netloc) or self._scheme == "http"):
            raise AuthError(f"{self.host} asked for a token over plain HTTP from {urlsplit(realm).netloc}; refusing")
        credential = self.credential()
        params: list[tuple[str, str]] = [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        try:
            if credential is not None and credential.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": credential.identity_token,
                    "client_id": USER_AGENT,
                    "service": service,
                    "scope": " ".join(scopes),
                }
                response = self._token_request("POST", realm, data=form)
            else:
                headers = {}
                if credential is not None and credential.username:
                    headers["Authorization"] = basic_header(credential)
                    params.append(("account", credential.username))
                response = self._token_request("GET", realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot reach the token service of {self.host}: {_describe_transport_error(exc)}"
            ) from None
        if response.status_code in (401, 403):
            if credential is not None:
                raise AuthError(
                    f"{self.registry}: the stored credentials were rejected; run `zeroimage login {self.registry}`"
                )
            raise AuthError(f"{self.registry}: authentication required; run `zeroimage login {self.registry}`")
        if response.status_code != 200:
            raise RegistryError(f"token service of {self.host} answered {response.status_code}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            expires_in = int(body.get("expires_in") or 60)
        except (ValueError, TypeError, AttributeError):
            token, expires_in = None, 0
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service of {self.host} sent no token")
        return token, expires_in

    def _token_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError:
                if attempt == self.options.max_attempts:
                    raise
                self._sleep(attempt, None)
                continue
            if response.status_code in RETRYABLE_STATUS and attempt < self.options.max_attempts:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            return response
        raise AssertionError("unreachable")

    def login_check(self) -> None:
        """Verify the current credential against the registry, as ``docker login`` does."""
        challenge = self.ping()
        if challenge is None:
            return
        if challenge.scheme == "basic":
            response = self.request("GET", "/v2/")
            if response.status_code == 401:
                raise AuthError(f"{self.registry}: username or password rejected")
            self.raise_for_status(response, "/v2/")
        elif challenge.scheme == "bearer":
            self._fetch_token(challenge.realm, challenge.params.get("service", ""), ())

    # -- errors ----------------------------------------------------------------------------------

    def raise_for_status(self, response: httpx.Response, what: str, repository: str = "") -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _registry_message(response)
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
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


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
