"""A registry with the OCI Referrers API, for tests: a small HTTP server on 127.0.0.1 in front of the
real CNCF registry (:func:`tests.support.registry.start_registry`, plain HTTP), which has none.

``ReferrersRegistry(upstream)`` forwards every request to ``upstream`` as it came (the client's
``Host`` too, so the registry's ``Location`` URLs name the double; auth headers untouched: the
real registry's own auth applies), streaming bodies both ways. What it adds is what the
distribution spec 1.1 asks of a registry with the Referrers API:

* a manifest ``PUT`` whose body has a ``subject`` is forwarded; when the registry stores it (201),
  the double remembers its referrers entry — ``mediaType``, ``digest``, ``size``, ``artifactType``
  (the manifest's, else its config's ``mediaType``; an index: its own or none) and
  ``annotations`` — under the subject's digest and answers with ``OCI-Subject: <subject digest>``;
  a ``DELETE`` of a manifest by digest forgets it;
* ``GET /v2/<name>/referrers/<digest>[?artifactType=T]`` is answered by the double with an OCI
  image index (``application/vnd.oci.image.index.v1+json``) of the entries, in push order, only
  those of type ``T`` when asked (with ``OCI-Filters-Applied: artifactType``), and ``Link: <…>;
  rel="next"`` pages of ``page_size`` entries when set. Access is the registry's: the double asks it
  ``HEAD /v2/<name>/manifests/<digest>`` with the client's headers first and passes on a 401 or 403
  (with its challenge).

On purpose, to test clients (attributes, changeable at any time):

``referrers_mode``
    ``api`` (the above), ``plain-404`` (distribution's ``404 page not found`` in plain text),
    ``oci-404`` (a 404 with an OCI error body), ``false-200`` (200, an HTML page), ``false-200-json``
    (200, a JSON object that is no index), ``405``, or ``huge`` (200, a valid OCI index of
    ``huge_size`` bytes, padded by an annotation, its length in ``Content-Length`` unless
    ``huge_declared`` is False: then the body ends when the connection closes; ``huge_sent`` counts
    what went out).
``refuse_artifacts``
    a manifest PUT with a ``subject`` or an ``artifactType`` gets ``400 MANIFEST_INVALID`` and never
    reaches the registry, as registries of before OCI 1.1 answer.
``send_oci_subject``
    False: store and list referrers but send no ``OCI-Subject`` (clients must then keep the tag
    schema too).
:meth:`clobber_next_tag_put`
    after the next manifest PUT to a tag of the referrers tag schema (``sha256-…``) is stored, put
    the given bytes under that tag, as a second pusher racing the first would: the client's write
    is lost, and only a re-read shows it.

``requests`` records ``(method, path, status)`` of every request answered; ``errors`` the double's
own failures (leaving its ``with`` block raises when there are any).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .loopback import LoopbackHTTPServer, LoopbackService, request_body
from .registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MODES = ("api", "plain-404", "oci-404", "false-200", "false-200-json", "405", "huge")
CHUNK = 64 * 1024
#: The largest manifest body the double reads to look for a subject (the spec's 4 MiB, and some).
MAX_MANIFEST = 8 * 1024 * 1024

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
)
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$|^sha512:[0-9a-f]{128}$")


def _oci_error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def referrer_entry(body: bytes, content_type: str) -> tuple[str, dict[str, Any]] | None:
    """(subject digest, referrers entry) for a manifest or index body with a subject; None otherwise.

    Written from the distribution spec 1.1, independently of zeroimage's own code."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("subject"), dict):
        return None
    subject = document["subject"].get("digest")
    if not isinstance(subject, str):
        return None
    media_type = document.get("mediaType") or content_type
    entry: dict[str, Any] = {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    artifact_type = document.get("artifactType")
    if not artifact_type and "manifests" not in document:
        artifact_type = (document.get("config") or {}).get("mediaType")
    if artifact_type:
        entry["artifactType"] = artifact_type
    if document.get("annotations"):
        entry["annotations"] = document["annotations"]
    return subject, entry


class _Server(LoopbackHTTPServer):
    def __init__(self, double: ReferrersRegistry) -> None:
        self.double = double
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-reply (as one refusing a huge body does) is its right; anything
        # else is a fault of the double, reported when it stops.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            self.double._note_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle connection is closed: nothing lives beyond the test
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        double = self.server.double
        path = urlsplit(self.path).path
        try:
            if self.command in ("GET", "HEAD") and (match := _REFERRERS.match(path)):
                self._referrers(match.group("name"), match.group("digest"))
            elif self.command == "PUT" and (match := _MANIFEST.match(path)):
                self._put_manifest(match.group("name"), match.group("ref"))
            elif self.command == "DELETE" and (match := _MANIFEST.match(path)):
                status = self._forward(self._body())
                if status == 202:
                    double._forget(match.group("name"), match.group("ref"))
            else:
                self._forward(self._body())
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- the request's body -------------------------------------------------------------------------

    def _body(self) -> Iterator[bytes]:
        """The request body, decoded, in pieces (chunked or by Content-Length)."""
        return request_body(self, CHUNK)

    def _whole_body(self, limit: int) -> bytes | None:
        data = bytearray()
        for piece in self._body():
            if len(data) <= limit:
                data += piece
        return None if len(data) > limit else bytes(data)

    # -- answers of the double's own ----------------------------------------------------------------

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.double._record(self.command, self.path, status)

    def _referrers(self, name: str, digest: str) -> None:
        double = self.server.double
        mode = double.referrers_mode
        for _ in self._body():
            pass
        if mode == "plain-404":
            self._reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if mode == "oci-404":
            self._reply(404, _oci_error("NOT_FOUND", "no such route"))
            return
        if mode == "405":
            self._reply(405, _oci_error("UNSUPPORTED", "the operation is unsupported"))
            return
        if mode == "false-200":
            self._reply(200, b"<html><body>Welcome to the registry</body></html>", "text/html")
            return
        if mode == "false-200-json":
            self._reply(200, b'{"status":"ok"}')
            return
        if mode == "huge":
            self._huge()
            return
        if not _DIGEST.match(digest):
            self._reply(400, _oci_error("DIGEST_INVALID", "invalid digest"))
            return
        access = self._upstream("HEAD", f"/v2/{name}/manifests/{digest}", iter(()), send_length=True)
        status = access.status
        challenge = access.getheader("WWW-Authenticate")
        access.read()
        access.close()
        if status in (401, 403):
            extra = (("WWW-Authenticate", challenge),) if challenge else ()
            self._reply(status, _oci_error("UNAUTHORIZED" if status == 401 else "DENIED", "access"), headers=extra)
            return
        query = parse_qs(urlsplit(self.path).query)
        wanted = query.get("artifactType", [""])[0]
        entries = double.referrers(name, digest)
        headers: list[tuple[str, str]] = []
        if wanted:
            entries = [e for e in entries if e.get("artifactType") == wanted]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        if double.page_size:
            page = int(query.get("page", ["0"])[0])
            start = page * double.page_size
            if start + double.page_size < len(entries):
                params = {**({"artifactType": wanted} if wanted else {}), "page": str(page + 1)}
                headers.append(("Link", f'</v2/{name}/referrers/{digest}?{urlencode(params)}>; rel="next"'))
            entries = entries[start : start + double.page_size]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        self._reply(200, json.dumps(index).encode(), OCI_INDEX, tuple(headers))

    def _huge(self) -> None:
        double = self.server.double
        prefix = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})[:-1].encode()
        prefix += b',"annotations":{"padding":"'
        suffix = b'"}}'
        pad = double.huge_size - len(prefix) - len(suffix)
        self.send_response_only(200)
        self.send_header("Content-Type", OCI_INDEX)
        if double.huge_declared:
            self.send_header("Content-Length", str(double.huge_size))
        else:
            self.send_header("Connection", "close")  # the body ends where the connection does
        self.end_headers()
        double._record(self.command, self.path, 200)
        if self.command == "HEAD":
            return
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.write(prefix)
            double.huge_sent = len(prefix)
            block = b"a" * CHUNK
            while pad > 0:
                piece = block[: min(pad, CHUNK)]
                self.wfile.write(piece)
                double.huge_sent += len(piece)
                pad -= len(piece)
            self.wfile.write(suffix)
            double.huge_sent += len(suffix)

    def _put_manifest(self, name: str, reference: str) -> None:
        double = self.server.double
        body = self._whole_body(MAX_MANIFEST)
        if body is None:
            self._reply(413, _oci_error("SIZE_INVALID", "manifest too large"))
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        found = referrer_entry(body, content_type)
        if double.refuse_artifacts:
            try:
                document = json.loads(body)
            except ValueError:
                document = {}
            if isinstance(document, dict) and ("subject" in document or "artifactType" in document):
                self._reply(400, _oci_error("MANIFEST_INVALID", "manifest invalid"))
                return
        clobber = double._take_clobber() if reference.startswith("sha256-") else None
        extra: tuple[tuple[str, str], ...] = ()
        if found is not None and double.send_oci_subject:
            extra = (("OCI-Subject", found[0]),)
        response = self._upstream(self.command, self.path, iter((body,)), length=len(body))
        stored = response.status == 201
        if stored and found is not None:
            double._remember(name, *found)
        if stored and clobber is not None:
            racer = self._upstream("PUT", self.path, iter((clobber,)), length=len(clobber))
            racer.read()
            racer.close()
        self._relay(response, extra if stored else ())

    # -- forwarding ---------------------------------------------------------------------------------

    def _upstream(
        self, method: str, path: str, body: Iterator[bytes], length: int | None = None, send_length: bool = False
    ) -> http.client.HTTPResponse:
        """Send the request (this one's headers, ``body``) to the registry; its response."""
        double = self.server.double
        conn = double._connection()
        chunked = length is None and "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in self.headers.items():
            lowered = key.lower()
            if lowered in _HOP_BY_HOP or lowered == "expect" or (lowered == "content-length" and length is not None):
                continue
            if lowered == "content-length" and send_length:
                continue
            conn.putheader(key, value)
        if length is not None:
            conn.putheader("Content-Length", str(length))
        elif send_length:
            conn.putheader("Content-Length", "0")
        elif chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in body:
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        response._zeroimage_conn = conn  # type: ignore[attr-defined]  # closed with the response
        return response

    def _forward(self, body: Iterator[bytes]) -> int:
        response = self._upstream(self.command, self.path, body)
        self._relay(response, ())
        return response.status

    def _relay(self, response: http.client.HTTPResponse, extra: tuple[tuple[str, str], ...]) -> None:
        try:
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            has_body = self.command != "HEAD" and response.status not in (204, 304)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            for key, value in extra:
                self.send_header(key, value)
            rechunk = has_body and length is None
            if rechunk:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.server.double._record(self.command, self.path, response.status)
            if not has_body:
                return
            while piece := response.read(CHUNK):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if rechunk else piece)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            response.close()
            response._zeroimage_conn.close()  # type: ignore[attr-defined]


class ReferrersRegistry(LoopbackService):
    """The double (see the module docstring). ``host`` is ``127.0.0.1:PORT`` once started."""

    def __init__(
        self,
        upstream: Registry,
        *,
        referrers_mode: str = "api",
        refuse_artifacts: bool = False,
        send_oci_subject: bool = True,
        page_size: int = 0,
        huge_size: int = 5 * 1024 * 1024,
        huge_declared: bool = True,
    ) -> None:
        if upstream.tls:
            raise ValueError("the double speaks plain HTTP: its upstream's Location URLs must too")
        if referrers_mode not in MODES:
            raise ValueError(f"unknown referrers_mode {referrers_mode!r}; one of {', '.join(MODES)}")
        super().__init__(name="referrers-double", lifetime=None)
        self.upstream = upstream
        self.referrers_mode = referrers_mode
        self.refuse_artifacts = refuse_artifacts
        self.send_oci_subject = send_oci_subject
        self.page_size = page_size
        self.huge_size = huge_size
        self.huge_declared = huge_declared
        self.huge_sent = 0
        self.requests: list[tuple[str, str, int]] = []
        #: The double's own failures (tracebacks): leaving the ``with`` block fails on any.
        self.errors: list[str] = []
        self._entries: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._clobber: bytes | None = None
        self._lock = threading.Lock()

    # -- what tests use -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.servers[0].host

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo_tag: str) -> str:
        """``docker://127.0.0.1:PORT/<repo_tag>`` (for skopeo, with ``--tls-verify=false``)."""
        return f"docker://{self.host}/{repo_tag}"

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """The entries remembered for ``subject`` in repository ``name``, in push order."""
        with self._lock:
            return [dict(entry) for entry in self._entries.get((name, subject), {}).values()]

    def clobber_next_tag_put(self, document: bytes) -> None:
        """After the next referrers-tag PUT is stored, put ``document`` under that tag."""
        with self._lock:
            self._clobber = document

    def requested(self, method: str, pattern: str) -> list[tuple[str, str, int]]:
        """The recorded requests of ``method`` whose path matches the regex ``pattern``."""
        with self._lock:
            return [r for r in self.requests if r[0] == method and re.search(pattern, r[1])]

    # -- life ---------------------------------------------------------------------------------------

    def listen(self) -> list[LoopbackHTTPServer]:
        return [_Server(self)]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc is None and self.errors:
            raise AssertionError("the referrers double failed:\n" + "\n".join(self.errors))

    # -- the handler's side -------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=60)

    def _note_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def _remember(self, name: str, subject: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.setdefault((name, subject), {})[entry["digest"]] = entry

    def _forget(self, name: str, digest: str) -> None:
        with self._lock:
            for (repository, _), entries in self._entries.items():
                if repository == name:
                    entries.pop(digest, None)

    def _take_clobber(self) -> bytes | None:
        with self._lock:
            clobber, self._clobber = self._clobber, None
            return clobber


__all__ = ["MODES", "ReferrersRegistry", "referrer_entry"]
