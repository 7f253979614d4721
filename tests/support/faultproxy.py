"""A fault-injecting HTTP/1.1 reverse proxy in front of a test registry (stdlib only).

``FaultProxy(upstream).start()`` listens on ``127.0.0.1`` (a free port) and forwards every request
to ``upstream`` (``http://127.0.0.1:PORT``, e.g. ``Registry.url`` of
:func:`tests.support.registry.start_registry`), streaming bodies both ways in 64 KiB pieces (request
bodies with ``Content-Length`` or ``Transfer-Encoding: chunked``; a chunked request body is
re-chunked to the upstream, a response without a length is re-chunked to the client). Upstream
URLs in ``Location``, ``Content-Location`` and ``Link`` response headers are rewritten to name the
listener the request came in on, so clients keep talking through the proxy (the upstream sees
``Host: <upstream>``, so the registry builds its absolute upload URLs with the upstream address).

Every request (on both listeners) is appended to ``proxy.requests`` as a :class:`RecordedRequest`
(method, path with query, a case-insensitive copy of the request headers, the status sent, the
fault injected or None, ...). ``proxy.mode`` can be changed at any time:

``pass``
    forward everything unchanged.
``flaky``
    the FIRST try of every distinct request fails, later tries pass. Requests are told apart by
    :func:`flaky_key`: ``METHOD PATH?QUERY`` where an upload session id in
    ``/v2/<name>/blobs/uploads/<id>`` is replaced by ``<session>`` and the registry's opaque
    ``_state`` query parameter is dropped (``digest``, ``mount``, ``from`` are kept). So a retry
    of the same call in the same or in a fresh upload session is "the same request" and passes,
    while e.g. the PUT that finishes blob A and the one that finishes blob B differ by ``digest``.
    (Corollary: all PATCHes and all plain ``POST .../blobs/uploads/`` of one repository share a
    key, so only the first of each fails.) Faults alternate between the kinds in
    ``proxy.flaky_kinds`` (default ``("503", "cut")``), counted over the flaky faults injected:

    * ``flaky-503``: ``503 Service Unavailable`` with ``Retry-After: 0`` and an OCI error body,
      without contacting the upstream (a request body is read and discarded first, so the
      connection stays usable).
    * ``cut``: only for GET and HEAD (POST/PUT/PATCH/DELETE always get the 503 kind, so a fault
      never leaves a half-done side effect behind). The request is forwarded; if the upstream
      reply has a body (GET, length >= 1 or unknown) the real status line, headers (full
      ``Content-Length``) and the first half of the body (``length // 2`` bytes) are sent and the
      connection is closed (``flaky-cut-body``); if it has no body (HEAD, 204, empty 20x) the
      connection is closed without any reply (``flaky-cut-before-reply``).

    ``proxy.flaky_filter`` (a regex searched in ``"METHOD PATH?QUERY"``, default None = all)
    limits which requests are subject to faults; ``reset_flaky()`` forgets the keys already seen.
``redirect-blobs``
    ``GET /v2/<name>/blobs/<digest>`` is forwarded to the upstream first (so auth challenges and
    404s are the real ones); if it answers 200 the body is discarded and the client gets ``307``
    with ``Location: http://127.0.0.2:PORT2/v2/<name>/blobs/<digest>?X-Faultproxy-Signature=T``,
    a second listener of this proxy (``proxy.redirect_host``; same port as the main listener when
    that is free on 127.0.0.2). Like a pre-signed storage URL, the token ``T`` carries the
    authorization: the second listener serves the blob by fetching it from the upstream with the
    ``Authorization`` header the MAIN listener saw on the redirected request, and never forwards
    an ``Authorization`` the client sends to it (it is only recorded, so a test can assert that
    the second host never saw one). Requests to the second listener without a known token get 403.
``redirect-loop``
    blob GETs that the upstream would answer 200 get ``307`` to the very same URL, forever.
``require-chunked``
    a monolithic blob upload, i.e. ``PUT /v2/<name>/blobs/uploads/<id>?digest=...`` with a
    non-empty body on a session that received no PATCH yet, is refused with
    ``proxy.monolithic_status`` (default ``416 Requested Range Not Satisfiable``, see below) and
    an OCI ``BLOB_UPLOAD_INVALID`` error, ``Location`` of the (still open) session and
    ``Range: 0-0``; the body is read and discarded, the upstream never sees it, so the client may
    continue the same session with PATCH. ``POST .../blobs/uploads/`` answers that open a session
    (202) get ``OCI-Chunk-Min-Length: 1048576`` (``proxy.chunk_min_length``). A single-POST
    monolithic upload (``POST ...uploads/?digest=`` with a body) has its body discarded and is
    forwarded as a plain session start (fault ``refuse-single-post``), as the distribution spec
    asks of registries without single-POST support. PATCHes, the empty final PUT and a PUT
    carrying the last chunk after PATCHes pass through.
    Why 416: no status is standardised for "monolithic not supported". 416 is what the OCI
    distribution spec prescribes for upload chunks a registry does not accept (out of order, or
    smaller than ``OCI-Chunk-Min-Length``), and the answer that makes a client fall back to a
    chunked upload; registries that silently ignore a monolithic body (old Pulp) end with
    ``400 DIGEST_INVALID``, and CDN front ends (Cloudflare) send ``413`` for big bodies - set
    ``monolithic_status`` to 400 or 413 to simulate those.
``big-manifest``
    manifest GET/HEADs that the upstream answers 200 get a 5 MiB (``proxy.big_manifest_size``)
    JSON body instead (valid JSON of the upstream's ``Content-Type``, padded by an annotation),
    with a correct ``Content-Length`` and a ``Docker-Content-Digest`` that is the real digest of
    that body (not the one asked for).
``wrong-digest``
    blob GETs get one byte of the body flipped (XOR 0x01 at offset ``length // 2``), same length,
    upstream headers (and its ``Docker-Content-Digest``) unchanged.
``down``
    every connection is closed at once (setting the mode shuts down all open client connections,
    also idle keep-alive ones and transfers in flight); new requests are read and then the
    connection is closed without a reply (the client sees EOF / "connection reset").

``fail_next(n, status=503)`` answers the next ``n`` requests (either listener, before the mode
applies, except ``down``) with ``status`` (plus ``Retry-After: 0`` for 429/503) and an OCI error body.

Fault names recorded in :attr:`RecordedRequest.fault`: ``flaky-503``, ``flaky-cut-body``,
``flaky-cut-before-reply``, ``redirect``, ``redirect-loop``, ``refuse-monolithic``,
``refuse-single-post``, ``chunk-min-length`` (the added header), ``big-manifest``, ``flip-byte``,
``down``, ``fail-next-<status>``; ``proxy.fault_count(prefix)`` counts them.

``proxy.errors`` holds the proxy's own failures (a test expects none); a client resetting or
closing a connection under it is the client's right and only counted, in ``proxy.hangups``.
``proxy.connections`` counts the client connections accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import itertools
import json
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .loopback import LoopbackHTTPServer, LoopbackService, request_body

MODES = (
    "pass",
    "flaky",
    "redirect-blobs",
    "redirect-loop",
    "require-chunked",
    "big-manifest",
    "wrong-digest",
    "down",
)

CHUNK = 64 * 1024
TOKEN_PARAM = "X-Faultproxy-Signature"
MAIN = "main"
REDIRECT = "redirect"

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
    }
)
_REWRITTEN = ("location", "content-location", "link")
_NON_IDEMPOTENT = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_UPLOAD_SESSION = re.compile(r"^(?P<prefix>/v2/.+/blobs/uploads/)(?P<id>[^/]+)$")
_UPLOAD_START = re.compile(r"^/v2/.+/blobs/uploads/?$")


class Headers(dict[str, str]):
    """A case-insensitive copy of HTTP headers: keys are stored lower-case, lookups ignore case.

    Repeated headers are joined with ``", "``.
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for key, value in items:
            lowered = key.lower()
            if dict.__contains__(self, lowered):
                value = f"{dict.__getitem__(self, lowered)}, {value}"
            dict.__setitem__(self, lowered, value)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        dict.__setitem__(self, key.lower(), value)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as seen by a listener of the proxy.

    ``listener`` is ``"main"`` or ``"redirect"`` (the 127.0.0.2 listener), ``host`` its
    ``HOST:PORT``; ``path`` includes the query; ``headers`` are the client's request headers.
    ``status`` is the status line sent back (None if the connection was closed before one was
    sent); ``fault`` the fault injected (None for plain forwarding); ``upstream_status`` what the
    upstream answered (None if it was not asked). ``bytes_in``/``bytes_out``: request and response
    body bytes that went through the proxy.
    """

    listener: str
    host: str
    method: str
    path: str
    headers: Headers
    status: int | None = None
    fault: str | None = None
    upstream_status: int | None = None
    response_headers: Headers = field(default_factory=Headers)
    bytes_in: int = 0
    bytes_out: int = 0
    time: float = field(default_factory=time.time)

    def __str__(self) -> str:
        extra = f" [{self.fault}]" if self.fault else ""
        return f"{self.listener} {self.method} {self.path} -> {self.status}{extra}"


def flaky_key(method: str, path: str) -> str:
    """The key that makes two requests "the same" for the ``flaky`` mode (see the module docstring)."""
    split = urlsplit(path)
    normalized = _UPLOAD_SESSION.sub(r"\g<prefix><session>", split.path)
    query = [(k, v) for k, v in parse_qsl(split.query, keep_blank_values=True) if k != "_state"]
    return f"{method} {normalized}" + (f"?{urlencode(query)}" if query else "")


def _oci_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class _Server(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], proxy: FaultProxy, listener: str) -> None:
        self.proxy = proxy
        self.listener = listener
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client may drop a kept-alive connection while the proxy waits for its next request, and
        # its kernel answers with a reset when a reply was left unread: that is the client's right,
        # not a fault of the proxy. Every other error is one.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            self.proxy._note_hangup()
            return
        self.proxy._note_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120
    server: _Server

    # ------------------------------------------------------------------ plumbing

    def setup(self) -> None:
        super().setup()
        self.server.proxy._note_connection()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if self.command is not None:
            super().send_error(code, message, explain)
            return
        # Not HTTP at all (zeroimage's TLS probe of a plain-HTTP registry): one write, then close,
        # as Go's server answers it. The client hangs up on the first bytes, so a second write
        # could meet its reset.
        self.close_connection = True
        self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n400 Bad Request")

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    @property
    def _proxy(self) -> FaultProxy:
        return self.server.proxy

    def _body_chunks(self, rec: RecordedRequest) -> Iterator[bytes]:
        """The request body, decoded, in pieces of at most CHUNK bytes (empty iterator if none)."""
        for piece in request_body(self, CHUNK):
            rec.bytes_in += len(piece)
            yield piece

    def _drain(self, rec: RecordedRequest) -> None:
        for _ in self._body_chunks(rec):
            pass

    def _write(self, rec: RecordedRequest, data: bytes) -> None:
        if data:
            self.wfile.write(data)
            rec.bytes_out += len(data)

    def _send_head(
        self, rec: RecordedRequest, status: int, reason: str | None, headers: Iterable[tuple[str, str]]
    ) -> None:
        self.send_response_only(status, reason)
        sent = Headers()
        for key, value in headers:
            self.send_header(key, value)
            sent[key] = value
        rec.status = status  # recorded before the client can see the reply, and test what it did
        rec.response_headers = sent
        self.end_headers()

    def _reply(
        self,
        rec: RecordedRequest,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        content_type: str = "application/json",
    ) -> None:
        all_headers = [*headers, ("Content-Length", str(len(body)))]
        if body:
            all_headers.append(("Content-Type", content_type))
        self._send_head(rec, status, None, all_headers)
        if self.command != "HEAD":
            self._write(rec, body)

    def _abort(self) -> None:
        """Close the client connection now (no more bytes)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ dispatch

    def _handle(self) -> None:
        proxy = self._proxy
        rec = RecordedRequest(
            listener=self.server.listener,
            host=self.server.host,
            method=self.command,
            path=self.path,
            headers=Headers(self.headers.items()),
        )
        proxy._record(rec)
        try:
            self._dispatch(rec)
        except (OSError, http.client.HTTPException, ValueError) as e:
            if rec.status is None and not isinstance(e, ConnectionError | TimeoutError):
                proxy._note_error(f"{rec}: {e!r}")
            self.close_connection = True

    def _dispatch(self, rec: RecordedRequest) -> None:
        proxy = self._proxy
        split = urlsplit(self.path)
        fault = proxy._pre_fault(rec)
        if fault == "down":
            rec.fault = fault
            self._abort()
            return
        if fault is not None and fault.startswith("fail-next-"):
            rec.fault = fault
            status = int(fault.rsplit("-", 1)[1])
            self._drain(rec)
            retry = [("Retry-After", "0")] if status in (429, 503) else []
            self._reply(rec, status, _oci_error("UNAVAILABLE", f"faultproxy: injected {status}"), retry)
            return

        if self.server.listener == REDIRECT:
            self._serve_redirected(rec, split.path, split.query)
            return

        if fault == "flaky-503":
            rec.fault = fault
            self._drain(rec)
            self._reply(
                rec,
                503,
                _oci_error("UNAVAILABLE", "faultproxy: injected 503 (flaky)"),
                [("Retry-After", "0")],
            )
            return
        if fault == "flaky-cut":
            self._forward(rec, cut=True)
            return

        mode = proxy.mode
        session = _UPLOAD_SESSION.match(split.path)
        if session and self.command == "PATCH":
            proxy._note_patched(split.path)
        if mode == "require-chunked":
            if session and self.command == "PUT" and "digest" in dict(parse_qsl(split.query)):
                self._put_require_chunked(rec, split.path)
                return
            if _UPLOAD_START.match(split.path) and self.command == "POST":
                self._post_require_chunked(rec, split.path, split.query)
                return
        if mode in ("redirect-blobs", "redirect-loop") and self.command == "GET" and _BLOB.match(split.path):
            self._forward(rec, redirect="loop" if mode == "redirect-loop" else "other-host")
            return
        if mode == "big-manifest" and self.command in ("GET", "HEAD") and _MANIFEST.match(split.path):
            self._forward(rec, big_manifest=True)
            return
        if mode == "wrong-digest" and self.command == "GET" and _BLOB.match(split.path):
            self._forward(rec, flip=True)
            return
        self._forward(rec)

    # ------------------------------------------------------------------ modes

    def _put_require_chunked(self, rec: RecordedRequest, session_path: str) -> None:
        proxy = self._proxy
        chunks = self._body_chunks(rec)
        first = next(chunks, None)
        if first is None or proxy._was_patched(session_path):
            self._forward(rec, body=itertools.chain([] if first is None else [first], chunks))
            return
        for _ in chunks:
            pass
        rec.fault = "refuse-monolithic"
        # The session stays open: point back at it (same _state, without the digest).
        kept = [(k, v) for k, v in parse_qsl(urlsplit(self.path).query, keep_blank_values=True) if k != "digest"]
        location = f"http://{self.server.host}{session_path}" + (f"?{urlencode(kept)}" if kept else "")
        self._reply(
            rec,
            proxy.monolithic_status,
            _oci_error("BLOB_UPLOAD_INVALID", "faultproxy: monolithic upload refused; upload in chunks (PATCH)"),
            [
                ("Location", location),
                ("Range", "0-0"),
                ("OCI-Chunk-Min-Length", str(proxy.chunk_min_length)),
            ],
        )

    def _post_require_chunked(self, rec: RecordedRequest, path: str, query: str) -> None:
        params = parse_qsl(query, keep_blank_values=True)
        chunks = self._body_chunks(rec)
        first = next(chunks, None)
        if first is not None and any(k == "digest" for k, _ in params):
            for _ in chunks:
                pass
            kept = [(k, v) for k, v in params if k != "digest"]
            target = path + (f"?{urlencode(kept)}" if kept else "")
            self._forward(
                rec, body=iter(()), send_body=False, target=target, fault="refuse-single-post", chunk_min=True
            )
            return
        self._forward(rec, body=itertools.chain([] if first is None else [first], chunks), chunk_min=True)

    def _serve_redirected(self, rec: RecordedRequest, path: str, query: str) -> None:
        params = dict(parse_qsl(query))
        token = params.get(TOKEN_PARAM)
        grant = self._proxy._grant(token) if token else None
        if self.command not in ("GET", "HEAD") or grant is None or grant[0] != path:
            self._drain(rec)
            self._reply(rec, 403, _oci_error("DENIED", "faultproxy: no valid signature for this URL"))
            return
        _, authorization = grant
        self._forward(rec, target=path, authorization=authorization or None, drop_client_auth=True)

    # ------------------------------------------------------------------ forwarding

    def _forward(
        self,
        rec: RecordedRequest,
        *,
        body: Iterator[bytes] | None = None,
        send_body: bool = True,
        target: str | None = None,
        cut: bool = False,
        flip: bool = False,
        big_manifest: bool = False,
        redirect: str | None = None,
        chunk_min: bool = False,
        fault: str | None = None,
        authorization: str | None = None,
        drop_client_auth: bool = False,
    ) -> None:
        """Send the request to the upstream (streaming its body) and relay the answer.

        Errors reading from the client propagate (the connection is then closed); errors talking
        to the upstream become a ``502`` when no byte of the answer was sent yet.
        """
        proxy = self._proxy
        if fault:
            rec.fault = fault
        method = self.command
        if body is None:
            body = self._body_chunks(rec)
        chunked = send_body and "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()

        upstream_error: BaseException | None = None
        conn = proxy._upstream_connection()
        try:
            conn.putrequest(method, target or self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", proxy.upstream_host)
            for key, value in self.headers.items():
                lowered = key.lower()
                if lowered in _HOP_BY_HOP:
                    continue
                if lowered == "content-length" and (chunked or not send_body):
                    continue
                if lowered == "authorization" and (drop_client_auth or authorization is not None):
                    continue
                conn.putheader(key, value)
            if authorization is not None:
                conn.putheader("Authorization", authorization)
            if not send_body:
                conn.putheader("Content-Length", "0")
            elif chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        except (OSError, http.client.HTTPException) as e:
            upstream_error = e
        for piece in body:  # client-side errors propagate from here
            if upstream_error is None and send_body:
                try:
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                except OSError as e:
                    # The upstream may have answered early (e.g. 401) and closed: keep reading the
                    # client's body, then still try to read the upstream's answer.
                    upstream_error = e
        try:
            if conn.sock is None:  # never connected (refused) or already closed
                raise upstream_error or ConnectionError("no connection to the upstream")
            if chunked and upstream_error is None:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self._reply(rec, 502, _oci_error("UNAVAILABLE", f"faultproxy: upstream error: {upstream_error or e!r}"))
            return
        try:
            self._relay(
                rec, resp, cut=cut, flip=flip, big_manifest=big_manifest, redirect=redirect, chunk_min=chunk_min
            )
        finally:
            conn.close()

    def _relay(
        self,
        rec: RecordedRequest,
        resp: http.client.HTTPResponse,
        *,
        cut: bool,
        flip: bool,
        big_manifest: bool,
        redirect: str | None,
        chunk_min: bool,
    ) -> None:
        proxy = self._proxy
        status = resp.status
        rec.upstream_status = status
        own = f"http://{self.server.host}"
        headers: list[tuple[str, str]] = []
        for key, value in resp.getheaders():
            lowered = key.lower()
            if lowered in _HOP_BY_HOP:
                continue
            if lowered in _REWRITTEN:
                for base in proxy._upstream_bases:
                    value = value.replace(base, own)
            headers.append((key, value))
        has_body = self.command != "HEAD" and status not in (204, 304) and not 100 <= status < 200
        declared = next((v for k, v in headers if k.lower() == "content-length"), None)
        length = int(declared) if declared is not None and declared.strip().isdigit() else None
        if not has_body:
            length = 0

        if redirect is not None and status == 200:
            if redirect == "loop":
                rec.fault = "redirect-loop"
                location = own + self.path
            else:
                rec.fault = "redirect"
                token = proxy._issue(urlsplit(self.path).path, self.headers.get("Authorization") or "")
                location = f"http://{proxy.redirect_host}{urlsplit(self.path).path}?{TOKEN_PARAM}={token}"
            self._reply(rec, 307, b"", [("Location", location)])
            return

        if big_manifest and status == 200:
            rec.fault = "big-manifest"
            content_type = resp.getheader("Content-Type") or "application/vnd.oci.image.manifest.v1+json"
            size, digest, pieces = proxy._big_manifest(content_type)
            kept = [(k, v) for k, v in headers if k.lower() not in ("content-length", "docker-content-digest")]
            self._send_head(
                rec, 200, resp.reason, [*kept, ("Content-Length", str(size)), ("Docker-Content-Digest", digest)]
            )
            if self.command != "HEAD":
                for piece in pieces:
                    self._write(rec, piece)
            return

        if chunk_min and status == 202:
            rec.fault = rec.fault or "chunk-min-length"
            headers.append(("OCI-Chunk-Min-Length", str(proxy.chunk_min_length)))

        if cut and (not has_body or length == 0):
            rec.fault = "flaky-cut-before-reply"
            self._abort()
            return

        rechunk = has_body and length is None
        if rechunk:
            if self.request_version == "HTTP/1.1":
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                rechunk = False
                headers.append(("Connection", "close"))
                self.close_connection = True
        self._send_head(rec, status, resp.reason, headers)
        if not has_body:
            return

        if cut:
            rec.fault = "flaky-cut-body"
            budget = (length // 2) if length is not None else None
            while True:
                piece = resp.read(CHUNK)
                if not piece:
                    break
                if budget is None:  # unknown length: send half of the first piece
                    piece = piece[: len(piece) // 2]
                    self._write(rec, b"%x\r\n%s\r\n" % (len(piece), piece) if rechunk and piece else piece)
                    break
                piece = piece[:budget]
                self._write(rec, piece)
                budget -= len(piece)
                if budget <= 0:
                    break
            self._abort()
            return

        flip_at = (length // 2 if length is not None else 0) if flip else -1
        offset = 0
        while True:
            piece = resp.read(CHUNK)
            if not piece:
                break
            if 0 <= flip_at - offset < len(piece):
                i = flip_at - offset
                piece = piece[:i] + bytes([piece[i] ^ 0x01]) + piece[i + 1 :]
                rec.fault = "flip-byte"
            offset += len(piece)
            self._write(rec, b"%x\r\n%s\r\n" % (len(piece), piece) if rechunk else piece)
        if rechunk:
            self._write(rec, b"0\r\n\r\n")
        if length is not None and offset < length:
            self._abort()  # the upstream cut its reply short: pass that on


class FaultProxy(LoopbackService):
    """A fault-injecting reverse proxy in front of ``upstream``; see the module docstring.

    ``upstream``: ``http://HOST:PORT`` (``https://`` works with ``upstream_context``), or bare
    ``HOST:PORT``. ``host``: the proxy's ``127.0.0.1:PORT`` (after :meth:`start`);
    ``redirect_host``: the second listener's ``127.0.0.2:PORT``. ``requests``: every request seen
    by either listener, in arrival order (``main_requests``/``redirect_requests`` filter by listener).
    """

    def __init__(
        self,
        upstream: str,
        *,
        mode: str = "pass",
        listen_host: str = "127.0.0.1",
        redirect_listen_host: str = "127.0.0.2",
        upstream_context: ssl.SSLContext | None = None,
    ) -> None:
        if "://" not in upstream:
            upstream = f"http://{upstream}"
        split = urlsplit(upstream)
        if split.scheme not in ("http", "https") or not split.hostname or split.port is None:
            raise ValueError(f"upstream must be http(s)://HOST:PORT, got {upstream!r}")
        if listen_host == redirect_listen_host:
            raise ValueError("the redirect listener needs another address than the main one")
        super().__init__(name="faultproxy", lifetime=None)
        self.upstream = f"{split.scheme}://{split.netloc}"
        self.upstream_host = split.netloc
        self._upstream_tls = split.scheme == "https"
        self._upstream_context = upstream_context
        self._upstream_hostname = split.hostname
        self._upstream_port = split.port
        self._upstream_bases = (self.upstream,)
        self.listen_host = listen_host
        self.redirect_listen_host = redirect_listen_host

        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.hangups = 0  # connections the client reset or closed under the proxy
        self.connections = 0  # client connections accepted, on either listener
        self.flaky_kinds: tuple[str, ...] = ("503", "cut")
        self.flaky_filter: str | None = None
        self.monolithic_status = 416
        self.chunk_min_length = 1024 * 1024
        self.big_manifest_size = 5 * 1024 * 1024

        self._lock = threading.Lock()
        self._mode = "pass"
        self._fail_next: list[int] = []
        self._flaky_seen: set[str] = set()
        self._flaky_faults = 0
        self._patched: set[str] = set()
        self._grants: dict[str, tuple[str, str]] = {}
        self._big_cache: dict[tuple[str, int], tuple[bytes, bytes, int, str]] = {}
        self.mode = mode

    # ------------------------------------------------------------------ public API

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; one of {', '.join(MODES)}")
        self._mode = value
        if value == "down":
            self.drop_connections()

    @property
    def host(self) -> str:
        return self.servers[0].host

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def redirect_host(self) -> str:
        return self.servers[1].host

    def ref(self, repo_tag: str) -> str:
        """``docker://PROXYHOST/<repo_tag>`` (for skopeo)."""
        return f"docker://{self.host}/{repo_tag}"

    @property
    def main_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.listener == MAIN]

    @property
    def redirect_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.listener == REDIRECT]

    @property
    def faults(self) -> int:
        """How many requests got a fault (any kind) so far."""
        return sum(1 for r in list(self.requests) if r.fault is not None)

    def fault_count(self, prefix: str = "") -> int:
        """How many recorded faults start with ``prefix`` (e.g. ``"flaky"``, ``"flaky-cut"``)."""
        return sum(1 for r in list(self.requests) if r.fault is not None and r.fault.startswith(prefix))

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` (before the mode applies)."""
        with self._lock:
            self._fail_next.extend([status] * n)

    def reset_flaky(self) -> None:
        """Forget which requests the ``flaky`` mode has already failed once."""
        with self._lock:
            self._flaky_seen.clear()
            self._flaky_faults = 0

    def clear(self) -> None:
        """Forget the recorded requests and errors."""
        with self._lock:
            self.requests.clear()
            self.errors.clear()
            self.hangups = 0
            self.connections = 0

    def drop_connections(self) -> None:
        """Shut down every open client connection now (idle keep-alive ones and transfers in flight)."""
        self.close_connections()

    def listen(self) -> list[LoopbackHTTPServer]:
        main = _Server((self.listen_host, 0), self, MAIN)
        try:
            try:
                other = _Server((self.redirect_listen_host, main.server_port), self, REDIRECT)
            except OSError:
                other = _Server((self.redirect_listen_host, 0), self, REDIRECT)
        except BaseException:
            main.server_close()
            raise
        return [main, other]

    def __repr__(self) -> str:
        where = self.host if self._servers else "stopped"
        return f"FaultProxy({where} -> {self.upstream}, mode={self.mode})"

    # ------------------------------------------------------------------ internals (handler side)

    def _upstream_connection(self) -> http.client.HTTPConnection:
        if self._upstream_tls:
            return http.client.HTTPSConnection(
                self._upstream_hostname, self._upstream_port, timeout=60, context=self._upstream_context
            )
        return http.client.HTTPConnection(self._upstream_hostname, self._upstream_port, timeout=60)

    def _note_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _note_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _note_hangup(self) -> None:
        with self._lock:
            self.hangups += 1

    def _note_patched(self, session_path: str) -> None:
        with self._lock:
            self._patched.add(session_path)

    def _was_patched(self, session_path: str) -> bool:
        with self._lock:
            return session_path in self._patched

    def _issue(self, path: str, authorization: str) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._grants[token] = (path, authorization)
        return token

    def _grant(self, token: str) -> tuple[str, str] | None:
        with self._lock:
            return self._grants.get(token)

    def _pre_fault(self, rec: RecordedRequest) -> str | None:
        """Faults decided before the upstream is asked: down, fail_next, flaky (main listener)."""
        with self._lock:
            mode = self._mode
            if mode == "down":
                return "down"
            if self._fail_next:
                return f"fail-next-{self._fail_next.pop(0)}"
            if mode != "flaky" or rec.listener != MAIN:
                return None
            line = f"{rec.method} {rec.path}"
            if self.flaky_filter is not None and not re.search(self.flaky_filter, line):
                return None
            key = flaky_key(rec.method, rec.path)
            if key in self._flaky_seen or not self.flaky_kinds:
                return None
            self._flaky_seen.add(key)
            kind = self.flaky_kinds[self._flaky_faults % len(self.flaky_kinds)]
            self._flaky_faults += 1
        if kind == "cut" and rec.method not in _NON_IDEMPOTENT:
            return "flaky-cut"
        return "flaky-503"

    def _big_manifest(self, content_type: str) -> tuple[int, str, Iterator[bytes]]:
        """(size, digest, pieces) of a valid JSON document of ``big_manifest_size`` bytes."""
        size = self.big_manifest_size
        cache_key = (content_type, size)
        with self._lock:
            cached = self._big_cache.get(cache_key)
        if cached is None:
            if "index" in content_type or "manifest.list" in content_type:
                fields = '"manifests":[]'
            else:
                fields = (
                    '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
                    '"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},'
                    '"layers":[]'
                )
            prefix = (
                f'{{"schemaVersion":2,"mediaType":{json.dumps(content_type)},{fields},'
                '"annotations":{"org.example.faultproxy.padding":"'
            ).encode()
            suffix = b'"}}'
            pad = size - len(prefix) - len(suffix)
            if pad < 0:
                raise ValueError("big_manifest_size too small")
            digest = hashlib.sha256(prefix)
            block = b"a" * CHUNK
            left = pad
            while left:
                n = min(left, CHUNK)
                digest.update(block[:n])
                left -= n
            digest.update(suffix)
            cached = (prefix, suffix, pad, f"sha256:{digest.hexdigest()}")
            with self._lock:
                self._big_cache[cache_key] = cached
        prefix, suffix, pad, digest_text = cached

        def pieces() -> Iterator[bytes]:
            yield prefix
            left = pad
            block = b"a" * CHUNK
            while left:
                n = min(left, CHUNK)
                yield block[:n]
                left -= n
            yield suffix

        return size, digest_text, pieces()
