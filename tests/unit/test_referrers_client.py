"""The registry side of referrers (transports/registry/referrers.py) against registries in memory
that misbehave in ways no real peer here does: odd pages and links, lying filters, a referrers tag
holding something else, a merge that never sticks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.mock_registry import Registry, client
from zeroimage.errors import AuthError, DigestError, RegistryError
from zeroimage.oci import Descriptor
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.artifact import Artifact, fallback_tag, make_artifact
from zeroimage.transports.registry.client import TransferStalled
from zeroimage.transports.registry.referrers import (
    MAX_REFERRER_PAGES,
    MERGE_ATTEMPTS,
    list_referrers,
    push_artifact,
)
from zeroimage.transports.registry.speed import Stalled

HOST = "registry.test"
SUBJECT = Descriptor(mt.OCI_MANIFEST, "sha256:" + "ab" * 32, 402)
TAG = fallback_tag(SUBJECT.digest)
REFERRERS = f"/v2/app/referrers/{SUBJECT.digest}"
Override = Callable[[httpx.Request], httpx.Response | None]


def entry(n: int, artifact_type: str = mt.SPDX_JSON) -> dict[str, object]:
    return {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + f"{n:064x}", "size": n, "artifactType": artifact_type}


def index(*entries: dict[str, object]) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)}


def page(*entries: dict[str, object], link: str | None = None, **headers: str) -> httpx.Response:
    extra = {"Link": link} if link else {}
    return httpx.Response(200, json=index(*entries), headers={"Content-Type": mt.OCI_INDEX, **extra, **headers})


def registry_answering(answer: Callable[[httpx.Request], httpx.Response | None]) -> Registry:
    """A registry in memory whose referrers endpoint ``answer`` serves."""
    reg = Registry()
    reg.override = lambda request: answer(request) if request.url.path == REFERRERS else None
    return reg


def artifact() -> Artifact:
    return make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, b'{"spdx":1}', SUBJECT)


# -- pages and links --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        f'<{REFERRERS}?page=2>; rel="next"',
        f"<{REFERRERS}?page=2>;rel=next",
        f'<{REFERRERS}?page=0>; rel="prev", <{REFERRERS}?page=2>; rel="next"',
        f'<https://{HOST}{REFERRERS}?page=2>; title="x"; rel="last next"',
    ],
)
def test_pages_are_followed_by_their_next_link(link: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return page(entry(2))
        return page(entry(1), link=link)

    listed = list_referrers(client(HOST, handler=registry_answering(answer)), "app", SUBJECT.digest)
    assert [d.size for d in listed] == [1, 2]


@pytest.mark.parametrize(
    ("link", "words"),
    [
        (f'</v2/other/referrers/{SUBJECT.digest}?page=2>; rel="next"', "points its next page elsewhere"),
        ('</v2/app/manifests/latest>; rel="next"', "points its next page elsewhere"),
        (f'<{REFERRERS}>; rel="next"', "pages round in a loop"),
    ],
)
def test_a_next_link_elsewhere_or_in_a_loop_is_refused(link: str, words: str) -> None:
    reg = registry_answering(lambda request: page(entry(1), link=link))
    with pytest.raises(RegistryError, match=words):
        list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)


def test_endless_pages_are_bounded() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "0"))
        return page(entry(n + 1), link=f'<{REFERRERS}?page={n + 1}>; rel="next"')

    reg = registry_answering(answer)
    with pytest.raises(RegistryError, match=f"more than {MAX_REFERRER_PAGES} pages"):
        list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)
    assert len([r for r in reg.requests if r.url.path == REFERRERS]) == MAX_REFERRER_PAGES


@pytest.mark.parametrize(
    "second",
    [
        httpx.Response(404, text="404 page not found"),
        httpx.Response(200, text="<html></html>", headers={"Content-Type": "text/html"}),
    ],
)
def test_a_bad_later_page_is_an_error_not_a_fallback(second: httpx.Response) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return second if request.url.params.get("page") else page(entry(1), link=f'<{REFERRERS}?page=2>; rel="next"')

    reg = registry_answering(answer)
    with pytest.raises(RegistryError):
        list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)
    assert not [r for r in reg.requests if r.url.path.endswith(TAG)]


def test_a_digest_that_is_no_digest_is_refused_before_any_request() -> None:
    reg = Registry()
    with pytest.raises(DigestError, match="invalid digest"):
        list_referrers(client(HOST, handler=reg), "app", "sha256:../../v2/other/manifests/latest")
    assert reg.requests == []


# -- what the answer says -------------------------------------------------------------------------


def test_a_filter_the_registry_claims_but_did_not_apply_is_applied_here() -> None:
    reg = registry_answering(
        lambda request: page(entry(1), entry(2, SCAN), entry(3), **{"OCI-Filters-Applied": "artifactType"})
    )
    listed = list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest, SCAN)
    assert [d.size for d in listed] == [2]
    [asked] = [r for r in reg.requests if r.url.path == REFERRERS]
    assert asked.url.params["artifactType"] == SCAN


SCAN = "application/vnd.example.scan+json"


def test_an_answer_with_invalid_entries_is_no_referrers_list() -> None:
    bad = {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:../../etc/passwd", "size": 1}
    reg = registry_answering(lambda request: page(entry(1), bad))
    reg.manifests[("app", TAG)] = json.dumps(index(entry(7))).encode()
    listed = list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)
    assert [d.size for d in listed] == [7]  # read from the tag schema instead


@pytest.mark.parametrize("status", [401, 403])
def test_refused_access_is_an_auth_error_not_a_fallback(status: int) -> None:
    reg = registry_answering(lambda request: httpx.Response(status, json={"errors": [{"code": "DENIED"}]}))
    with pytest.raises(AuthError):
        list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)


def test_a_failing_registry_is_an_error_not_a_fallback() -> None:
    reg = registry_answering(lambda request: httpx.Response(500))
    with pytest.raises(RegistryError, match="HTTP 500"):
        list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)


# -- the referrers tag ------------------------------------------------------------------------------


def test_a_referrers_tag_holding_something_else_lists_nothing_and_is_never_overwritten() -> None:
    reg = Registry()
    image = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": entry(9), "layers": []}
    reg.manifests[("app", TAG)] = json.dumps(image).encode()
    made = client(HOST, handler=reg)
    assert list_referrers(made, "app", SUBJECT.digest) == []
    with pytest.raises(RegistryError, match=re.escape(f"app:{TAG} holds a {mt.OCI_MANIFEST}, not an OCI image index")):
        push_artifact(made, "app", artifact())
    assert not [r for r in reg.requests if r.method == "PUT" and r.url.path.endswith(TAG)]


def test_a_referrers_tag_whose_bytes_do_not_match_its_digest_is_refused() -> None:
    reg = Registry()
    data = json.dumps(index(entry(1))).encode()
    reg.override = lambda request: (
        httpx.Response(200, content=data, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})
        if request.url.path.endswith(TAG)
        else None
    )
    with pytest.raises(DigestError, match="digest mismatch"):
        list_referrers(client(HOST, handler=reg), "app", SUBJECT.digest)


def test_a_merge_that_never_sticks_ends_in_one_clear_line() -> None:
    reg = Registry()
    theirs = json.dumps(index(entry(1))).encode()

    def racer(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith(TAG) and request.method == "GET":
            return httpx.Response(200, content=theirs)  # another pusher's write, every time
        return None

    reg.override = racer
    with pytest.raises(RegistryError, match=f"kept changing .* \\({MERGE_ATTEMPTS} tries\\); push again"):
        push_artifact(client(HOST, handler=reg), "app", artifact())
    assert len([r for r in reg.requests if r.method == "PUT" and r.url.path.endswith(TAG)]) == MERGE_ATTEMPTS


# -- pushing ----------------------------------------------------------------------------------------


def test_blobs_the_repository_has_are_not_sent_again_and_oci_subject_must_name_the_subject() -> None:
    reg = Registry()
    made = artifact()
    for digest, data in made.blobs.items():
        reg.blobs[digest] = data
        reg.links.add(("app", digest))

    def subject_header(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PUT" and request.url.path == f"/v2/app/manifests/{made.descriptor.digest}":
            reg.manifests[("app", made.descriptor.digest)] = request.content
            return httpx.Response(201, headers={"OCI-Subject": "sha256:" + "cd" * 32})  # another subject
        return None

    reg.override = subject_header
    assert push_artifact(client(HOST, handler=reg), "app", made) == "tag"
    assert not [r for r in reg.requests if r.method in ("POST", "PATCH")]  # no upload
    assert json.loads(reg.manifests[("app", TAG)])["manifests"] == [made.descriptor.to_dict()]


@pytest.mark.parametrize(
    "body", [b"unsupported", b'{"errors": [{"message": "unsupported"}]}'], ids=["text", "errors-without-codes"]
)
def test_a_refusal_without_error_codes_still_says_what_to_do(body: bytes) -> None:
    reg = Registry()
    manifest_put = f"/v2/app/manifests/{artifact().descriptor.digest}"
    reg.override = lambda request: httpx.Response(415, content=body) if request.url.path == manifest_put else None
    with pytest.raises(RegistryError) as failure:
        push_artifact(client(HOST, handler=reg), "app", artifact())
    assert str(failure.value) == (
        f"{HOST} does not take OCI artifacts: it refused the {mt.SPDX_JSON} manifest for app (HTTP 415, "
        "no error code); push to a registry that supports OCI 1.1 artifacts, or push without attachments"
    )


# -- stalls ----------------------------------------------------------------------------------------


class StallingBody(httpx.SyncByteStream):
    """A reply body that starts, then falls under the low-speed limit."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"schemaVersion": 2, '
        raise httpx.ReadTimeout("timed out") from Stalled("transfer under 1024 bytes/s for 30 s")


def test_a_referrers_reply_that_stalls_counts_against_the_clients_stalls() -> None:
    """A stall mid-body is the client's TransferStalled (with the low-speed hint), counted as any
    other: the second is final, and the client sends nothing more."""
    registry = registry_answering(
        lambda request: httpx.Response(200, headers={"Content-Type": mt.OCI_INDEX}, stream=StallingBody())
    )
    made = client(HOST, handler=registry)
    with pytest.raises(TransferStalled) as first:
        list_referrers(made, "app", SUBJECT.digest)
    assert not first.value.final
    assert str(first.value) == (
        f"reading the referrers of {SUBJECT.digest} in {HOST}/app from {HOST}: the transfer stalled "
        "(under 1024 bytes/s for 30 s; ZEROIMAGE_LOW_SPEED_LIMIT=BYTES/SECONDS changes the limit)"
    )
    with pytest.raises(TransferStalled) as second:
        list_referrers(made, "app", SUBJECT.digest)
    assert second.value.final
    sent = len(registry.requests)
    with pytest.raises(TransferStalled):
        list_referrers(made, "app", SUBJECT.digest)
    assert len(registry.requests) == sent
