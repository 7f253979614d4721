"""Registry authentication: WWW-Authenticate challenges, Basic, and Bearer tokens.

Tokens live in memory only, cached per (realm, service, scope set) until shortly before they
expire. A credential is only ever sent to the registry host it belongs to, or to the token
realm that registry named in its challenge (see :mod:`.client` for the origin rules).
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field

from zeroimage.transports.registry.credentials import Credential

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
