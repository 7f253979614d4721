"""A registry in memory for ``httpx.MockTransport``, and a client of it, for unit tests of the
registry transport (no network: every request is answered, and recorded, by :class:`Registry`)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from zeroimage.transports.registry.client import ClientOptions, RegistryClient
from zeroimage.transports.registry.credentials import Credential, CredentialStore

SECRET = "pw-0123-secret"
BASIC = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
ALICE = Credential("alice", SECRET)
Handler = Callable[[httpx.Request], httpx.Response]


def client(
    host: str,
    insecure: tuple[str, ...] = (),
    handler: Handler | None = None,
    sleeps: list[float] | None = None,
    credential: Credential | None = ALICE,
) -> RegistryClient:
    """A client of ``host`` whose network is ``handler`` and whose sleeps are recorded, not slept."""
    made = RegistryClient(
        host,
        host,
        ClientOptions(insecure_registries=insecure),
        CredentialStore(env={}),
        transport=httpx.MockTransport(handler or (lambda request: httpx.Response(200))),
        sleep=(sleeps.append if sleeps is not None else lambda seconds: None),
    )
    made.set_credential(credential)
    return made


def endless() -> Iterator[bytes]:
    block = b"x" * 65536
    while True:
        yield block


@dataclass
class Registry:
    """A registry in memory, as a MockTransport handler. ``override`` answers a request first when
    it returns a response; every request is recorded."""

    auth: str = "none"  # "none", "basic" or "bearer"
    realm: str = "https://auth.test/token"
    requests: list[httpx.Request] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    links: set[tuple[str, str]] = field(default_factory=set)  # (repository, digest): what each repository has
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repository, tag or digest)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    chunk_mins: dict[str, list[int]] = field(default_factory=dict)  # repository -> per-session minimums
    monolithic_status: int | None = None  # refuse a monolithic PUT with this status
    tokens: Iterator[str] = field(default_factory=lambda: (f"token-{n}" for n in itertools.count(1)))
    valid_tokens: set[str] = field(default_factory=set)
    override: Callable[[httpx.Request], httpx.Response | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
        if self.override is not None and (answer := self.override(request)) is not None:
            return answer
        url = request.url
        if url.path == "/token":
            return self._token(request)
        if not self._authorized(request):
            challenge = 'Basic realm="r"' if self.auth == "basic" else f'Bearer realm="{self.realm}",service="s"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge}, json={"errors": []})
        path = url.path
        if path == "/v2/":
            return httpx.Response(200, json={})
        if "/manifests/" in path:
            return self._manifest(request)
        repository, _, rest = path.removeprefix("/v2/").partition("/blobs/")
        if rest == "uploads/" and request.method == "POST":
            if "mount" in url.params and (url.params.get("from"), url.params["mount"]) in self.links:
                self.links.add((repository, url.params["mount"]))
                return httpx.Response(201)
            session = f"s{len(self.uploads)}"
            self.uploads[session] = bytearray()
            minimums = self.chunk_mins.get(repository, [])
            headers = {"Location": f"/v2/{repository}/blobs/uploads/{session}"}
            if minimums:
                headers["OCI-Chunk-Min-Length"] = str(minimums.pop(0))
            return httpx.Response(202, headers=headers)
        if rest.startswith("uploads/"):
            session = rest.removeprefix("uploads/")
            data = self.uploads[session]
            if request.method == "PATCH":
                data += request.content
                return httpx.Response(
                    202, headers={"Location": str(url.copy_with(query=None)), "Range": f"0-{len(data) - 1}"}
                )
            if request.method == "PUT":
                if request.content and not data and self.monolithic_status is not None:
                    return httpx.Response(self.monolithic_status, json={"errors": [{"code": "UNSUPPORTED"}]})
                data += request.content
                digest = url.params["digest"]
                if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                    return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID", "message": "bad"}]})
                self.blobs[digest] = bytes(data)
                self.links.add((repository, digest))
                return httpx.Response(201, headers={"Docker-Content-Digest": digest})
            if request.method == "DELETE":
                return httpx.Response(204)
        if request.method in ("GET", "HEAD") and (repository, rest) in self.links:
            return httpx.Response(200, content=self.blobs[rest])
        return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND", "message": "nothing here"}]})

    def _manifest(self, request: httpx.Request) -> httpx.Response:
        repository, _, ref = request.url.path.removeprefix("/v2/").partition("/manifests/")
        if request.method == "PUT":
            digest = "sha256:" + hashlib.sha256(request.content).hexdigest()
            self.manifests[(repository, ref)] = self.manifests[(repository, digest)] = request.content
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        data = self.manifests.get((repository, ref))
        if data is None:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return httpx.Response(200, content=data, headers={"Docker-Content-Digest": digest})

    def _authorized(self, request: httpx.Request) -> bool:
        given = request.headers.get("authorization", "")
        if self.auth == "basic":
            return given == BASIC
        if self.auth == "bearer":
            return given.removeprefix("Bearer ") in self.valid_tokens
        return True

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != BASIC:
            return httpx.Response(401)
        token = next(self.tokens)
        self.valid_tokens.add(token)
        return httpx.Response(200, json={"token": token, "expires_in": 300})

    def sent(self, host: str | None = None, method: str | None = None) -> list[httpx.Request]:
        return [
            r for r in self.requests if (host is None or r.url.host == host) and (method is None or r.method == method)
        ]

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/token"]


def not_tls(request: httpx.Request) -> httpx.Response:
    """A plain-HTTP server as a client sees it when it tries TLS first."""
    if request.url.scheme == "https":
        raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")
    return httpx.Response(200)
