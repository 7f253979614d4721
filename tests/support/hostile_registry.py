"""A malicious registry on loopback, for tests that play the attacker (stdlib ``http.server`` only).

``HostileRegistry(mode)`` is a small working registry (blobs, upload sessions, manifests, in
memory; Basic or Bearer auth, or none) that misbehaves in one way, chosen by ``mode``. It listens
on ``127.0.0.1`` on one port that speaks TLS *and* plain HTTP (it peeks at the first byte of each
connection: ``0x16`` opens a TLS handshake), so a test can see whether anything reached the port in
clear text. A second listener, the "storage" host on ``127.0.0.2``, answers every request with
401 and a challenge of its own (``storage_challenge``: ``"basic"`` or ``"bearer"``, a realm on
itself): the test can then check it never received a credential. Every request on both
listeners is recorded (:class:`Seen`: listener, TLS or not, method, path, headers, body).

The server lives at most ``lifetime`` seconds, and every connection it holds open (a trickle, a
body never read) ends when it stops.

Modes (``honest`` misbehaves in no way):

``upload-elsewhere``     upload sessions get a ``Location`` on the storage host
``blob-elsewhere``       blob GETs are redirected (307) to the storage host
``redirect-to-http``     blob GETs are redirected to ``http://`` on this very host and port
``upload-to-http``       upload sessions get a ``Location`` of ``http://`` on this host and port
``realm-over-http``      the Bearer realm is ``http://`` on this host and port
``endless-ping``         ``GET /v2/`` answers with a body without end
``huge-ping``            ``GET /v2/`` answers ``Content-Length: 4 GiB`` and streams zeros
``endless-errors``       every 4xx reply has a body without end
``huge-errors``          every 4xx reply claims 4 GiB and streams zeros
``endless-token``        the token reply (200) has a body without end
``endless-manifest-put`` a manifest PUT is stored, then answered 201 with a body without end
``zstd-manifest``        manifest GETs answer ``Content-Encoding: zstd``: 64 KiB that expand to 2 GiB
``trickle-ping``         ``GET /v2/`` answers one byte every 2 s
``trickle-blob``         blob GETs send their headers, then one byte of the body every 2 s
``never-read-uploads``   a PUT or PATCH with a body is never read, never answered
``token-nesting-bomb``   the token reply is ``[[[[…]]]]``, 100,000 deep
``token-expires-inf``    the token reply says ``"expires_in": 1e400``
``chunk-min-garbage``    upload sessions say ``OCI-Chunk-Min-Length: plenty``
``redirect-to-file``     blob GETs are redirected to ``file:///etc/passwd``
``manifest-redirect``    manifest GETs are answered 302 (to the same manifest)
``escape-errors``        every error's code and message hold terminal escape sequences (:data:`ESCAPES`)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import secrets
import socket
import ssl
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from tests.support.loopback import LoopbackHTTPServer, LoopbackService, request_body
from tests.support.pki import KeyPair

MODES = (
    "honest",
    "upload-elsewhere",
    "blob-elsewhere",
    "redirect-to-http",
    "upload-to-http",
    "realm-over-http",
    "endless-ping",
    "huge-ping",
    "endless-errors",
    "huge-errors",
    "endless-token",
    "endless-manifest-put",
    "zstd-manifest",
    "trickle-ping",
    "trickle-blob",
    "never-read-uploads",
    "token-nesting-bomb",
    "token-expires-inf",
    "chunk-min-garbage",
    "redirect-to-file",
    "manifest-redirect",
    "escape-errors",
)
#: What a registry's error says in ``escape-errors`` mode: erase the line, go up one, write a line
#: of our own over what zeroimage said; set the window title; ring the bell; a C1 CSI; a
#: right-to-left override.
ESCAPES = "\x1b[2K\x1b[1A\rLogin Succeeded\x1b]0;owned\x07 \x9b31m red \u202eevil"
Auth = Literal["none", "basic", "bearer"]

REGISTRY = "registry"
STORAGE = "storage"
#: What is kept of a request body in :class:`Seen` (enough to find a secret or layer bytes in it).
MAX_RECORDED = 1 << 20
HUGE = 4 << 30
TRICKLE_INTERVAL = 2.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_UPLOAD_START = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$")
_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]+)$")


@dataclass
class Seen:
    """One request a listener received: over TLS or not, its headers (lower-case keys) and body."""

    listener: str
    tls: bool
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def text(self) -> str:
        """Everything the request carried, as text (to search for a secret)."""
        lines = [f"{self.method} {self.path}", *(f"{k}: {v}" for k, v in self.headers.items())]
        return "\n".join(lines) + "\n" + self.body.decode("latin-1")


@dataclass
class _Upload:
    name: str
    data: bytearray = field(default_factory=bytearray)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _zstd_bomb(size: int = 2 << 30) -> bytes:
    """A zstd frame of a few kilobytes that expands to ``size`` zero bytes."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    block = bytes(1 << 20)
    out = [compressor.compress(block) for _ in range(size // len(block))]
    out.append(compressor.flush())
    return b"".join(out)


class _Server(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], owner: HostileRegistry, listener: str) -> None:
        self.owner = owner
        self.listener = listener
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Peek at the first byte: a TLS handshake (0x16) is answered with TLS, anything else plainly."""
        try:
            request.settimeout(10)
            first = request.recv(1, socket.MSG_PEEK)
            context = self.owner._tls_context
            if first == b"\x16" and context is not None:
                request = context.wrap_socket(request, server_side=True)
                self.track(request)
            request.settimeout(None)
        except (OSError, ssl.SSLError):
            return
        try:
            _Handler(request, client_address, self)
        finally:
            self.untrack(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        try:
            self.server.owner._handle(self)
        except (OSError, ssl.SSLError, ValueError):
            self.close_connection = True

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    @property
    def tls(self) -> bool:
        return isinstance(self.connection, ssl.SSLSocket)

    def read_body(self) -> bytes:
        """The whole request body (Content-Length or chunked)."""
        return b"".join(request_body(self))

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def endless(self, status: int, headers: dict[str, str] | None = None, *, declared: int | None = None) -> None:
        """Reply with a body that never ends (chunked), or that claims ``declared`` bytes of zeros,
        until the client goes away or the server stops."""
        self.close_connection = True
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        if declared is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(declared))
        self.end_headers()
        if self.command == "HEAD":
            return
        block = b'{"errors": [' + b" " * 65500 if declared is None else bytes(65536)
        piece = b"%x\r\n%s\r\n" % (len(block), block) if declared is None else block
        sent = 0
        while not self.server.owner.stopping.is_set() and (declared is None or sent < declared):
            self.wfile.write(piece)
            sent += len(block)

    def trickle(self, data: bytes) -> None:
        """Send ``data`` one byte every TRICKLE_INTERVAL seconds, until the server stops."""
        self.close_connection = True
        for byte in data:
            if self.server.owner.stopping.wait(TRICKLE_INTERVAL):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()


class HostileRegistry(LoopbackService):
    """See the module docstring. ``host`` is ``127.0.0.1:PORT``; ``storage_host`` ``127.0.0.2:PORT``."""

    def __init__(
        self,
        mode: str = "honest",
        *,
        auth: Auth = "basic",
        tls: KeyPair | None = None,
        username: str = "alice",
        password: str = "hostile-test-secret-" + secrets.token_hex(8),
        storage_challenge: Literal["basic", "bearer"] = "bearer",
        lifetime: float = 180.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        super().__init__(name="hostile-registry", lifetime=lifetime)
        self.mode = mode
        self.auth = auth
        self.username = username
        self.password = password
        self.token = "hostile-token-" + secrets.token_hex(8)
        self.storage_challenge = storage_challenge
        self.requests: list[Seen] = []
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # (name, tag or digest) -> (type, bytes)
        self._uploads: dict[str, _Upload] = {}
        self._tls_context: ssl.SSLContext | None = None
        if tls is not None:
            self._tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls_context.load_cert_chain(tls.cert_path, tls.key_path)
        self._lock = threading.Lock()
        self._bomb: bytes | None = _zstd_bomb() if mode == "zstd-manifest" else None

    # -- what a test uses ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.servers[0].host

    @property
    def storage_host(self) -> str:
        return self.servers[1].host

    @property
    def scheme(self) -> str:
        return "https" if self._tls_context is not None else "http"

    def secret_forms(self) -> list[str]:
        """The password, the Basic credential and the token as they could appear on the wire."""
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return [self.password, basic, self.token]

    def seen(self, listener: str | None = None, *, tls: bool | None = None) -> list[Seen]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (listener is None or r.listener == listener) and (tls is None or r.tls == tls)
            ]

    def leaked_to(self, requests: list[Seen]) -> list[str]:
        """Which secret forms, or Authorization headers, the given requests carried."""
        found = [form for form in self.secret_forms() for r in requests if form in r.text()]
        found += [f"Authorization on {r.method} {r.path}" for r in requests if "authorization" in r.headers]
        return found

    def seed(self, name: str = "base", tag: str = "1") -> str:
        """A tiny linux/amd64 image (one layer, one file) as ``name:tag``; its manifest digest."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo("hello.txt")
            content = b"hello from the hostile registry\n"
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        layer = gzip.compress(raw.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [_digest(raw.getvalue())]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        with self._lock:
            self.blobs[_digest(layer)] = layer
            self.blobs[_digest(config)] = config
            self.manifests[(name, tag)] = (OCI_MANIFEST, manifest)
            self.manifests[(name, _digest(manifest))] = (OCI_MANIFEST, manifest)
        return _digest(manifest)

    # -- life ------------------------------------------------------------------------------------

    def listen(self) -> list[LoopbackHTTPServer]:
        return [_Server(("127.0.0.1", 0), self, REGISTRY), _Server(("127.0.0.2", 0), self, STORAGE)]

    # -- the registry ------------------------------------------------------------------------------

    def _realm(self) -> str:
        scheme = "http" if self.mode == "realm-over-http" else self.scheme
        return f"{scheme}://{self.host}/token"

    def _challenge(self) -> str:
        if self.auth == "bearer":
            return f'Bearer realm="{self._realm()}",service="hostile"'
        return 'Basic realm="hostile"'

    def _authorized(self, handler: _Handler) -> bool:
        given = handler.headers.get("Authorization") or ""
        if self.auth == "none":
            return True
        if self.auth == "bearer":
            return given == f"Bearer {self.token}"
        return given == "Basic " + self.secret_forms()[1]

    def _record(self, handler: _Handler) -> Seen:
        seen = Seen(
            handler.server.listener,
            handler.tls,
            handler.command,
            handler.path,
            {k.lower(): v for k, v in handler.headers.items()},
        )
        with self._lock:
            self.requests.append(seen)
        return seen

    def _handle(self, handler: _Handler) -> None:
        seen = self._record(handler)
        path, query = urlsplit(handler.path).path, dict(parse_qsl(urlsplit(handler.path).query))
        mode = self.mode
        if handler.server.listener == STORAGE:
            seen.body = handler.read_body()[:MAX_RECORDED]
            challenge = (
                f'Bearer realm="http://{self.storage_host}/token",service="storage"'
                if self.storage_challenge == "bearer"
                else 'Basic realm="storage"'
            )
            self._error(handler, 401, "UNAUTHORIZED", {"WWW-Authenticate": challenge})
            return
        has_body = int(handler.headers.get("Content-Length") or 0) > 0 or bool(handler.headers.get("Transfer-Encoding"))
        if mode == "never-read-uploads" and handler.command in ("PUT", "PATCH") and has_body:
            self.stopping.wait()  # neither read nor answered: the client's bytes pile up
            handler.close_connection = True
            return
        seen.body = handler.read_body()[:MAX_RECORDED]
        if path == "/token":
            self._token(handler)
            return
        if path in ("/v2/", "/v2"):
            self._ping(handler)
            return
        if not self._authorized(handler):
            self._error(handler, 401, "UNAUTHORIZED", {"WWW-Authenticate": self._challenge()})
            return
        if (match := _UPLOAD_START.match(path)) and handler.command == "POST":
            self._start_upload(handler, match["name"])
            return
        if match := _UPLOAD.match(path):
            self._upload(handler, match["name"], match["id"], query.get("digest"), seen.body)
            return
        if match := _BLOB.match(path):
            self._blob(handler, match["name"], match["digest"])
            return
        if match := _MANIFEST.match(path):
            self._manifest(handler, match["name"], match["ref"], seen.body)
            return
        self._error(handler, 404, "NAME_UNKNOWN")

    def _error(self, handler: _Handler, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        if self.mode == "endless-errors" and status >= 400:
            handler.endless(status, headers)
        elif self.mode == "huge-errors" and status >= 400:
            handler.endless(status, headers, declared=HUGE)
        elif self.mode == "escape-errors":
            body = json.dumps({"errors": [{"code": code + ESCAPES, "message": ESCAPES}]}).encode()
            handler.reply(status, body, {"Content-Type": "application/json", **(headers or {})})
        else:
            body = json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]}).encode()
            handler.reply(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _ping(self, handler: _Handler) -> None:
        status = 200 if self._authorized(handler) else 401
        headers = {} if status == 200 else {"WWW-Authenticate": self._challenge()}
        if self.mode == "endless-ping":
            handler.endless(status, headers)
        elif self.mode == "huge-ping":
            handler.endless(status, headers, declared=HUGE)
        elif self.mode == "trickle-ping":
            head = f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers.items()
            )
            handler.trickle((head + "\r\n{}").encode())
        elif status == 401:
            self._error(handler, 401, "UNAUTHORIZED", headers)
        else:
            handler.reply(200, b"{}", {"Content-Type": "application/json"})

    def _token(self, handler: _Handler) -> None:
        if handler.headers.get("Authorization") != "Basic " + self.secret_forms()[1]:
            self._error(handler, 401, "UNAUTHORIZED")
            return
        if self.mode == "endless-token":
            handler.endless(200)
            return
        body: bytes
        if self.mode == "token-nesting-bomb":
            body = b"[" * 100_000 + b"]" * 100_000
        elif self.mode == "token-expires-inf":
            body = b'{"token": "%s", "expires_in": 1e400}' % self.token.encode()
        else:
            body = json.dumps({"token": self.token, "expires_in": 300}).encode()
        handler.reply(200, body, {"Content-Type": "application/json"})

    def _start_upload(self, handler: _Handler, name: str) -> None:
        session = secrets.token_hex(8)
        with self._lock:
            self._uploads[session] = _Upload(name)
        location = f"/v2/{name}/blobs/uploads/{session}"
        if self.mode == "upload-elsewhere":
            location = f"http://{self.storage_host}/upload/{session}"
        elif self.mode == "upload-to-http":
            location = f"http://{self.host}{location}"
        headers = {"Location": location, "Range": "0-0", "Docker-Upload-UUID": session}
        if self.mode == "chunk-min-garbage":
            headers["OCI-Chunk-Min-Length"] = "plenty"
        handler.reply(202, b"", headers)

    def _upload(self, handler: _Handler, name: str, session: str, digest: str | None, body: bytes) -> None:
        with self._lock:
            upload = self._uploads.get(session)
        if upload is None or upload.name != name:
            self._error(handler, 404, "BLOB_UPLOAD_UNKNOWN")
            return
        if handler.command == "DELETE":
            with self._lock:
                self._uploads.pop(session, None)
            handler.reply(204)
            return
        upload.data += body
        location = f"/v2/{name}/blobs/uploads/{session}"
        if handler.command == "PATCH":
            handler.reply(202, b"", {"Location": location, "Range": f"0-{max(len(upload.data) - 1, 0)}"})
            return
        if handler.command != "PUT" or digest is None:
            self._error(handler, 400, "UNSUPPORTED")
            return
        if _digest(bytes(upload.data)) != digest:
            self._error(handler, 400, "DIGEST_INVALID")
            return
        with self._lock:
            self.blobs[digest] = bytes(upload.data)
            self._uploads.pop(session, None)
        handler.reply(201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    def _blob(self, handler: _Handler, name: str, digest: str) -> None:
        with self._lock:
            data = self.blobs.get(digest)
        if data is None:
            self._error(handler, 404, "BLOB_UNKNOWN")
            return
        if handler.command == "GET" and not handler.tls and self.mode == "redirect-to-http":
            pass  # the redirect target itself: serve it (and the test sees it came in clear)
        elif handler.command == "GET":
            target = {
                "blob-elsewhere": f"http://{self.storage_host}/blob/{digest}",
                "redirect-to-http": f"http://{self.host}/v2/{name}/blobs/{digest}",
                "redirect-to-file": "file:///etc/passwd",
            }.get(self.mode)
            if target is not None:
                handler.reply(307, b"", {"Location": target})
                return
            if self.mode == "trickle-blob":
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.trickle(data)
                return
        handler.reply(200, data, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest})

    def _manifest(self, handler: _Handler, name: str, ref: str, body: bytes) -> None:
        if handler.command == "PUT":
            kind = handler.headers.get("Content-Type") or OCI_MANIFEST
            digest = _digest(body)
            with self._lock:
                self.manifests[(name, ref)] = (kind, body)
                self.manifests[(name, digest)] = (kind, body)
            headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
            if self.mode == "endless-manifest-put":
                handler.endless(201, headers)
            else:
                handler.reply(201, b"", headers)
            return
        with self._lock:
            found = self.manifests.get((name, ref))
        if found is None:
            self._error(handler, 404, "MANIFEST_UNKNOWN")
            return
        kind, data = found
        if self.mode == "manifest-redirect" and handler.command == "GET":
            handler.reply(302, b"", {"Location": f"/v2/{name}/manifests/{ref}"})
            return
        if self.mode == "zstd-manifest" and handler.command == "GET":
            assert self._bomb is not None
            headers = {"Content-Type": kind, "Content-Encoding": "zstd", "Docker-Content-Digest": _digest(data)}
            handler.reply(200, self._bomb, headers)
            return
        handler.reply(200, data, {"Content-Type": kind, "Docker-Content-Digest": _digest(data)})
