"""The registry's authentication as an httpx.Auth flow, driven by a plain ``httpx.Client`` over
``httpx.MockTransport`` (the flow is an ordinary httpx.Auth): Basic, Bearer with its token fetched,
cached and renewed on a scope challenge, the refresh-token grant, no Authorization to any other
origin, and the same rules from several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from urllib.parse import parse_qs

import httpx
import pytest

from tests.support.mock_registry import ALICE, BASIC
from zeroimage.errors import AuthError, NetworkError
from zeroimage.transports.registry.auth import Authenticator, Challenge, parse_challenge
from zeroimage.transports.registry.credentials import Credential
from zeroimage.transports.registry.origin import RegistryOrigin

REALM = "https://auth.test/token"
BEARER = Challenge("bearer", {"realm": REALM, "service": "registry.test"})


class Registry:
    """A registry whose tokens each grant the scopes they were asked for: a request for repository
    R needs ``repository:R:pull``, and a 401 names that scope (as the CNCF registry's does)."""

    def __init__(self, challenge: str = "bearer") -> None:
        self.challenge = challenge
        self.requests: list[httpx.Request] = []
        self.granted: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # A flow sends one request object again, changed: keep each as it was sent.
        sent = httpx.Request(request.method, request.url, headers=request.headers.copy(), content=request.read())
        with self.lock:
            self.requests.append(sent)
        if request.url.host == "auth.test":
            return self._token(request)
        if request.url.host != "registry.test" or request.url.port not in (None, 443):
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="elsewhere"'})
        given = request.headers.get("authorization", "")
        repository = request.url.path.removeprefix("/v2/").partition("/")[0]
        scope = f"repository:{repository}:pull"
        if self.challenge == "basic":
            if given == BASIC:
                return httpx.Response(200, content=b"ok")
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        with self.lock:
            allowed = scope in self.granted.get(given.removeprefix("Bearer "), set())
        if allowed:
            return httpx.Response(200, content=b"ok")
        challenge = f'Bearer realm="{REALM}",service="registry.test",scope="{scope}"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge}, json={"errors": [{"code": "UNAUTHORIZED"}]})

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            if form.get("refresh_token") != ["idt-secret"]:
                return httpx.Response(401)
            scopes = form.get("scope", [""])[0].split()
        else:
            if request.headers.get("authorization") != BASIC:
                return httpx.Response(401)
            scopes = parse_qs(request.url.query.decode()).get("scope", [])
        with self.lock:
            token = f"token-{len(self.granted) + 1}"
            self.granted[token] = set(scopes)
        return httpx.Response(200, json={"token": token, "expires_in": 300})

    def to(self, host: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == host]


def setup(registry: Registry, credential: Credential | None = ALICE) -> tuple[Authenticator, httpx.Client]:
    """An authenticator of https://registry.test whose token requests go to ``registry``, and an
    httpx.Client over the same transport to drive its flows."""
    transport = httpx.MockTransport(registry)
    origin = RegistryOrigin("registry.test", "registry.test")
    origin.scheme = "https"
    sender = httpx.Client(transport=transport)

    def send(method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> httpx.Response:
        return sender.send(sender.build_request(method, url, headers=headers, content=body), stream=True)

    def transfer_error(exc: httpx.TransportError, host: str, what: str) -> NetworkError:
        return NetworkError(f"reading {what} from {host} failed")

    return Authenticator(origin, lambda: credential, send, transfer_error), httpx.Client(transport=transport)


def test_basic_is_learnt_from_a_401_then_sent_at_once() -> None:
    registry = Registry(challenge="basic")
    auth, http = setup(registry)
    first = http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow())
    assert first.status_code == 200
    assert [r.headers.get("authorization") for r in registry.requests] == [None, BASIC]
    assert auth.challenge == parse_challenge('Basic realm="r"')
    second = http.get("https://registry.test/v2/a/manifests/2", auth=auth.flow())
    assert second.status_code == 200 and registry.requests[-1].headers["authorization"] == BASIC
    assert len(registry.requests) == 3  # the challenge known: no 401 the second time


def test_a_bearer_token_is_fetched_for_the_scopes_and_cached() -> None:
    registry = Registry()
    auth, http = setup(registry)
    auth.challenge = BEARER  # as a ping leaves it
    scopes = ("repository:a:pull",)
    for n in range(3):
        assert http.get(f"https://registry.test/v2/a/manifests/{n}", auth=auth.flow(scopes)).status_code == 200
    tokens = registry.to("auth.test")
    assert len(tokens) == 1
    query = parse_qs(tokens[0].url.query.decode())
    assert query == {"service": ["registry.test"], "scope": ["repository:a:pull"], "account": ["alice"]}
    assert tokens[0].headers["authorization"] == BASIC  # the credential goes to the realm the registry named
    assert [r.headers["authorization"] for r in registry.to("registry.test")] == ["Bearer token-1"] * 3


def test_a_scope_challenge_renews_the_token_with_the_scope_it_asks_for() -> None:
    registry = Registry()
    auth, http = setup(registry)
    auth.challenge = BEARER
    scopes = ("repository:a:pull",)
    assert http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow(scopes)).status_code == 200
    # The registry wants more than the caller said (a mount's source, say): its 401 names the scope.
    assert http.get("https://registry.test/v2/b/manifests/1", auth=auth.flow(scopes)).status_code == 200
    tokens = registry.to("auth.test")
    assert len(tokens) == 2
    assert parse_qs(tokens[1].url.query.decode())["scope"] == ["repository:a:pull", "repository:b:pull"]
    to_b = [r.headers["authorization"] for r in registry.to("registry.test") if r.url.path.startswith("/v2/b/")]
    assert to_b == ["Bearer token-1", "Bearer token-2"]


def test_a_second_401_is_returned_not_answered_again() -> None:
    registry = Registry(challenge="basic")
    auth, http = setup(registry, credential=Credential("alice", "wrong"))
    response = http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow())
    assert response.status_code == 401 and len(registry.requests) == 2


def test_an_identity_token_is_exchanged_by_a_refresh_grant() -> None:
    registry = Registry()
    auth, http = setup(registry, credential=Credential(identity_token="idt-secret"))
    auth.challenge = BEARER
    response = http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow(("repository:a:pull",)))
    assert response.status_code == 200
    (grant,) = registry.to("auth.test")
    assert grant.method == "POST" and "authorization" not in grant.headers
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(grant.content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["idt-secret"],
        "client_id": ["zeroimage"],
        "service": ["registry.test"],
        "scope": ["repository:a:pull"],
    }


@pytest.mark.parametrize(
    "url", ["https://cdn.test/blob", "https://registry.test:8443/v2/a/x", "http://registry.test/v2/a/x"]
)
def test_no_authorization_to_another_origin_and_its_401_is_an_error(url: str) -> None:
    registry = Registry()
    auth, http = setup(registry)
    auth.challenge = BEARER
    assert http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow(("repository:a:pull",))).status_code == 200
    before = len(registry.to("auth.test"))
    with pytest.raises(AuthError, match=f"{httpx.URL(url).netloc.decode()} asked for credentials") as refused:
        http.get(url, headers={"Authorization": "Bearer token-1"}, auth=auth.flow(("repository:a:pull",)))
    assert refused.value.status == 401
    (elsewhere,) = [r for r in registry.requests if str(r.url) == url]
    assert "authorization" not in elsewhere.headers  # not even one the caller put there
    assert len(registry.to("auth.test")) == before  # its challenge fetched no token


def test_a_plain_http_realm_from_a_tls_registry_is_refused_before_any_request() -> None:
    registry = Registry()
    auth, http = setup(registry)
    auth.challenge = Challenge("bearer", {"realm": "http://auth.test/token", "service": "registry.test"})
    with pytest.raises(AuthError, match="asked for a token over plain HTTP from auth.test"):
        http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow(("repository:a:pull",)))
    assert registry.requests == []


def test_threads_share_one_challenge_and_their_tokens() -> None:
    """Eight threads, two repositories, one authenticator: every request is answered, each with a
    token covering its repository, and the tokens are fetched per scope, not per request."""
    registry = Registry()
    auth, http = setup(registry)
    auth.challenge = BEARER
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def pull(repository: str) -> None:
        barrier.wait()
        for n in range(5):
            url = f"https://registry.test/v2/{repository}/blobs/{n}"
            status = http.get(url, auth=auth.flow((f"repository:{repository}:pull",))).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=pull, args=("ab"[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 40
    assert 2 <= len(registry.to("auth.test")) <= 8  # at most one per thread's first request
    assert all(r.headers.get("authorization") for r in registry.to("registry.test"))


def test_a_refused_password_is_not_sent_again() -> None:
    registry = Registry(challenge="basic")
    auth, http = setup(registry, credential=Credential("alice", "wrong"))
    auth.challenge = parse_challenge('Basic realm="r"')  # known: the password goes with the first try
    response = http.get("https://registry.test/v2/a/manifests/1", auth=auth.flow())
    assert response.status_code == 401 and len(registry.requests) == 1
