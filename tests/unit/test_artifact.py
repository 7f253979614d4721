"""OCI 1.1 artifacts and referrers lists as values (zeroimage.oci.artifact): no I/O."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.peers import digest_of
from zeroimage.errors import DigestError, InputError, UsageError
from zeroimage.oci import Descriptor, Index, Manifest
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.artifact import (
    EMPTY_DIGEST,
    EMPTY_JSON,
    MAX_ARTIFACT_CONTENT,
    Artifact,
    empty_descriptor,
    fallback_tag,
    make_artifact,
    referrer_descriptor,
    referrers_index,
)

SUBJECT = Descriptor(
    mt.OCI_MANIFEST,
    "sha256:" + "ab" * 32,
    402,
    annotations={"org.opencontainers.image.ref.name": "v1"},
    extra={"data": "e30="},
)
DOC = b'{"spdxVersion":"SPDX-2.3"}'


def entry(n: int, **fields: object) -> Descriptor:
    return Descriptor(mt.OCI_MANIFEST, "sha256:" + f"{n:064x}", 100 + n, **fields)  # type: ignore[arg-type]


# -- the empty descriptor ---------------------------------------------------------------------------


def test_the_empty_descriptor_is_the_specs() -> None:
    assert digest_of(EMPTY_JSON) == EMPTY_DIGEST == digest_of(b"{}")
    assert empty_descriptor().to_dict() == {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}
    inline = empty_descriptor(inline=True).to_dict()
    assert base64.b64decode(inline["data"]) == b"{}" and inline["data"] == "e30="


# -- making an artifact -----------------------------------------------------------------------------


def test_an_artifact_is_an_image_manifest_per_the_artifact_guidelines() -> None:
    artifact = make_artifact(
        mt.SPDX_JSON, mt.SPDX_JSON, DOC, SUBJECT, {"b": "2", "a": "1"}, "2024-01-02T03:04:05Z", "sbom.spdx.json"
    )
    document = json.loads(artifact.raw)
    assert list(document) == [
        "schemaVersion",
        "mediaType",
        "artifactType",
        "config",
        "layers",
        "subject",
        "annotations",
    ]
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == mt.OCI_MANIFEST
    assert document["artifactType"] == mt.SPDX_JSON
    assert document["config"] == {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}
    assert document["layers"] == [
        {
            "mediaType": mt.SPDX_JSON,
            "digest": digest_of(DOC),
            "size": len(DOC),
            "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"},
        }
    ]
    # the subject names the exact bytes and nothing else (no annotations, no data of the caller's)
    assert document["subject"] == {"mediaType": mt.OCI_MANIFEST, "digest": SUBJECT.digest, "size": 402}
    assert document["annotations"] == {"a": "1", "b": "2", "org.opencontainers.image.created": "2024-01-02T03:04:05Z"}
    assert list(document["annotations"]) == sorted(document["annotations"])
    assert b" " not in artifact.raw  # compact, as every document zeroimage writes


def test_an_artifact_carries_its_referrers_entry_and_every_blob() -> None:
    artifact = make_artifact(mt.SIGSTORE_BUNDLE_V03, mt.SIGSTORE_BUNDLE_V03, b"bundle", SUBJECT, {"k": "v"})
    assert artifact.descriptor == Descriptor(
        mt.OCI_MANIFEST,
        digest_of(artifact.raw),
        len(artifact.raw),
        annotations={"k": "v"},
        artifact_type=mt.SIGSTORE_BUNDLE_V03,
    )
    assert artifact.artifact_type == mt.SIGSTORE_BUNDLE_V03
    assert dict(artifact.blobs) == {EMPTY_DIGEST: b"{}", digest_of(b"bundle"): b"bundle"}
    assert [d.digest for d in artifact.blob_descriptors] == [EMPTY_DIGEST, digest_of(b"bundle")]
    assert artifact.subject == Descriptor(mt.OCI_MANIFEST, SUBJECT.digest, 402)
    assert artifact.content == b"bundle"
    assert artifact.manifest == Manifest.from_dict(json.loads(artifact.raw))


def test_the_same_inputs_give_the_same_bytes_whatever_the_order_of_annotations() -> None:
    one = make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC, SUBJECT, {"x": "1", "y": "2"}, "2024-01-02T03:04:05Z")
    two = make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC, SUBJECT, {"y": "2", "x": "1"}, "2024-01-02T03:04:05Z")
    assert one.raw == two.raw and one.descriptor == two.descriptor
    other = make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC + b" ", SUBJECT, {"x": "1", "y": "2"}, "2024-01-02T03:04:05Z")
    assert other.raw != one.raw


def test_a_docker_manifest_or_an_index_may_be_a_subject() -> None:
    for media_type in (mt.DOCKER_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST):
        subject = Descriptor(media_type, SUBJECT.digest, 10)
        assert (
            json.loads(make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC, subject).raw)["subject"]["mediaType"]
            == media_type
        )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"artifact_type": "spdx"}, "not a media type"),
        ({"artifact_type": "application/spdx+json; charset=utf-8"}, "not a media type"),
        ({"layer_media_type": "/json"}, "not a media type"),
        ({"content": b""}, "non-empty"),
        ({"content": b"x" * (MAX_ARTIFACT_CONTENT + 1)}, "limited to"),
        ({"subject": Descriptor(mt.OCI_LAYER_GZIP, "sha256:" + "ab" * 32, 1)}, "subject must be"),
        ({"created": "2024-01-02"}, "RFC 3339"),
        ({"created": "2024-13-02T03:04:05Z"}, "RFC 3339"),
        ({"annotations": {"": "x"}}, "non-empty strings"),
        ({"annotations": {"k": 1}}, "non-empty strings"),
    ],
)
def test_bad_requests_are_usage_errors(kwargs: dict[str, object], words: str) -> None:
    arguments: dict[str, object] = {
        "artifact_type": mt.SPDX_JSON,
        "layer_media_type": mt.SPDX_JSON,
        "content": DOC,
        "subject": SUBJECT,
        **kwargs,
    }
    with pytest.raises(UsageError, match=words):
        make_artifact(**arguments)  # type: ignore[arg-type]


def test_created_times_with_fractions_or_offsets_are_taken() -> None:
    for created in ("2024-01-02T03:04:05.123Z", "2024-01-02T03:04:05+02:00"):
        made = make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC, SUBJECT, created=created)
        assert made.descriptor.annotations == {"org.opencontainers.image.created": created}


# -- an artifact read back --------------------------------------------------------------------------


def test_an_artifact_is_rebuilt_from_its_bytes_and_blobs_and_checked() -> None:
    made = make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC, SUBJECT, {"k": "v"})
    again = Artifact.from_parts(made.raw, {**made.blobs, digest_of(b"other"): b"other"})
    assert again == made
    with pytest.raises(InputError, match=f"lacks its blob {digest_of(DOC)}"):
        Artifact.from_parts(made.raw, {EMPTY_DIGEST: EMPTY_JSON})
    tampered = b"\x00" * len(DOC)
    with pytest.raises(DigestError, match="digest mismatch"):
        Artifact(made.raw, made.manifest, made.descriptor, {EMPTY_DIGEST: EMPTY_JSON, digest_of(DOC): tampered})
    with pytest.raises(DigestError, match="does not describe"):
        Artifact(made.raw + b" ", made.manifest, made.descriptor, made.blobs)
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()
    with pytest.raises(InputError, match="not an OCI image manifest"):
        Artifact.from_parts(index, {})
    without = json.loads(made.raw)
    del without["subject"]
    with pytest.raises(InputError, match="no subject"):
        Artifact.from_parts(json.dumps(without).encode(), made.blobs)


def test_content_is_the_one_layer() -> None:
    made = make_artifact(mt.SPDX_JSON, mt.SPDX_JSON, DOC, SUBJECT)
    two = json.loads(made.raw)
    two["layers"].append({"mediaType": "text/plain", "digest": digest_of(b"2"), "size": 1})
    artifact = Artifact.from_parts(json.dumps(two).encode(), {**made.blobs, digest_of(b"2"): b"2"})
    with pytest.raises(InputError, match="has 2 layers, not one"):
        _ = artifact.content


# -- referrers entries ------------------------------------------------------------------------------


def test_a_referrers_entry_follows_the_distribution_spec() -> None:
    config = {"mediaType": "application/vnd.example.config+json", "digest": digest_of(b"c"), "size": 1}
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": SUBJECT.digest, "size": 402}
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config, "layers": [], "subject": subject}
    raw = json.dumps(manifest).encode()
    # a manifest without artifactType: its config's media type; no annotations: none
    assert referrer_descriptor(raw) == Descriptor(
        mt.OCI_MANIFEST, digest_of(raw), len(raw), artifact_type="application/vnd.example.config+json"
    )
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [],
        "subject": subject,
        "annotations": {"a": "b"},
    }
    raw = json.dumps(index).encode()
    # an index without artifactType: none
    assert referrer_descriptor(raw).to_dict() == {
        "mediaType": mt.OCI_INDEX,
        "digest": digest_of(raw),
        "size": len(raw),
        "annotations": {"a": "b"},
    }
    del manifest["subject"]
    with pytest.raises(InputError, match="no subject"):
        referrer_descriptor(json.dumps(manifest).encode())


# -- merging a referrers list -----------------------------------------------------------------------


def test_a_new_list_holds_what_is_added() -> None:
    merged = referrers_index(None, [entry(1), entry(2)])
    assert merged.to_dict() == {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [entry(1).to_dict(), entry(2).to_dict()],
    }


def test_what_others_attached_stays_in_its_place_with_what_we_do_not_model() -> None:
    theirs = entry(1, artifact_type=SCAN, annotations={"org.example": "x"}, extra={"data": "e30=", "x-vendor": [1]})
    existing = Index.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [theirs.to_dict(), entry(2).to_dict()],
            "annotations": {"org.example.by": "other"},
            "x-extension": {"kept": True},
        }
    )
    merged = referrers_index(existing, [entry(3, artifact_type=mt.SPDX_JSON)])
    document = json.loads(merged.to_bytes())
    assert document["manifests"] == [
        theirs.to_dict(),
        entry(2).to_dict(),
        entry(3, artifact_type=mt.SPDX_JSON).to_dict(),
    ]
    assert document["annotations"] == {"org.example.by": "other"}
    assert document["x-extension"] == {"kept": True}


def test_an_entry_listed_already_is_described_afresh_in_its_place_and_duplicates_go() -> None:
    degraded = entry(2)  # as `skopeo copy --all` leaves it: artifactType dropped
    existing = Index((entry(1), degraded, entry(3), entry(1, annotations={"dup": "x"})))
    ours = entry(2, artifact_type=mt.SPDX_JSON)
    merged = referrers_index(existing, [ours, ours])
    assert merged.manifests == (entry(1), ours, entry(3))
    assert referrers_index(merged, [ours]) == merged  # merging again changes nothing


def test_only_an_oci_index_is_a_referrers_list() -> None:
    with pytest.raises(InputError, match="must be an OCI image index"):
        referrers_index(Index((entry(1),), media_type=mt.DOCKER_MANIFEST_LIST), [entry(2)])


SCAN = "application/vnd.example.scan+json"


@given(
    existing=st.lists(st.integers(0, 20), max_size=12),
    added=st.lists(st.integers(0, 20), max_size=6),
)
def test_merging_keeps_every_entry_in_order_without_duplicates(existing: list[int], added: list[int]) -> None:
    merged = referrers_index(Index(tuple(entry(n) for n in existing)) if existing else None, [entry(n) for n in added])
    digests = [d.digest for d in merged.manifests]
    assert len(digests) == len(set(digests))
    expected = list(dict.fromkeys([entry(n).digest for n in existing + added]))
    assert digests == expected  # first seen, first listed: theirs in their order, then ours
    assert referrers_index(merged, [entry(n) for n in added]).to_bytes() == merged.to_bytes()


# -- the referrers tag schema -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "tag"),
    [  # the distribution spec's own table
        ("sha256:" + "a" * 64, "sha256-" + "a" * 64),
        ("sha512:" + "a" * 128, "sha512-" + "a" * 64),
        (
            "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
            "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation",
            "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot",
        ),
    ],
)
def test_the_fallback_tag_is_the_specs(digest: str, tag: str) -> None:
    assert fallback_tag(digest) == tag
    assert len(tag) <= 128


@pytest.mark.parametrize("digest", ["", "sha256", "sha256:", "SHA256:abc", "sha256:../../x", "sha256:ab cd", "a:b:c"])
def test_no_fallback_tag_for_what_is_no_digest(digest: str) -> None:
    with pytest.raises(DigestError):
        fallback_tag(digest)


# -- the module's place -----------------------------------------------------------------------------


def test_the_module_imports_nothing_of_ours_but_oci_and_errors() -> None:
    source = Path(__file__).parents[2] / "src" / "zeroimage" / "oci" / "artifact.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name.startswith("zeroimage")}
    assert ours and all(name == "zeroimage.errors" or name.startswith("zeroimage.oci") for name in ours), ours
    assert not imported & {"os", "io", "socket", "httpx", "pathlib", "subprocess"}
