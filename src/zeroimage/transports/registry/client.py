"""An OCI Distribution client: one registry, composed of small layers, as go-containerregistry
stacks its RoundTrippers. From the top:

* the origin policy (:mod:`.origin`): HTTPS first, plain HTTP only where allowed and only when the
  registry does not speak TLS at all (learnt by a ping); every URL the registry gives checked
  (only http(s), never from TLS to plain HTTP); credentials for the registry's origin only;
* redirects, followed here by hand, at most :data:`MAX_REDIRECTS`, never in a loop, each hop
  checked by the origin policy and authenticated by its own origin's rules;
* authentication (:mod:`.auth`, :mod:`.authflow`): an ``httpx.Auth`` flow per request that answers
  the registry's 401 challenges (Basic, Bearer tokens fetched and cached) and sends
  ``Authorization`` to the registry's origin only;
* retries (:mod:`.retry`): 408/429/5xx and transport faults, with backoff and jitter, within a
  number of tries and a deadline; a stall is retried once only (:mod:`.faults`);
* the transport (:mod:`.transport`, :mod:`.speed`): httpx over httpcore's public interfaces, every
  connection under the low-speed limit.

Bounded memory: a reply body is read into memory only up to a bound (:mod:`.replies`): at most
:data:`MAX_REPLY_BODY` of a reply whose body is at most an error message, :data:`MAX_TOKEN_REPLY`
of a token reply; documents have their own bound (:mod:`.source`). Bodies are read as sent, never
decoded (``Accept-Encoding: identity``).

Bounded time: every transfer obeys a low-speed limit in the manner of curl's
``--speed-limit/--speed-time``: one that moves fewer than 1024 bytes in 30 seconds fails. The
environment variable ``ZEROIMAGE_LOW_SPEED_LIMIT=BYTES/SECONDS`` (two whole numbers, e.g.
``1024/30``) sets the rate and the window. Connection faults, cut replies and 408/429/5xx are
retried with exponential backoff and jitter (honouring ``Retry-After``), within a bounded number of
tries and a bounded time; but a stall is not such a transient fault: one client retries a stalled
transfer once only (:class:`TransferStalled`), and after a second stall every request of that
client fails at once, so a registry that trickles fails a build in about two windows. A ping that
failed is not tried again by the client's other threads either.

Errors carry what the registry said: :meth:`RegistryClient.raise_for_status` raises a
:class:`~zeroimage.errors.RegistryError` (or its 401/403/404 kinds) with the status, the
registry's error codes and the repository.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from urllib.parse import urljoin, urlsplit

from zeroimage.errors import AuthError, NetworkError, RegistryError
from zeroimage.reference import api_host_of
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.auth import MAX_TOKEN_REPLY, Authenticator, Challenge, parse_challenge
from zeroimage.transports.registry.credentials import Credential, CredentialStore
from zeroimage.transports.registry.faults import (
    STALL_RETRIES,
    StallBudget,
    TransferStalled,
    describe,
    is_stall,
    not_tls,
    tls_error,
)
from zeroimage.transports.registry.options import LOW_SPEED_VARIABLE, ClientOptions, LowSpeedLimit
from zeroimage.transports.registry.origin import Origin, RegistryOrigin, is_loopback, redact_url, ssl_context_for
from zeroimage.transports.registry.replies import (
    MAX_REPLY_BODY,
    Reply,
    error_codes,
    read_at_most,
    release,
    reply_of,
    status_error,
)
from zeroimage.transports.registry.retry import RETRYABLE_STATUS, Fault, Retrier

__all__ = [
    "LOW_SPEED_VARIABLE",
    "MAX_REDIRECTS",
    "MAX_REPLY_BODY",
    "MAX_TOKEN_REPLY",
    "REDIRECT_STATUS",
    "RETRYABLE_STATUS",
    "STALL_RETRIES",
    "USER_AGENT",
    "Body",
    "ClientOptions",
    "LowSpeedLimit",
    "Origin",
    "RegistryClient",
    "Reply",
    "TransferStalled",
    "client_for",
    "error_codes",
    "is_loopback",
    "read_at_most",
    "ssl_context_for",
]

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
USER_AGENT = "zeroimage"

#: A request body: bytes, or a function giving the body's pieces afresh for each try.
Body = bytes | Callable[[], Iterable[bytes]] | None
Sleep = Callable[[float], None]


def client_for(registry: str, insecure_registries: tuple[str, ...] = ()) -> RegistryClient:
    """A client for ``registry`` as references name it (``docker.io`` talks to registry-1.docker.io),
    with the low-speed limit the environment sets."""
    options = ClientOptions(
        insecure_registries=insecure_registries, low_speed=LowSpeedLimit.from_environment(os.environ)
    )
    return RegistryClient(registry, api_host_of(registry), options)


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
        self.origin = RegistryOrigin(registry, api_host, self.options.insecure_registries)
        self._store = credentials if credentials is not None else CredentialStore()
        self._credential: Credential | None = None
        self._credential_loaded = False
        self._lock = threading.Lock()
        self._ping_lock = threading.Lock()
        self._ping_failure: NetworkError | None = None  # ends every request: the ping is not repeated
        self._stalls = StallBudget(self.options.low_speed)
        self._retrier = Retrier.from_options(self.options, sleep)
        self.auth = Authenticator(self.origin, self.credential, self._send_unauthenticated, self.transfer_error)
        if transport is None:
            from zeroimage.transports.registry.transport import LowSpeedTransport

            limits = httpx.Limits(
                max_connections=self.options.max_connections,
                max_keepalive_connections=self.options.max_keepalive_connections,
            )
            transport = LowSpeedTransport(self.options.low_speed, ssl_context_for(api_host), limits)
        # No read or write timeout: the low-speed limit bounds every wait, and more closely.
        self._timeout = httpx.Timeout(None, connect=self.options.connect_timeout, pool=self.options.pool_timeout)
        self._http = httpx.Client(transport=transport, follow_redirects=False, trust_env=False)

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

    def base_url(self) -> str:
        """The registry's URL, its scheme learnt by a ping the first time."""
        with self._ping_lock:  # concurrent uploads must not each ping, nor ping again after a failure
            if self.origin.scheme is None:
                if self._ping_failure is not None:
                    raise self._ping_failure
                try:
                    self.ping()
                except NetworkError as exc:
                    self._ping_failure = exc
                    raise
        return self.origin.url()

    def ping(self) -> Challenge | None:
        """GET /v2/: learn the scheme and the auth challenge. Returns the challenge, if any."""
        try:
            response = self._send_unauthenticated("GET", f"https://{self.host}/v2/", {}, None)
            self.origin.scheme = "https"
        except NetworkError as exc:
            if not (exc.__cause__ is not None and not_tls(exc.__cause__) and self.origin.plain_http_allowed()):
                raise
            response = self._send_unauthenticated("GET", f"http://{self.host}/v2/", {}, None)
            self.origin.scheme = "http"
        reply = self.reply_of(response)  # its body is not needed: a bounded part of it is read
        if reply.status == 401:
            self.auth.challenge = parse_challenge(reply.headers.get("www-authenticate", ""))
        elif reply.status >= 400 and reply.status != 404:
            raise RegistryError(
                f"{self.host} does not answer as a registry (GET /v2/ gave {reply.status})", status=reply.status
            )
        return self.auth.challenge

    # -- the layers: a request, its retries, its authentication, its redirects ---------------------

    def _build(
        self, method: str, url: str, headers: Mapping[str, str] | None, body: Body, timeout: float | None = None
    ) -> httpx.Request:
        sent = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        limits = httpx.Timeout(timeout) if timeout is not None else self._timeout
        extensions = {"timeout": limits.as_dict()}
        if callable(body):
            from zeroimage.transports.registry.transport import ReplayableBody

            # httpx adds Host and frames it (chunked unless a Content-Length is given); each try makes it afresh.
            return httpx.Request(method, url, headers=sent, content=ReplayableBody(body), extensions=extensions)
        return httpx.Request(method, url, headers=sent, content=body, extensions=extensions)

    def _send_once(self, request: httpx.Request) -> httpx.Response:
        if self._stalls.final is not None:
            raise self._stalls.final  # this registry trickles: a new request would only stall again
        try:
            return self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            refused = tls_error(exc, str(request.url))
            if refused is not None:
                raise refused from None
            raise

    def _judge(self, url: str, exc: httpx.TransportError) -> Fault:
        error = self.transfer_error(exc, urlsplit(url).netloc)
        final = isinstance(error, TransferStalled) and error.final
        return Fault(error, retryable=not (final or (not_tls(exc) and url.startswith("https:"))))

    def _send(self, request: httpx.Request, retry: bool = True) -> httpx.Response:
        """The retry layer: ``request`` sent until it gets an answer that is not transient."""
        url = str(request.url)
        return self._retrier.send(lambda: self._send_once(request), lambda exc: self._judge(url, exc), retry)

    def _send_unauthenticated(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> httpx.Response:
        return self._send(self._build(method, url, headers, body))

    def _authenticated(self, request: httpx.Request, scopes: tuple[str, ...], retry: bool) -> httpx.Response:
        """The authentication layer: ``request`` sent as its flow says. Each reply the flow does
        not return is released within its bound (httpx's own driver would read it whole)."""
        flow = self.auth.flow(scopes).sync_auth_flow(request)
        outgoing = next(flow)
        while True:
            response = self._send(outgoing, retry)
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return response
            except BaseException:
                response.close()
                raise
            release(response)

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
        self.origin.check_target(url, "pointed to")
        response = self._authenticated(self._build(method, url, headers, body, timeout), scopes, retry)
        if follow_redirects:
            response = self._follow(method, url, response, headers, scopes)
        return response

    def _follow(
        self,
        method: str,
        url: str,
        response: httpx.Response,
        headers: Mapping[str, str] | None,
        scopes: tuple[str, ...],
    ) -> httpx.Response:
        """The redirect layer: each hop checked by the origin policy, sent by its own origin's
        authentication (the registry's credentials do not follow a hop elsewhere)."""
        seen = {url}
        for _ in range(MAX_REDIRECTS):
            if response.status_code not in REDIRECT_STATUS:
                return response
            location = response.headers.get("location", "")
            release(response)
            if not location:
                raise RegistryError(f"{self.registry} sent a redirect without a location", status=response.status_code)
            url = urljoin(url, location)
            self.origin.check_target(url, "redirected to")
            if url in seen:
                raise RegistryError(f"{self.registry}: redirect loop at {redact_url(url)}")
            seen.add(url)
            response = self._authenticated(self._build(method, url, headers, None), scopes, True)
        if response.status_code in REDIRECT_STATUS:
            response.close()
            raise RegistryError(f"{self.registry}: more than {MAX_REDIRECTS} redirects", status=response.status_code)
        return response

    # -- what callers use --------------------------------------------------------------------------

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
        return reply_of(response)

    def pause(self, attempt: int, retry_after: str | None = None) -> None:
        """Wait before try ``attempt + 1``: exponential backoff with jitter, or what the
        registry's ``Retry-After`` asks (both capped)."""
        self._retrier.pause(attempt, retry_after)

    def transfer_error(self, exc: httpx.TransportError, where: str, reading: str = "") -> NetworkError:
        """The error to report for ``exc`` met talking to ``where`` (while ``reading`` a body, if
        given). A stall counts against the one retry this client gives stalls."""
        if is_stall(exc):
            return self._stalls.stalled(f"reading {reading} from {where}" if reading else where)
        if reading:
            return NetworkError(f"reading {reading} failed: {describe(exc)}")
        return NetworkError(f"cannot reach {where}: {describe(exc)}")

    def login_check(self) -> None:
        """Verify the current credential against the registry, as ``docker login`` does."""
        challenge = self.ping()
        if challenge is None:
            return
        if challenge.scheme == "basic":
            reply = self.request("GET", "/v2/")
            if reply.status == 401:
                raise AuthError(f"{self.registry}: username or password rejected", status=401)
            self.raise_for_status(reply, "/v2/")
        elif challenge.scheme == "bearer":
            self.auth.fetch_token(challenge.realm, challenge.params.get("service", ""), ())

    def raise_for_status(self, reply: Reply, what: str, repository: str = "", expected: Collection[int] = ()) -> None:
        """Raise the error an error reply (400 and above) means — or with ``expected``, any reply
        of another status —, with its status, the registry's error codes and ``repository``."""
        error = status_error(self.registry, reply, what, repository, expected)
        if error is not None:
            raise error

    def close(self) -> None:
        self._http.close()
