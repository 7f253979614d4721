"""A test bearer-token server for the CNCF distribution registry's ``auth: token`` mode.

It speaks the Docker token protocol (what Docker Hub, GHCR and Quay implement):

* ``GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]`` with optional Basic
  credentials (``offline_token=true`` also returns a ``refresh_token``);
* ``POST /token`` with an OAuth2 form: ``grant_type=password`` (``username``/``password``,
  ``access_type=offline`` returns a ``refresh_token``) or ``grant_type=refresh_token``
  (``refresh_token`` must be the configured identity/refresh token).

Tokens are RS256 JWTs signed with the key of the registry's ``rootcertbundle`` certificate, whose
DER form travels in the ``x5c`` header. Claims: ``iss``, ``sub``, ``aud``, ``exp``, ``nbf``, ``iat``,
``jti``, ``access``. Every request is recorded in :attr:`TokenServer.requests` for assertions.

Runs on 127.0.0.1 in a daemon thread (``http.server``), optionally over TLS.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .pki import KeyPair

ANONYMOUS = ""


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server saw."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    has_authorization: bool
    status: int
    subject: str | None = None
    """The identity the request was authenticated as (``""`` for anonymous, None if refused)."""
    granted: list[dict[str, object]] = field(default_factory=list)
    """The ``access`` claim of the token issued (empty if none was)."""

    @property
    def scopes(self) -> list[str]:
        """All requested scopes (from the query string and the form, space-separated values split)."""
        raw = self.query.get("scope", []) + self.form.get("scope", [])
        return [s for value in raw for s in value.split()]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_jwt_unverified(token: str) -> tuple[dict[str, object], dict[str, object]]:
    """Return ``(header, claims)`` of a JWT without checking its signature (for assertions)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")

    def part(s: str) -> dict[str, object]:
        value: dict[str, object] = json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        return value

    return part(parts[0]), part(parts[1])


class TokenServer:
    """Issues registry bearer tokens; see the module docstring for the protocol.

    Policy (attributes may be changed by a test at any time):

    * ``users``: username → password accepted in Basic credentials or the password grant.
    * ``user_actions``: actions a known user may get (None: whatever they ask for).
    * ``anonymous_actions``: actions granted without credentials (default: ``pull`` only).
    * ``refresh_token``: the identity/refresh token accepted by ``grant_type=refresh_token``
      (authenticating as ``refresh_token_user``) and returned for offline requests.
    * ``fail_with``: if set, every request is answered with this HTTP status (simulated outage).
    * ``expires_in``: token lifetime in seconds.
    """

    def __init__(
        self,
        signer: KeyPair,
        *,
        service: str,
        issuer: str,
        users: dict[str, str] | None = None,
        anonymous_actions: Iterable[str] = ("pull",),
        user_actions: Iterable[str] | None = None,
        refresh_token: str | None = None,
        refresh_token_user: str | None = None,
        tls: KeyPair | None = None,
        expires_in: int = 300,
    ) -> None:
        self.signer = signer
        self.service = service
        self.issuer = issuer
        self.users: dict[str, str] = dict(users or {})
        self.anonymous_actions: frozenset[str] = frozenset(anonymous_actions)
        self.user_actions: frozenset[str] | None = None if user_actions is None else frozenset(user_actions)
        self.refresh_token: str = refresh_token or "idt-" + secrets.token_urlsafe(24)
        self.refresh_token_user: str = refresh_token_user or next(iter(self.users), "refresh-user")
        self.fail_with: int | None = None
        self.expires_in = expires_in
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._tls = tls
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        """The token endpoint (``<url>/token``), used as the registry's ``realm``."""
        return f"{self.url}/token"

    def start(self) -> TokenServer:
        """Start serving on a free port of 127.0.0.1 (idempotent). Returns self."""
        if self._httpd is not None:
            return self
        handler = _make_handler(self)
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        if self._tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self._tls.cert_path, self._tls.key_path)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the port is kept, so :meth:`start` comes back on the same realm)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # ------------------------------------------------------------------ tokens

    def grant(self, subject: str, scopes: Iterable[str]) -> list[dict[str, object]]:
        """The ``access`` claim for ``subject`` (``""`` = anonymous) asking for ``scopes``.

        Scopes naming the same resource are merged into one entry; actions not allowed are dropped
        (an entry left without actions is omitted).
        """
        allowed = self.anonymous_actions if subject == ANONYMOUS else self.user_actions
        merged: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            rtype, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            granted = merged.setdefault((rtype, name), [])
            for action in actions:
                if action and action not in granted and (allowed is None or action in allowed or "*" in allowed):
                    granted.append(action)
        return [{"type": t, "name": n, "actions": a} for (t, n), a in merged.items() if a]

    def issue(self, subject: str, access: list[dict[str, object]], *, service: str | None = None) -> str:
        """A signed RS256 JWT for ``subject`` with ``access``, audience ``service``."""
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.signer.cert_der).decode("ascii")],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service or self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.signer.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def verify(self, token: str) -> dict[str, object]:
        """Check a token's signature against the signing certificate; return its claims."""
        head, _, sig = token.rpartition(".")
        public_key = self.signer.cert.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(
            base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)),
            head.encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        return decode_jwt_unverified(token)[1]


def _make_handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "zeroimage-test-token-server/1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        # -------------------------------------------------------------- plumbing

        def _send_json(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _basic(self) -> tuple[str, str] | None:
            """(user, password) from Basic credentials, None if absent; ValueError if malformed."""
            value = self.headers.get("Authorization")
            if not value:
                return None
            scheme, _, param = value.partition(" ")
            if scheme.lower() != "basic":
                raise ValueError(f"unsupported authorization scheme {scheme!r}")
            try:
                user, sep, password = base64.b64decode(param.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ValueError("malformed Basic credentials") from e
            if not sep:
                raise ValueError("malformed Basic credentials")
            return user, password

        def _handle(self, method: str) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
            form: dict[str, list[str]] = {}
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length).decode("utf-8", "replace")
                form = urllib.parse.parse_qs(payload, keep_blank_values=True)
            has_auth = "Authorization" in self.headers

            def done(
                status: int,
                body: dict[str, object],
                subject: str | None = None,
                granted: list[dict[str, object]] | None = None,
            ) -> None:
                server._record(
                    TokenRequest(
                        method=method,
                        path=parsed.path,
                        query=query,
                        form=form,
                        has_authorization=has_auth,
                        status=status,
                        subject=subject,
                        granted=list(granted or []),
                    )
                )
                headers = {}
                if status == 401:
                    headers["WWW-Authenticate"] = 'Basic realm="zeroimage-test-token-server"'
                self._send_json(status, body, headers)

            if server.fail_with is not None:
                return done(server.fail_with, {"errors": [{"code": "UNAVAILABLE", "message": "forced"}]})
            if parsed.path != "/token":
                return done(404, {"errors": [{"code": "NOT_FOUND", "message": parsed.path}]})

            def first(name: str, source: dict[str, list[str]]) -> str:
                values = source.get(name)
                return values[0] if values else ""

            params = form if method == "POST" else query
            service = first("service", params) or first("service", query)
            scopes = [s for v in params.get("scope", []) for s in v.split()]
            offline = False
            subject: str

            if method == "GET":
                try:
                    creds = self._basic()
                except ValueError as e:
                    return done(401, {"details": str(e)})
                if creds is None:
                    subject = ANONYMOUS
                else:
                    user, password = creds
                    if server.users.get(user) != password:
                        return done(401, {"details": "invalid username or password"})
                    subject = user
                offline = first("offline_token", query) == "true" and subject != ANONYMOUS
            else:
                grant_type = first("grant_type", form)
                if grant_type == "password":
                    user, password = first("username", form), first("password", form)
                    if server.users.get(user) != password:
                        return done(401, {"error": "invalid_grant", "details": "invalid username or password"})
                    subject = user
                    offline = first("access_type", form) == "offline"
                elif grant_type == "refresh_token":
                    if first("refresh_token", form) != server.refresh_token:
                        return done(401, {"error": "invalid_grant", "details": "invalid refresh token"})
                    subject = server.refresh_token_user
                    offline = True
                else:
                    return done(400, {"error": "unsupported_grant_type", "details": grant_type})

            if service and service != server.service:
                return done(400, {"details": f"unknown service {service!r}"}, subject)
            access = server.grant(subject, scopes)
            token = server.issue(subject, access, service=service or None)
            body: dict[str, object] = {
                "token": token,
                "access_token": token,
                "expires_in": server.expires_in,
                "issued_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            }
            if offline:
                body["refresh_token"] = server.refresh_token
            return done(200, body, subject, access)

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            self._handle("POST")

    return Handler
