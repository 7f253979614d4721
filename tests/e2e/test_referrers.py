"""Referrers in a registry: artifacts pushed to the real CNCF registry (no Referrers API: the tag
schema) and through a double of a registry that has the API (tests/support/referrers_registry.py),
read back by zeroimage, by skopeo and by the registry's own API."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARM64_ONLY
from tests.support import peers
from tests.support.attached import RegistryReader, http, put_manifest, upload_blob
from tests.support.referrers_registry import ReferrersRegistry
from tests.support.registry import Registry, seed, start_registry
from zeroimage.errors import AuthError, RegistryError
from zeroimage.files import CHUNK
from zeroimage.oci import Descriptor, Manifest, parse_document
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.artifact import EMPTY_DIGEST, Artifact, fallback_tag, make_artifact
from zeroimage.reference import Reference
from zeroimage.signing.keys import SigningKey
from zeroimage.signing.verification import Referrer, verify_attachments
from zeroimage.transports.registry.client import ClientOptions, RegistryClient
from zeroimage.transports.registry.credentials import Credential, CredentialStore
from zeroimage.transports.registry.referrers import list_referrers, push_artifact
from zeroimage.transports.registry.source import RegistrySource

SCAN = "application/vnd.example.scan.report+json"
SPDX = b'{"spdxVersion":"SPDX-2.3","name":"hello"}'
BUNDLE = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}'


# -- set-ups ----------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry") as reg:
        yield reg


def client_of(host: str, credential: Credential | None = None) -> RegistryClient:
    made = RegistryClient(host, host, ClientOptions(), CredentialStore(env={}), sleep=lambda seconds: None)
    made.set_credential(credential)
    return made


def push_subject(registry: Registry, tag: str = "app:v1") -> Descriptor:
    """The hello-world arm64 image, pushed with skopeo: the subject of the tests' artifacts."""
    seed(registry, ARM64_ONLY, tag, all_platforms=False)
    raw = peers.skopeo_inspect(registry.ref(tag), raw=True, extra=registry.skopeo_args())
    return Descriptor(json.loads(raw)["mediaType"], peers.digest_of(raw), len(raw))


def sbom(subject: Descriptor) -> Artifact:
    return make_artifact(
        mt.SPDX_JSON,
        mt.SPDX_JSON,
        SPDX,
        subject,
        {"org.example.kind": "sbom"},
        "2024-01-02T03:04:05Z",
        "sbom.spdx.json",
    )


def signature(subject: Descriptor) -> Artifact:
    return make_artifact(mt.SIGSTORE_BUNDLE_V03, mt.SIGSTORE_BUNDLE_V03, BUNDLE, subject, {"org.example.kind": "sig"})


def read_back(client: RegistryClient, repository: str, entry: Descriptor) -> Artifact:
    """The artifact a referrers entry names, read as ``zeroimage verify`` reads it: its manifest
    and every blob it names through a RegistrySource (bounded, each checked against its digest)."""
    source = RegistrySource(Reference(client.registry, repository, digest=entry.digest), client=client)
    raw = source.document(entry)
    manifest = parse_document(raw, entry.digest, entry.media_type)
    assert isinstance(manifest, Manifest)
    blobs = {}
    for desc in (manifest.config, *manifest.layers):
        stream = source.blob(desc).open()
        try:
            blobs[desc.digest] = b"".join(iter(lambda: stream.read(CHUNK), b""))  # noqa: B023 - read at once
        finally:
            stream.close()
    return Artifact.from_parts(raw, blobs, entry.digest)


def tag_index(registry: Registry, subject: Descriptor, repository: str = "app") -> dict[str, Any]:
    """The referrers tag's index, as skopeo reads it."""
    raw = peers.skopeo_inspect(
        registry.ref(f"{repository}:{fallback_tag(subject.digest)}"), raw=True, extra=registry.skopeo_args()
    )
    document: dict[str, Any] = json.loads(raw)
    return document


def foreign_referrer(registry: Registry, subject: Descriptor, tmp_path: Path, tag: str = "scan-report") -> bytes:
    """A scanner's report about ``subject``, written by hand as an OCI layout and pushed with skopeo
    (not by zeroimage): the manifest's bytes."""
    layout = tmp_path / "foreign"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    report = b'{"scanner":"example","findings":[]}'
    for data in (b"{}", report):
        (blobs / peers.digest_of(data)[7:]).write_bytes(data)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": SCAN,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2},
            "layers": [{"mediaType": SCAN, "digest": peers.digest_of(report), "size": len(report)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": {"org.example.scanner": "v1"},
        }
    ).encode()
    (blobs / peers.digest_of(manifest)[7:]).write_bytes(manifest)
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": peers.digest_of(manifest), "size": len(manifest)}
    index = {"schemaVersion": 2, "manifests": [{**entry, "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    target = registry.ref(f"app:{tag}")
    peers.run(["skopeo", "copy", "--quiet", *registry.skopeo_args("dest"), f"oci:{layout}:{tag}", target])
    pushed = peers.skopeo_inspect(target, raw=True, extra=registry.skopeo_args())
    assert pushed == manifest  # skopeo copied it byte for byte
    return manifest


def put_foreign_index(registry: Registry, subject: Descriptor, manifest: bytes) -> dict[str, Any]:
    """The referrers tag of ``subject`` as another tool writes it (raw HTTP): one entry, with an
    annotation of its own, in an index with an annotation of its own."""
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": peers.digest_of(manifest),
                "size": len(manifest),
                "artifactType": SCAN,
                "annotations": {"org.example.scanner": "v1"},
            }
        ],
        "annotations": {"org.example.written-by": "another-tool"},
    }
    status, _, body = http(
        "PUT",
        f"{registry.url}/v2/app/manifests/{fallback_tag(subject.digest)}",
        json.dumps(index).encode(),
        {"Content-Type": mt.OCI_INDEX},
    )
    assert status == 201, body
    return index


# -- the real registry: the tag schema --------------------------------------------------------------


def test_tag_schema_two_artifacts_read_back_by_zeroimage_skopeo_and_the_registry(registry: Registry) -> None:
    subject = push_subject(registry)
    client = client_of(registry.host)
    first, second = sbom(subject), signature(subject)
    assert push_artifact(client, "app", first) == "tag"
    assert push_artifact(client, "app", second) == "tag"

    listed = list_referrers(client, "app", subject.digest)
    assert listed == [first.descriptor, second.descriptor]
    assert list_referrers(client, "app", subject.digest, mt.SPDX_JSON) == [first.descriptor]
    assert list_referrers(client, "app", subject.digest, "application/vnd.example.none") == []
    # the API was asked first (distribution answers a plain-text 404), then the tag
    log = registry.log_text()
    assert f"GET /v2/app/referrers/{subject.digest}" in log
    assert f"GET /v2/app/manifests/{fallback_tag(subject.digest)}" in log

    # skopeo reads the merged index, each entry as the spec wants it, and each artifact byte for byte
    index = tag_index(registry, subject)
    assert index["mediaType"] == mt.OCI_INDEX
    assert index["manifests"] == [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": first.descriptor.digest,
            "size": len(first.raw),
            "annotations": {"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-01-02T03:04:05Z"},
            "artifactType": mt.SPDX_JSON,
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": second.descriptor.digest,
            "size": len(second.raw),
            "annotations": {"org.example.kind": "sig"},
            "artifactType": mt.SIGSTORE_BUNDLE_V03,
        },
    ]
    for artifact in (first, second):
        ref = registry.ref(f"app@{artifact.descriptor.digest}")
        assert peers.skopeo_inspect(ref, raw=True, extra=registry.skopeo_args()) == artifact.raw

    # the registry's own API: the user's tag still names the image, and the referrers tag is the only other
    assert RegistryReader(registry.host).tags("app") == sorted([fallback_tag(subject.digest), "v1"])
    status, headers, _ = http("HEAD", f"{registry.url}/v2/app/manifests/v1", headers={"Accept": mt.OCI_MANIFEST})
    assert (status, headers["Docker-Content-Digest"]) == (200, subject.digest)

    # read back, verified; pushing again changes nothing
    first_back = read_back(client, "app", listed[0])
    assert (first_back.subject.digest, first_back.content) == (subject.digest, SPDX)
    assert read_back(client, "app", listed[1]).content == BUNDLE
    assert push_artifact(client, "app", first) == "tag"
    assert tag_index(registry, subject)["manifests"] == index["manifests"]
    assert registry.log_text().count(f"PUT /v2/app/manifests/{fallback_tag(subject.digest)}") == 2


def test_an_artifact_read_back_is_checked_against_its_subject(registry: Registry) -> None:
    """A referrers entry is anyone's word: what verify reads back counts for an image only when
    its manifest names that image as its subject."""
    subject = push_subject(registry)
    other = "sha256:" + "cd" * 32
    client = client_of(registry.host)
    push_artifact(client, "app", sbom(subject))
    [entry] = list_referrers(client, "app", subject.digest)
    back = read_back(client, "app", entry)
    read = Referrer(entry.digest, back.raw, back.blobs)
    key = SigningKey.generate().verifying_key
    [elsewhere] = verify_attachments(other, key, referrers=[read]).attachments
    assert (elsewhere.verified, elsewhere.detail) == (
        False,
        f"referrer {entry.digest} does not name {other} as its subject",
    )
    [here] = verify_attachments(subject.digest, key, referrers=[read]).attachments
    assert (here.kind, here.form) == ("sbom", mt.SPDX_JSON)


def test_an_index_another_tool_attached_is_kept_by_the_merge(registry: Registry, tmp_path: Path) -> None:
    subject = push_subject(registry)
    foreign = foreign_referrer(registry, subject, tmp_path)
    written = put_foreign_index(registry, subject, foreign)
    client = client_of(registry.host)
    ours = signature(subject)
    push_artifact(client, "app", ours)

    index = tag_index(registry, subject)
    assert index["manifests"][0] == written["manifests"][0]  # theirs, first, exactly as they wrote it
    assert index["manifests"][1]["digest"] == ours.descriptor.digest
    assert len(index["manifests"]) == 2
    assert index["annotations"] == {"org.example.written-by": "another-tool"}
    listed = list_referrers(client, "app", subject.digest, SCAN)
    assert [entry.digest for entry in listed] == [peers.digest_of(foreign)]
    theirs = read_back(client, "app", listed[0])
    assert (theirs.subject.digest, theirs.content) == (subject.digest, b'{"scanner":"example","findings":[]}')


def test_an_entry_whose_manifest_is_gone_is_dropped_so_the_registry_takes_the_index(
    registry: Registry, tmp_path: Path
) -> None:
    subject = push_subject(registry)
    foreign = foreign_referrer(registry, subject, tmp_path)
    put_foreign_index(registry, subject, foreign)
    status, _, _ = http("DELETE", f"{registry.url}/v2/app/manifests/{peers.digest_of(foreign)}")
    assert status == 202  # deleted without updating the referrers tag
    ours = sbom(subject)
    assert push_artifact(client_of(registry.host), "app", ours) == "tag"
    assert [entry["digest"] for entry in tag_index(registry, subject)["manifests"]] == [ours.descriptor.digest]
    tag = fallback_tag(subject.digest)
    refused = [line for line in registry.access_log() if f"PUT /v2/app/manifests/{tag}" in line and '" 400 ' in line]
    assert len(refused) == 1  # distribution refused the index naming the deleted manifest, once


def test_an_artifact_may_come_before_its_subject(registry: Registry) -> None:
    """The spec asks registries to take a referrer whose subject is not there yet (distribution 2.8
    does): attachments can be pushed before the image is tagged."""
    absent = Descriptor(mt.OCI_MANIFEST, "sha256:" + "ab" * 32, 1234)
    client = client_of(registry.host)
    artifact = sbom(absent)
    assert push_artifact(client, "app", artifact) == "tag"
    assert list_referrers(client, "app", absent.digest) == [artifact.descriptor]


def test_the_empty_config_must_be_uploaded_inline_data_or_not(registry: Registry) -> None:
    """What distribution 2.8 makes of the empty descriptor: ``data`` is accepted and kept, but the
    blob itself must be in the repository all the same (else MANIFEST_BLOB_UNKNOWN)."""
    subject = push_subject(registry)
    plain = sbom(subject)
    inline = json.loads(plain.raw)
    inline["config"]["data"] = "e30="
    inline_raw = json.dumps(inline).encode()
    layer = plain.manifest.layers[0]
    assert upload_blob(registry.url, "app", SPDX) == layer.digest
    for raw in (plain.raw, inline_raw):
        status, _, body = http(
            "PUT", f"{registry.url}/v2/app/manifests/{peers.digest_of(raw)}", raw, {"Content-Type": mt.OCI_MANIFEST}
        )
        assert (status, json.loads(body)["errors"][0]["code"]) == (400, "MANIFEST_BLOB_UNKNOWN")
    # zeroimage uploads it; then both forms are taken, and the registry keeps the bytes as sent
    push_artifact(client_of(registry.host), "app", plain)
    put_manifest(registry.url, "app", peers.digest_of(inline_raw), inline_raw, mt.OCI_MANIFEST)
    kept = peers.skopeo_inspect(
        registry.ref(f"app@{peers.digest_of(inline_raw)}"), raw=True, extra=registry.skopeo_args()
    )
    assert kept == inline_raw


# -- a registry with the Referrers API (the double) -------------------------------------------------


def test_referrers_api_records_them_and_no_tag_is_written(registry: Registry) -> None:
    subject = push_subject(registry)
    with ReferrersRegistry(registry, page_size=1) as double:
        client = client_of(double.host)
        first, second = sbom(subject), signature(subject)
        assert push_artifact(client, "app", first) == "api"
        assert push_artifact(client, "app", second) == "api"
        assert list_referrers(client, "app", subject.digest) == [first.descriptor, second.descriptor]
        pages = double.requested("GET", rf"/v2/app/referrers/{subject.digest}")
        assert [status for _, _, status in pages] == [200, 200]  # two pages of one entry, the Link followed
        assert list_referrers(client, "app", subject.digest, mt.SIGSTORE_BUNDLE_V03) == [second.descriptor]
        assert double.requested("GET", r"artifactType=application%2Fvnd\.dev\.sigstore")  # the filter was asked for
        second_back = read_back(client, "app", second.descriptor)
        assert (second_back.subject.digest, second_back.content) == (subject.digest, BUNDLE)
        assert not double.requested("PUT", r"/manifests/sha256-")
        assert not double.requested("GET", r"/manifests/sha256-")
    assert RegistryReader(registry.host).tags("app") == ["v1"]


def test_a_registry_with_the_api_but_no_oci_subject_header_gets_the_tag_too(registry: Registry) -> None:
    subject = push_subject(registry)
    with ReferrersRegistry(registry, send_oci_subject=False) as double:
        artifact = sbom(subject)
        assert push_artifact(client_of(double.host), "app", artifact) == "tag"
    assert [entry["digest"] for entry in tag_index(registry, subject)["manifests"]] == [artifact.descriptor.digest]


def test_a_write_lost_to_a_racing_pusher_is_merged_again(registry: Registry, tmp_path: Path) -> None:
    """Another pusher read the referrers tag before our write and wrote its own merge after it: our
    re-read misses our entry, so the merge is done again over theirs."""
    subject = push_subject(registry)
    foreign = foreign_referrer(registry, subject, tmp_path)
    racer = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": peers.digest_of(foreign), "size": len(foreign)}],
    }
    with ReferrersRegistry(registry, send_oci_subject=False) as double:
        double.clobber_next_tag_put(json.dumps(racer).encode())
        ours = sbom(subject)
        assert push_artifact(client_of(double.host), "app", ours) == "tag"
        assert len(double.requested("PUT", r"/manifests/sha256-")) == 2
    assert [entry["digest"] for entry in tag_index(registry, subject)["manifests"]] == [
        peers.digest_of(foreign),
        ours.descriptor.digest,
    ]


def test_a_registry_refusing_artifacts_fails_in_one_line_and_nothing_is_tagged(registry: Registry) -> None:
    subject = push_subject(registry)
    with ReferrersRegistry(registry, refuse_artifacts=True) as double:
        with pytest.raises(RegistryError) as failure:
            push_artifact(client_of(double.host), "app", sbom(subject))
        message = str(failure.value)
        assert "\n" not in message
        assert message.startswith(f"{double.host} does not take OCI artifacts")
        assert "HTTP 400, MANIFEST_INVALID" in message
        assert not double.requested("PUT", r"/manifests/sha256-")
    assert RegistryReader(registry.host).tags("app") == ["v1"]


@pytest.mark.parametrize("mode", ["plain-404", "oci-404", "405", "false-200", "false-200-json"])
def test_a_registry_without_a_working_api_is_read_through_the_tag_schema(registry: Registry, mode: str) -> None:
    subject = push_subject(registry)
    first, second = sbom(subject), signature(subject)
    direct = client_of(registry.host)
    push_artifact(direct, "app", first)
    push_artifact(direct, "app", second)
    with ReferrersRegistry(registry, referrers_mode=mode) as double:
        client = client_of(double.host)
        assert list_referrers(client, "app", subject.digest) == [first.descriptor, second.descriptor]
        assert list_referrers(client, "app", subject.digest, mt.SPDX_JSON) == [first.descriptor]
        assert double.requested("GET", rf"/v2/app/referrers/{subject.digest}")  # asked first
        assert double.requested("GET", rf"/v2/app/manifests/{fallback_tag(subject.digest)}")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_huge_referrers_reply_is_refused_in_bounded_memory(registry: Registry, declared: bool) -> None:
    subject = push_subject(registry)
    size = 64 * 1024 * 1024
    with ReferrersRegistry(registry, referrers_mode="huge", huge_size=size, huge_declared=declared) as double:
        client = client_of(double.host)
        client.request("GET", "/v2/")  # the scheme is learnt outside the measure
        tracemalloc.start()
        try:
            with pytest.raises(RegistryError) as failure:
                list_referrers(client, "app", subject.digest)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "longer than zeroimage reads" in str(failure.value) and "\n" not in str(failure.value)
    # read up to the bound, 4 MiB, or not at all (about 12 and 0.1 MiB at the peak): never the whole
    assert peak < size // 2


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_credentials_reach_the_registry_through_the_api_and_refused_access_is_no_fallback(
    tmp_path: Path, auth: str
) -> None:
    with start_registry(tmp_path / "registry", auth=auth) as registry:  # type: ignore[arg-type]
        subject = push_subject(registry)
        with ReferrersRegistry(registry) as double:
            client = client_of(double.host, Credential(registry.username, registry.password))
            artifact = sbom(subject)
            assert push_artifact(client, "app", artifact) == "api"
            assert list_referrers(client, "app", subject.digest) == [artifact.descriptor]
            anonymous = client_of(double.host)
            if auth == "htpasswd":
                with pytest.raises(AuthError):
                    list_referrers(anonymous, "app", subject.digest)
            else:  # the token server grants anonymous pulls, and nothing more
                assert list_referrers(anonymous, "app", subject.digest) == [artifact.descriptor]
                with pytest.raises(AuthError):
                    push_artifact(anonymous, "app", signature(subject))
            assert not double.requested("GET", r"/manifests/sha256-")
            assert not double.requested("PUT", r"/manifests/sha256-")
