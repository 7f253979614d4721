"""The registry client and upload sessions against httpx.MockTransport: retries and backoff, 401
and token renewal, redirects with and without credentials, HTTPS first, the origin rules,
bounded replies, stalls, and the upload fallbacks with their per-session chunk minimum."""

from __future__ import annotations

import hashlib
import ssl
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.mock_registry import BASIC, Registry, client, endless, not_tls
from zeroimage.errors import AuthError, DigestError, NetworkError, RegistryError, TLSError, UsageError
from zeroimage.image import Blob
from zeroimage.oci import Descriptor
from zeroimage.progress import NullReporter
from zeroimage.transports.registry import upload
from zeroimage.transports.registry.auth import parse_challenge, parse_token_reply
from zeroimage.transports.registry.client import (
    MAX_REPLY_BODY,
    MAX_TOKEN_REPLY,
    ClientOptions,
    LowSpeedLimit,
    TransferStalled,
    is_loopback,
)
from zeroimage.transports.registry.speed import Stalled

# -- plain HTTP only where allowed; challenges ----------------------------------------------------


def test_plain_http_only_for_loopback_and_named_insecure_registries() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")
    assert client("127.0.0.2:5000").origin.plain_http_allowed()
    assert not client("registry.example.com:5000").origin.plain_http_allowed()
    assert client("registry.example.com:5000", ("registry.example.com:5000",)).origin.plain_http_allowed()
    assert client("registry.example.com:5000", ("registry.example.com",)).origin.plain_http_allowed()
    assert not client("other.example.com", ("registry.example.com",)).origin.plain_http_allowed()


def test_challenges() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.params["scope"] == "repository:a/b:pull,push"
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic" and basic.realm == "Registry Realm"
    assert parse_challenge("") is None


@pytest.mark.parametrize(
    ("host", "insecure", "falls_back"),
    [("127.0.0.1:5000", (), True), ("registry.test", (), False), ("registry.test", ("registry.test",), True)],
)
def test_https_first_and_plain_http_only_where_allowed(host: str, insecure: tuple[str, ...], falls_back: bool) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.scheme)
        return not_tls(request)

    made = client(host, insecure, handler)
    if falls_back:
        assert made.base_url() == f"http://{host}"
        assert seen == ["https", "http"]
    else:
        with pytest.raises(NetworkError, match="cannot reach registry.test"):
            made.base_url()
        assert seen == ["https"]  # never asked in clear


def test_a_certificate_error_is_never_a_reason_to_fall_back() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.scheme)
        failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
        failure.verify_message = "self-signed certificate"  # type: ignore[attr-defined]
        raise httpx.ConnectError("certificate verify failed") from failure

    with pytest.raises(TLSError, match="TLS verification failed for 127.0.0.1:5000: self-signed certificate"):
        client("127.0.0.1:5000", handler=handler).base_url()
    assert seen == ["https"]


# -- retries and backoff ----------------------------------------------------------------------------


def test_retryable_statuses_are_retried_with_backoff_honouring_retry_after() -> None:
    answers = iter([httpx.Response(503, headers={"Retry-After": "3"}), httpx.Response(429), httpx.Response(200)])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else next(answers)

    sleeps: list[float] = []
    reply = client("registry.test", handler=handler, sleeps=sleeps).request("GET", "/v2/a/manifests/1")
    assert reply.status == 200
    assert len(sleeps) == 2
    assert sleeps[0] == 3  # Retry-After, when more than the backoff (and at most max_backoff)
    assert 0.25 <= sleeps[1] <= 0.5  # the second backoff: 0.5 s with jitter down to half


def test_transport_faults_are_retried_a_bounded_number_of_times_with_growing_backoff() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/v2/":
            return httpx.Response(200)
        calls += 1
        raise httpx.ConnectError("connection reset by peer")

    sleeps: list[float] = []
    with pytest.raises(NetworkError, match="cannot reach registry.test"):
        client("registry.test", handler=handler, sleeps=sleeps).request("GET", "/v2/a/manifests/1")
    assert calls == ClientOptions().max_attempts == 5
    for attempt, slept in enumerate(sleeps, start=1):
        delay = min(8.0, 0.25 * 2 ** (attempt - 1))
        assert delay / 2 <= slept <= delay


def test_a_request_sent_without_retries_is_sent_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else httpx.Response(503)

    sleeps: list[float] = []
    reply = client("registry.test", handler=handler, sleeps=sleeps).request("PUT", "/v2/a/x", retry=False)
    assert reply.status == 503 and sleeps == []


# -- 401, Basic and Bearer, token renewal -----------------------------------------------------------


def test_basic_challenge_is_answered_with_the_credential() -> None:
    registry = Registry(auth="basic")
    reply = client("registry.test", handler=registry).request("GET", "/v2/a/blobs/sha256:00")
    assert reply.status == 404
    assert registry.sent(method="GET")[-1].headers["authorization"] == BASIC


def test_bearer_token_is_fetched_once_cached_and_renewed_after_a_401() -> None:
    registry = Registry(auth="bearer")
    made = client("registry.test", handler=registry)
    scopes = ("repository:a:pull",)
    assert made.request("GET", "/v2/a/blobs/sha256:00", scopes=scopes).status == 404
    assert made.request("GET", "/v2/a/blobs/sha256:01", scopes=scopes).status == 404
    tokens = registry.token_requests()
    assert len(tokens) == 1  # cached for the second request
    assert parse_qs(tokens[0].url.query.decode())["scope"] == ["repository:a:pull"]
    assert tokens[0].headers["authorization"] == BASIC  # to the realm the registry named
    registry.valid_tokens.clear()  # the token expired early
    assert made.request("GET", "/v2/a/blobs/sha256:02", scopes=scopes).status == 404
    assert len(registry.token_requests()) == 2
    assert registry.requests[-1].headers["authorization"] == "Bearer token-2"


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "malformed"),
        (b'{"token": "t", "expires_in": 1e400}', "malformed"),
        (b"not json", "malformed"),
        (b"x" * (MAX_TOKEN_REPLY + 1), "larger than 1048576 bytes"),
    ],
    ids=["nesting-bomb", "expires-1e400", "not-json", "too-large"],
)
def test_a_hostile_token_reply_is_a_registry_error(reply: bytes, words: str) -> None:
    registry = Registry(auth="bearer")
    registry.override = lambda request: httpx.Response(200, content=reply) if request.url.path == "/token" else None
    with pytest.raises(RegistryError, match=words):
        client("registry.test", handler=registry).request("GET", "/v2/a/manifests/1", scopes=("repository:a:pull",))


def test_token_replies_parse_only_what_they_should() -> None:
    assert parse_token_reply(b'{"token": "t"}') == ("t", 60)
    assert parse_token_reply(b'{"access_token": "t", "expires_in": 120}') == ("t", 120)
    assert parse_token_reply(b'{"token": "t", "expires_in": "90"}') == ("t", 90)
    assert parse_token_reply(b'{"token": "t", "expires_in": -5}') == ("t", 60)
    assert parse_token_reply(b'{"token": "t", "expires_in": 1e300}') == ("t", 24 * 3600)
    for bad in (b'{"token": "t", "expires_in": true}', b'{"token": ""}', b"[]", b'{"token": "t", "expires_in": NaN}'):
        assert parse_token_reply(bad) is None, bad


# -- origins: credentials to the registry only, nothing in clear from TLS ---------------------------


@pytest.mark.parametrize("storage", ["https://storage.test", "https://registry.test:8443", "http://127.0.0.2:5000"])
def test_a_401_from_another_origin_is_an_error_and_gets_no_credential(storage: str) -> None:
    """An upload Location elsewhere (another host, another port of the registry's host): no
    Authorization goes there, and its 401 neither teaches a challenge nor fetches a token."""
    registry = Registry(auth="bearer")
    other = urlsplit(storage)

    def elsewhere(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/uploads/") and request.method == "POST" and registry._authorized(request):
            return httpx.Response(202, headers={"Location": f"{storage}/upload/1"})
        if request.url.netloc.decode() == other.netloc:
            return httpx.Response(401, headers={"WWW-Authenticate": f'Basic realm="{storage}"'})
        return None

    registry.override = elsewhere
    host = "127.0.0.1:5000" if other.scheme == "http" else "registry.test"
    made = client(host, handler=registry)
    if other.scheme == "http":
        registry.realm = "http://auth.test/token"
        made.origin.scheme = "http"
    session = upload.UploadSession.start(made, "a")
    with pytest.raises(AuthError, match=f"{other.netloc} asked for credentials"):
        session.commit(Descriptor("application/octet-stream", "sha256:" + "0" * 64, 0))
    at_storage = [r for r in registry.requests if r.url.netloc.decode() == other.netloc]
    assert len(at_storage) == 1 and "authorization" not in at_storage[0].headers
    assert len(registry.token_requests()) == 1  # the registry's own token, not one for the storage host


def test_authorization_follows_a_redirect_on_the_registry_origin_only() -> None:
    registry = Registry(auth="basic")
    hops = {
        "/v2/a/blobs/sha256:01": "https://registry.test/v2/a/blobs/sha256:02",  # same origin
        "/v2/a/blobs/sha256:02": "https://cdn.test/blob",  # another host
    }

    def redirecting(request: httpx.Request) -> httpx.Response | None:
        if request.url.host == "cdn.test":
            return httpx.Response(200, content=b"blob")
        target = hops.get(request.url.path)
        if target is not None and registry._authorized(request):
            return httpx.Response(307, headers={"Location": target})
        return None

    registry.override = redirecting
    reply = client("registry.test", handler=registry).request("GET", "/v2/a/blobs/sha256:01", follow_redirects=True)
    assert reply.status == 200 and reply.body == b"blob"
    second, cdn = registry.requests[-2:]
    assert second.url.path == "/v2/a/blobs/sha256:02" and second.headers["authorization"] == BASIC
    assert cdn.url.host == "cdn.test" and "authorization" not in cdn.headers


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://registry.test/v2/a/blobs/x", "reached over HTTPS but redirected to plain HTTP"),
        ("http://cdn.test/x", "reached over HTTPS but redirected to plain HTTP"),
        ("file:///etc/passwd", "redirected to file:///etc/passwd: only http"),
        ("https://registry.test/v2/a/blobs/sha256:01", "redirect loop"),
    ],
)
def test_redirects_that_are_refused(location: str, words: str) -> None:
    registry = Registry()
    registry.override = lambda request: (
        httpx.Response(307, headers={"Location": location}) if "/blobs/" in request.url.path else None
    )
    with pytest.raises(RegistryError, match=words):
        client("registry.test", handler=registry).request("GET", "/v2/a/blobs/sha256:01", follow_redirects=True)
    assert not [r for r in registry.requests if r.url.scheme != "https"]


def test_more_than_five_redirects_are_refused() -> None:
    registry = Registry()

    def onwards(request: httpx.Request) -> httpx.Response | None:
        if "/hop/" in request.url.path or "/blobs/" in request.url.path:
            step = int(request.url.path.rsplit("/", 1)[-1]) + 1 if "/hop/" in request.url.path else 0
            return httpx.Response(302, headers={"Location": f"/hop/{step}"})
        return None

    registry.override = onwards
    with pytest.raises(RegistryError, match="more than 5 redirects"):
        client("registry.test", handler=registry).request("GET", "/v2/a/blobs/sha256:01", follow_redirects=True)


def test_an_https_registry_pointing_an_upload_at_plain_http_is_refused_before_sending() -> None:
    registry = Registry(auth="basic")
    registry.override = lambda request: (
        httpx.Response(202, headers={"Location": "http://registry.test/v2/a/blobs/uploads/1"})
        if request.method == "POST" and registry._authorized(request)
        else None
    )
    session = upload.UploadSession.start(client("registry.test", handler=registry), "a")
    with pytest.raises(RegistryError, match="pointed to plain HTTP"):
        session.put_whole(Descriptor("application/octet-stream", "sha256:" + "0" * 64, 4), b"data", refusable=False)
    assert [r.url.scheme for r in registry.requests] == ["https"] * len(registry.requests)


@pytest.mark.parametrize(
    ("host", "realm", "refused"),
    [
        ("registry.test", "http://auth.test/token", True),
        ("registry.test", "http://127.0.0.1:9999/token", True),  # loopback is no excuse from a TLS registry
        ("127.0.0.1:5000", "http://auth.test/token", False),
    ],
)
def test_a_token_realm_over_plain_http_only_for_a_plain_http_registry(host: str, realm: str, refused: bool) -> None:
    registry = Registry(auth="bearer", realm=realm)
    made = client(host, handler=lambda request: not_tls(request) if request.url.path == "/v2/" else registry(request))
    if refused:
        made.origin.scheme = "https"
        with pytest.raises(AuthError, match=f"asked for a token over plain HTTP from {urlsplit(realm).netloc}"):
            made.request("GET", "/v2/a/manifests/1")
        assert registry.token_requests() == []
    else:
        assert made.request("GET", "/v2/a/manifests/1").status == 404
        assert len(registry.token_requests()) == 1


# -- bounded replies ---------------------------------------------------------------------------------


def test_a_reply_body_is_read_up_to_its_bound_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.url.path == "/v2/" else 404, content=endless())

    made = client("registry.test", handler=handler)
    reply = made.request("GET", "/v2/a/manifests/1")
    assert reply.status == 404 and len(reply.body) == MAX_REPLY_BODY
    with pytest.raises(RegistryError, match="not found"):
        made.raise_for_status(reply, "manifest a:1")


# -- stalls ---------------------------------------------------------------------------------------------


def test_a_stall_is_retried_once_then_every_request_fails_at_once() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/v2/":
            return httpx.Response(200)
        calls += 1
        raise httpx.ReadTimeout("timed out") from Stalled("transfer under 1024 bytes/s for 30 s")

    made = client("registry.test", handler=handler)
    with pytest.raises(TransferStalled) as stalled:
        made.request("GET", "/v2/a/manifests/1")
    assert stalled.value.final and calls == 2  # one retry, not the five a transient fault gets
    assert "the transfer stalled (under 1024 bytes/s for 30 s" in str(stalled.value)
    with pytest.raises(TransferStalled):
        made.request("GET", "/v2/a/manifests/2")
    assert calls == 2  # this registry trickles: nothing more is sent to it


def test_a_failed_ping_is_not_repeated_by_other_requests() -> None:
    pings = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal pings
        pings += 1
        raise httpx.ConnectError("connection refused")

    made = client("registry.test", handler=handler)
    for _ in range(3):
        with pytest.raises(NetworkError, match="cannot reach registry.test"):
            made.request("HEAD", "/v2/a/blobs/sha256:00")
    assert pings == ClientOptions().max_attempts


@pytest.mark.parametrize(
    ("value", "limit"),
    [("", LowSpeedLimit(1024, 30)), ("1/1", LowSpeedLimit(1, 1)), (" 4096 / 10 ", LowSpeedLimit(4096, 10))],
)
def test_the_low_speed_limit_from_the_environment(value: str, limit: LowSpeedLimit) -> None:
    assert LowSpeedLimit.from_environment({"ZEROIMAGE_LOW_SPEED_LIMIT": value}) == limit


@pytest.mark.parametrize("value", ["fast", "1024", "0/30", "1024/0", "-1/5", "1e3/5"])
def test_a_malformed_low_speed_limit_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match="ZEROIMAGE_LOW_SPEED_LIMIT"):
        LowSpeedLimit.from_environment({"ZEROIMAGE_LOW_SPEED_LIMIT": value})


# -- uploads: monolithic, chunked fallbacks, the chunk minimum per session --------------------------------


def blob_of(data: bytes) -> tuple[Descriptor, Blob]:
    desc = Descriptor(
        "application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    )

    class Reader:
        def __init__(self) -> None:
            self.pos = 0

        def read(self, n: int = -1) -> bytes:
            out = data[self.pos : None if n < 0 else self.pos + n]
            self.pos += len(out)
            return out

        def close(self) -> None:
            pass

    return desc, Blob(desc, Reader)


def patches(registry: Registry, repository: str = "a") -> list[int]:
    return [len(r.content) for r in registry.sent(method="PATCH") if r.url.path.startswith(f"/v2/{repository}/")]


def test_a_blob_goes_up_in_one_put_when_the_registry_takes_it() -> None:
    registry = Registry(auth="basic")
    desc, blob = blob_of(b"0123456789" * 4)
    outcome = upload.upload_blob(client("registry.test", handler=registry), "a", desc, blob, NullReporter())
    assert outcome == "uploaded" and registry.blobs[desc.digest] == b"0123456789" * 4
    assert patches(registry) == [] and len(registry.sent(method="PUT")) == 1


@pytest.mark.parametrize("status", [416, 413, 400, 405])
def test_a_refused_monolithic_put_falls_back_to_chunks_of_the_sessions_minimum(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload, "DEFAULT_CHUNK", 8)
    registry = Registry(auth="basic", monolithic_status=status)
    registry.chunk_mins["a"] = [100, 16]  # the refused session says 100; the chunked one says 16
    data = bytes(range(40))
    desc, blob = blob_of(data)
    assert upload.upload_blob(client("registry.test", handler=registry), "a", desc, blob, NullReporter()) == "uploaded"
    assert registry.blobs[desc.digest] == data
    assert patches(registry) == [16, 16, 8]
    ranges = [r.headers["content-range"] for r in registry.sent(method="PATCH")]
    assert ranges == ["0-15", "16-31", "32-39"]


def test_a_small_document_refused_with_400_is_an_error_not_a_fallback() -> None:
    registry = Registry(monolithic_status=400)
    data = b'{"config": true}'
    desc = Descriptor(
        "application/vnd.oci.image.config.v1+json", "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    )
    with pytest.raises(RegistryError, match="failed with HTTP 400"):
        upload.upload_blob(client("registry.test", handler=registry), "a", desc, data, NullReporter())
    assert patches(registry) == []


def test_the_chunk_minimum_belongs_to_each_upload_not_to_the_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two uploads at once, in two repositories whose sessions ask for different minimums: each
    sends its own (it was one attribute of the sink, set per upload and read from four threads)."""
    monkeypatch.setattr(upload, "DEFAULT_CHUNK", 4)
    registry = Registry(monolithic_status=416)
    registry.chunk_mins = {"small": [0, 8] * 10, "large": [0, 32] * 10}
    made = client("registry.test", handler=registry)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def push(repository: str, seed: int) -> None:
        desc, blob = blob_of(bytes([seed]) * 64)
        barrier.wait()
        try:
            upload.upload_blob(made, repository, desc, blob, NullReporter())
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=push, args=args) for args in (("small", 1), ("large", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []
    assert patches(registry, "small") == [8] * 8
    assert patches(registry, "large") == [32, 32]


def test_an_invalid_chunk_minimum_is_a_registry_error() -> None:
    registry = Registry()
    registry.override = lambda request: (
        httpx.Response(202, headers={"Location": "/v2/a/blobs/uploads/1", "OCI-Chunk-Min-Length": "plenty"})
        if request.method == "POST"
        else None
    )
    with pytest.raises(RegistryError, match="invalid OCI-Chunk-Min-Length 'plenty'"):
        upload.UploadSession.start(client("registry.test", handler=registry), "a")


def test_a_chunk_taken_only_in_part_ends_the_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload, "DEFAULT_CHUNK", 16)
    registry = Registry(monolithic_status=416)
    registry.override = lambda request: (
        httpx.Response(202, headers={"Location": request.url.path, "Range": "0-9"})
        if request.method == "PATCH"
        else None
    )
    desc, blob = blob_of(bytes(40))
    with pytest.raises(RegistryError, match="only in part"):
        upload.upload_blob(client("registry.test", handler=registry), "a", desc, blob, NullReporter())


def test_a_mount_finishes_at_once_or_becomes_an_upload() -> None:
    registry = Registry(auth="basic")
    desc, blob = blob_of(b"layer bytes")
    made = client("registry.test", handler=registry)
    assert upload.upload_blob(made, "b", desc, blob, NullReporter(), mount_from="a") == "uploaded"  # a lacks it
    assert upload.upload_blob(made, "c", desc, blob, NullReporter(), mount_from="b") == "mounted"
    mounts = [r for r in registry.sent(method="POST") if "mount" in r.url.params]
    assert [r.url.params["from"] for r in mounts] == ["a", "b"]
    assert len(registry.sent(method="PUT")) == 1  # the mount sent no bytes


def test_a_registry_storing_another_digest_is_refused() -> None:
    registry = Registry()
    registry.override = lambda request: (
        httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
        if request.method == "PUT"
        else None
    )
    desc, blob = blob_of(b"layer")
    with pytest.raises(DigestError, match="stored sha256:1111"):
        upload.upload_blob(client("registry.test", handler=registry), "a", desc, blob, NullReporter())


def test_every_open_session_is_cancelled_by_cancel_all() -> None:
    registry = Registry()
    made = client("registry.test", handler=registry)
    opened = upload.OpenSessions()
    sessions = [upload.UploadSession.start(made, "a", opened) for _ in range(3)]
    sessions[0].commit(Descriptor("application/octet-stream", "sha256:" + hashlib.sha256(b"").hexdigest(), 0))
    opened.cancel_all(5)
    deleted = {r.url.path for r in registry.sent(method="DELETE")}
    assert deleted == {s.location for s in sessions[1:]}


def test_requests_carry_no_compression_and_bodies_are_read_as_sent() -> None:
    """A body is never decoded: compressed zeros stay as sent (the bytes a digest is of)."""
    import zstandard

    registry = Registry()
    made = client("registry.test", handler=registry)
    bomb = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    registry.override = lambda request: (
        httpx.Response(200, content=iter([bomb]), headers={"Content-Encoding": "zstd"})
        if "/manifests/" in request.url.path
        else None
    )
    reply = made.request("GET", "/v2/a/manifests/1")
    assert registry.requests[-1].headers["accept-encoding"] == "identity"
    assert reply.body == bomb
