"""Registry client rules that need no server: plain HTTP only where allowed, challenge parsing."""

from __future__ import annotations

from zeroimage.transports.registry.auth import parse_challenge
from zeroimage.transports.registry.client import ClientOptions, RegistryClient, is_loopback
from zeroimage.transports.registry.credentials import CredentialStore


def client(host: str, insecure: tuple[str, ...] = ()) -> RegistryClient:
    return RegistryClient(host, host, ClientOptions(insecure_registries=insecure), CredentialStore(env={}))


def test_plain_http_only_for_loopback_and_named_insecure_registries() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.com") and not is_loopback("10.0.0.1:5000")
    assert client("127.0.0.2:5000")._plain_http_allowed()
    assert not client("registry.example.com:5000")._plain_http_allowed()
    assert client("registry.example.com:5000", ("registry.example.com:5000",))._plain_http_allowed()
    assert client("registry.example.com:5000", ("registry.example.com",))._plain_http_allowed()
    assert not client("other.example.com", ("registry.example.com",))._plain_http_allowed()


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
