"""Image references: Docker's grammar and normalisation, round trips, and errors that name the rule."""

from __future__ import annotations

import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zeroimage.errors import InvalidReference
from zeroimage.reference import Reference, api_host_of, parse_reference, parse_registry

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "fedcba9876543210" * 8

VALID = [
    # input, registry, repository, tag, digest
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("user/app:v1", "docker.io", "user/app", "v1", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("registry-1.docker.io/user/app:t", "docker.io", "user/app", "t", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app:1", "localhost:5000", "app", "1", None),
    ("localhost:5000/team/app", "localhost:5000", "team/app", "latest", None),
    ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
    ("[fe80::1]/app", "[fe80::1]", "app", "latest", None),
    ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "latest", None),
    ("ghcr.io/team/app", "ghcr.io", "team/app", "latest", None),
    ("Example.COM/team/app", "example.com", "team/app", "latest", None),
    ("my-registry.example.com:443/x", "my-registry.example.com:443", "x", "latest", None),
    (f"busybox@{SHA256}", "docker.io", "library/busybox", None, SHA256),
    (f"r.io/a@{SHA512}", "r.io", "a", None, SHA512),
    (f"r.io/a:t@{SHA256}", "r.io", "a", "t", SHA256),
    (f"localhost:5000/a@{SHA256}", "localhost:5000", "a", None, SHA256),
    ("a-b__c/e--f_g.h", "docker.io", "a-b__c/e--f_g.h", "latest", None),
    ("a_b/c", "docker.io", "a_b/c", "latest", None),
    ("app:V1.0-rc_1", "docker.io", "library/app", "V1.0-rc_1", None),
    ("app:_x", "docker.io", "library/app", "_x", None),
    ("app:" + "t" * 128, "docker.io", "library/app", "t" * 128, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # no slash: a tag, as in Docker
    ("localhost", "docker.io", "library/localhost", "latest", None),
    ("foo.com:tag", "docker.io", "library/foo.com", "tag", None),
]

INVALID = [
    # input, a piece of the message
    ("", "empty"),
    ("Foo/Bar", "repository name must be lowercase"),
    ("BUSYBOX", "repository name must be lowercase"),
    ("user/App:v1", "repository name must be lowercase"),
    ("busy box", "white space"),
    (" busybox", "white space"),
    ("busybox\n", "white space"),
    ("busybox:", "tag"),
    ("busybox:.x", "tag"),
    ("busybox:-x", "tag"),
    ("busybox:" + "t" * 129, "tag"),
    ("busybox:été", "tag"),
    ("busybox:a/b", "registry"),  # a ":" before the first "/" makes it a host
    ("busybox@", "digest"),
    ("busybox@sha256:abc", "64 lowercase hex"),
    ("busybox@sha256:" + "A" * 64, "64 lowercase hex"),
    ("busybox@sha256:" + "a" * 65, "64 lowercase hex"),
    ("busybox@sha512:" + "a" * 64, "128 lowercase hex"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("busybox@" + "a" * 64, "digest"),
    (f"busybox@{SHA256}@{SHA256}", "digest"),
    ("0123456789abcdef" * 4, "64 hexadecimal digits"),
    ("/busybox", "empty path component"),
    ("a//b", "empty path component"),
    ("a/b/", "empty path component"),
    ("localhost:5000/", "repository name is empty"),
    (":tag", "repository name is empty"),
    ("-app", "path component"),
    ("app-", "path component"),
    ("a..b", "path component"),
    ("a___b", "path component"),
    ("ex_ample.com/app", "registry"),
    ("a.b-c__d/e", "registry"),  # a "." makes the first component a host
    ("-bad.com/app", "registry"),
    ("host:port/app", "registry"),
    ("[zz::1]:5000/app", "registry"),
    ("localhost:123456/app", "registry"),
    ("r.io/" + "a" * 251, "longer than 255"),
    ("ü/app", "path component"),
    ("app\x00", "path component"),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID)
def test_valid(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert ref == Reference(registry, repository, tag, digest)
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_invalid(text: str, why: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    message = str(info.value)
    assert message.startswith(f"invalid reference {text[:200]!r}: ")
    assert why in message


def test_lowercase_message_matches_docker_wording() -> None:
    with pytest.raises(InvalidReference, match=r"^invalid reference 'Foo/Bar': repository name must be lowercase$"):
        parse_reference("Foo/Bar")


def test_name_length_boundary() -> None:
    repository = "a" * (255 - len("r.io/"))
    assert parse_reference(f"r.io/{repository}").repository == repository
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse_reference(f"r.io/{repository}a")


def test_str_forms() -> None:
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse_reference(f"localhost:5000/a@{SHA256}")) == f"localhost:5000/a@{SHA256}"
    assert str(parse_reference(f"r/a:t@{SHA256}")) == f"docker.io/r/a:t@{SHA256}"
    assert str(Reference("r.io", "a")) == "r.io/a"


def test_default_tag_only_without_tag_or_digest() -> None:
    assert parse_reference("app", default_tag="edge").tag == "edge"
    assert parse_reference("app:1", default_tag="edge").tag == "1"
    assert parse_reference(f"app@{SHA256}", default_tag="edge").tag is None
    with pytest.raises(InvalidReference, match="default tag"):
        parse_reference("app", default_tag="-bad")


def test_hosts() -> None:
    hub = parse_reference("busybox")
    assert hub.api_host == "registry-1.docker.io"
    assert hub.name == "docker.io/library/busybox"
    local = parse_reference("localhost:5000/app")
    assert local.api_host == "localhost:5000"
    assert local.name == "localhost:5000/app"
    assert api_host_of("docker.io") == "registry-1.docker.io"
    assert api_host_of("ghcr.io") == "ghcr.io"


def test_identifier_and_with() -> None:
    ref = parse_reference(f"r.io/a:t@{SHA256}")
    assert ref.identifier == SHA256
    retagged = ref.with_tag("u")
    assert (retagged.tag, retagged.digest, retagged.identifier) == ("u", None, "u")
    assert parse_reference("r.io/a").identifier == "latest"
    assert Reference("r.io", "a").identifier == "latest"


@pytest.mark.parametrize(
    ("text", "registry"),
    [
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("localhost:5000", "localhost:5000"),
        ("http://Localhost:5000/", "localhost:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_parse_registry(text: str, registry: str) -> None:
    assert parse_registry(text) == registry


@pytest.mark.parametrize("text", ["", "https://", "bad host", "a_b.com"])
def test_parse_registry_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_registry(text)


# -- properties ------------------------------------------------------------------------------------


@given(st.text())
@example("a" * 10_000 + "!")
@example("a-" * 5_000 + "!")
@example("a." * 5_000 + "/b")
@example("[" + ":" * 5_000 + "/b")
def test_arbitrary_text_raises_only_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        assert str(exc).startswith("invalid reference ")
    else:
        assert parse_reference(str(ref)) == ref


@given(st.text(alphabet="abcAB09._-:/@[]", max_size=60))
def test_reference_like_text_raises_only_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref


def test_pathological_input_is_fast() -> None:
    start = time.monotonic()
    for text in ["a" * 100_000 + "!", "a-" * 50_000 + "!", "a." * 50_000 + "/b", "a__" * 30_000 + "_"]:
        with pytest.raises(InvalidReference):
            parse_reference(text)
    assert time.monotonic() - start < 2


_components = st.from_regex(r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,3}", fullmatch=True)
_labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_registries = st.one_of(
    st.sampled_from(["docker.io", "localhost", "localhost:5000", "[::1]:5000", "127.0.0.1:5000", "ghcr.io"]),
    st.builds(
        lambda labels, port: ".".join(labels) + (f":{port}" if port is not None else ""),
        st.lists(_labels, min_size=2, max_size=4),
        st.none() | st.integers(1, 65535),
    ),
)
_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def _references(draw: st.DrawFn) -> Reference:
    registry = draw(_registries)
    minimum = 2 if registry == "docker.io" else 1  # one component on Docker Hub gains library/
    repository = "/".join(draw(st.lists(_components, min_size=minimum, max_size=4)))
    tag, digest = draw(st.none() | _tags), draw(st.none() | _digests)
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


@given(_references())
def test_valid_references_round_trip(ref: Reference) -> None:
    if len(ref.name) > 255:
        with pytest.raises(InvalidReference, match="longer than 255"):
            parse_reference(str(ref))
        return
    assert parse_reference(str(ref)) == ref
    assert str(parse_reference(str(ref))) == str(ref)


_CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)]


@pytest.mark.parametrize("where", ["registry.io/team/app:v1", "app:v1", f"app@{SHA256}"])
def test_no_control_character_is_taken_anywhere_in_a_reference(where: str) -> None:
    """A newline, an escape, a NUL, a Unicode line separator: refused in the host, the path, the
    tag and the digest alike (they would split or repaint the line that prints the reference)."""
    for position in range(len(where) + 1):
        for control in _CONTROLS:
            text = where[:position] + control + where[position:]
            with pytest.raises(InvalidReference) as refused:
                parse_reference(text)
            assert repr(text[:200]) in str(refused.value)
