"""Registry authentication: WWW-Authenticate challenges, Basic, and Bearer tokens.

:class:`Authenticator` holds what one registry's authentication knows: the challenge it last
gave, the credential to answer it with, and its Bearer tokens, which live in memory only, cached
per (realm, service, scope set) until shortly before they expire. It answers a challenge with
Basic credentials, or with a token from the realm the challenge names: fetched with the stored
username and password (``GET realm?service=&scope=&account=``), or with an identity token by an
OAuth2 refresh-token grant (``POST realm``, ``grant_type=refresh_token``), as Docker does. A
token reply is read as sent and refused beyond :data:`MAX_TOKEN_REPLY`.

A credential is only ever sent to the registry's own origin, or to the token realm that registry
named in its challenge (:mod:`.origin` has the rules); :mod:`.authflow` applies them to each
request, as an ``httpx.Auth`` flow.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from zeroimage.errors import AuthError, NetworkError, RegistryError
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.credentials import Credential
from zeroimage.transports.registry.origin import RegistryOrigin
from zeroimage.transports.registry.replies import read_at_most

if TYPE_CHECKING:
    from zeroimage.transports.registry.authflow import RegistryAuth

#: The largest token reply taken (a JWT is a few kilobytes).
MAX_TOKEN_REPLY = 1 << 20
#: The ``client_id`` of a refresh-token grant.
CLIENT_ID = "zeroimage"

#: Sends a request without authentication, retrying transient failures: (method, url, headers,
#: body) to the streamed reply.
Send = Callable[[str, str, Mapping[str, str], bytes | None], "httpx.Response"]
#: The error for a transport fault met reading a reply from a host (fault, host, what was read).
TransferError = Callable[["httpx.TransportError", str, str], NetworkError]

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer" (lowercase)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` value (``Bearer realm="...",service="...",scope="..."``)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match or match.end() == pos:
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = match.end()
    return Challenge(scheme.lower(), params)


def basic_header(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


#: The longest a token is kept, whatever its reply claims (the spec's default lifetime is 60 s).
MAX_TOKEN_LIFETIME = 24 * 3600


def parse_token_reply(data: bytes) -> tuple[str, int] | None:
    """The token of a token service's JSON reply (``token`` or ``access_token``) and its lifetime
    in seconds (``expires_in``: 60 when absent or not positive, at most :data:`MAX_TOKEN_LIFETIME`);
    None for anything else a server may send (not JSON, nested too deep, no token, a lifetime
    that is not a finite number)."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    token = body.get("token") or body.get("access_token")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.strip().isdigit() and len(expires_in) < 16:
        expires_in = int(expires_in)  # as some token services send it
    if not isinstance(token, str) or not token:
        return None
    if expires_in is None:
        return token, 60
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not math.isfinite(expires_in):
        return None
    return token, int(min(expires_in, MAX_TOKEN_LIFETIME)) if expires_in > 0 else 60


def scope_for(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens by (realm, service, scopes), kept in memory only, thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._lock = threading.Lock()

    def get(self, realm: str, service: str, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            token = self._tokens.get((realm, service, scopes))
            if token and token.expires > time.monotonic():
                return token.value
            return None

    def put(self, realm: str, service: str, scopes: tuple[str, ...], value: str, expires_in: int) -> None:
        # Refresh a little early; the spec's default lifetime is 60 s.
        lifetime = max(expires_in if expires_in > 0 else 60, 10) - 5
        with self._lock:
            self._tokens[(realm, service, scopes)] = _Token(value, time.monotonic() + lifetime)

    def forget(self, realm: str, service: str, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop((realm, service, scopes), None)


class Authenticator:
    """The authentication of one registry (see the module's rules). Thread-safe: requests of
    several threads share its challenge and its tokens.

    ``credential`` gives the credential to use (or None); ``send`` sends the token requests;
    ``transfer_error`` reports a fault met reading a token reply."""

    def __init__(
        self,
        origin: RegistryOrigin,
        credential: Callable[[], Credential | None],
        send: Send,
        transfer_error: TransferError,
    ) -> None:
        self.origin = origin
        self.credential = credential
        self._send = send
        self._transfer_error = transfer_error
        self.tokens = TokenCache()
        #: The registry's last challenge (from its ping, or a 401 of its own origin).
        self.challenge: Challenge | None = None

    def flow(self, scopes: tuple[str, ...] = ()) -> RegistryAuth:
        """The ``httpx.Auth`` flow of a request that needs ``scopes``."""
        from zeroimage.transports.registry.authflow import RegistryAuth

        return RegistryAuth(self, scopes)

    def authorization(
        self, scopes: tuple[str, ...], challenge: Challenge | None = None, renew: bool = False
    ) -> str | None:
        """The ``Authorization`` value answering ``challenge`` (else the last one) for ``scopes``;
        None when there is no challenge, or nothing to answer it with. ``renew`` forgets the
        cached token (the registry refused it) and adds the scope the challenge asks for."""
        challenge = challenge or self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credential = self.credential()
            if credential is None or not credential.username:
                return None
            return basic_header(credential)
        if challenge.scheme == "bearer":
            realm, service = challenge.realm, challenge.params.get("service", "")
            asked = {challenge.params["scope"]} if renew and "scope" in challenge.params else set()
            wanted = tuple(sorted(set(scopes) | asked))
            if renew:
                self.tokens.forget(realm, service, wanted)
            token = self.tokens.get(realm, service, wanted)
            if token is None:
                token, expires_in = self.fetch_token(realm, service, wanted)
                self.tokens.put(realm, service, wanted, token, expires_in)
            return f"Bearer {token}"
        return None

    def fetch_token(self, realm: str, service: str, scopes: tuple[str, ...]) -> tuple[str, int]:
        """A token and its lifetime from ``realm``, for ``service`` and ``scopes``."""
        registry = self.origin.registry
        self.origin.check_realm(realm)
        host = urlsplit(realm).netloc
        credential = self.credential()
        headers: dict[str, str] = {}
        if credential is not None and credential.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "client_id": CLIENT_ID,
                "service": service,
                "scope": " ".join(scopes),
            }
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._send("POST", realm, headers, urlencode(form).encode())
        else:
            params: list[tuple[str, str]] = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            if credential is not None and credential.username:
                headers["Authorization"] = basic_header(credential)
                params.append(("account", credential.username))
            url = str(httpx.URL(realm).copy_merge_params(tuple(params))) if params else realm
            response = self._send("GET", url, headers, None)
        try:
            status = response.status_code
            if status in (401, 403):
                if credential is not None:
                    raise AuthError(
                        f"{registry}: the stored credentials were rejected; run `zeroimage login {registry}`",
                        status=status,
                    )
                raise AuthError(f"{registry}: authentication required; run `zeroimage login {registry}`", status=status)
            if status != 200:
                raise RegistryError(f"token service of {registry} answered {status}", status=status)
            try:
                data, whole = read_at_most(response, MAX_TOKEN_REPLY)
            except httpx.TransportError as exc:
                raise self._transfer_error(exc, host, "a token") from None
        finally:
            response.close()
        if not whole:
            raise RegistryError(f"the token reply of {host} is larger than {MAX_TOKEN_REPLY} bytes; refused")
        parsed = parse_token_reply(data)
        if parsed is None:
            raise RegistryError(f"the token service of {registry} sent a malformed reply (no usable token)")
        return parsed
