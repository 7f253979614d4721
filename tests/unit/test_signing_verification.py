"""What ``zeroimage verify`` decides from what was fetched: the key's signatures in either form,
what else is attached, and one line saying why an image is not verified."""

from __future__ import annotations

import json

import pytest

from zeroimage.oci import Descriptor, Manifest, sha256_digest
from zeroimage.signing import (
    BUNDLE_MEDIA_TYPE,
    PAYLOAD_TYPE,
    Attachment,
    LegacyImage,
    Material,
    Referrer,
    SigningKey,
    dsse_bundle,
    image_signature_bundle,
    legacy_signature_image,
    message_signature_bundle,
    provenance_predicate,
    provenance_statement,
    simple_signing_payload,
    verify_attachments,
)

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'
DIGEST = sha256_digest(MANIFEST)
EMPTY = b"{}"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def artifact(blob: bytes, artifact_type: str, layer_type: str = "", subject: str = DIGEST) -> Referrer:
    """An OCI 1.1 artifact naming ``subject``, as the registry side stores one."""
    manifest = Manifest(
        config=Descriptor("application/vnd.oci.empty.v1+json", sha256_digest(EMPTY), 2),
        layers=(Descriptor(layer_type or artifact_type, sha256_digest(blob), len(blob)),),
        subject=Descriptor("application/vnd.oci.image.manifest.v1+json", subject, 100),
        artifact_type=artifact_type,
    ).to_bytes()
    return Referrer(sha256_digest(manifest), manifest, {sha256_digest(blob): blob})


def signature_referrer(key: SigningKey) -> Referrer:
    return artifact(image_signature_bundle(key, MANIFEST), BUNDLE_MEDIA_TYPE)


def legacy(key: SigningKey, digest: str = DIGEST) -> LegacyImage:
    payload = simple_signing_payload("registry.example.com/app", digest)
    image = legacy_signature_image(payload, key.sign(payload))
    return LegacyImage(image.manifest, {sha256_digest(payload): payload})


def test_everything_attached_is_listed(key: SigningKey) -> None:
    provenance = provenance_statement(
        [("registry.example.com/app", DIGEST)],
        provenance_predicate(
            materials=[Material("/app", "sha256:" + "4" * 64)], parameters={}, builder_version="0.1.0"
        ),
    )
    referrers = [
        signature_referrer(key),
        artifact(dsse_bundle(key, PAYLOAD_TYPE, provenance), BUNDLE_MEDIA_TYPE),
        artifact(b'{"spdxVersion":"SPDX-2.3"}', "application/spdx+json"),
    ]
    result = verify_attachments(DIGEST, key.verifying_key, referrers=referrers, legacy=legacy(key))
    assert result.ok
    assert [(a.kind, a.form, a.verified, a.detail) for a in result.attachments] == [
        ("signature", "bundle", True, "https://sigstore.dev/cosign/sign/v1"),
        ("provenance", "bundle", True, "https://slsa.dev/provenance/v1"),
        ("sbom", "application/spdx+json", False, "SPDX (not signed by itself)"),
        ("signature", "legacy", True, "simple signing"),
    ]
    assert result.reason() == f"{DIGEST} is signed by this key (bundle, legacy)"


def test_message_signature_bundle_needs_and_uses_the_manifest(key: SigningKey) -> None:
    referrer = artifact(message_signature_bundle(key, MANIFEST), BUNDLE_MEDIA_TYPE)
    assert verify_attachments(DIGEST, key.verifying_key, referrers=[referrer], subject_manifest=MANIFEST).ok
    result = verify_attachments(DIGEST, key.verifying_key, referrers=[referrer])
    assert not result.ok
    assert result.reason().endswith("is a message signature: verifying it needs the signed bytes")


@pytest.mark.parametrize("form", ["bundle", "legacy"])
def test_each_form_alone_verifies(key: SigningKey, form: str) -> None:
    if form == "bundle":
        result = verify_attachments(DIGEST, key.verifying_key, referrers=[signature_referrer(key)])
    else:
        result = verify_attachments(DIGEST, key.verifying_key, legacy=legacy(key))
    assert result.ok and result.reason() == f"{DIGEST} is signed by this key ({form})"


def test_nothing_attached(key: SigningKey) -> None:
    result = verify_attachments(DIGEST, key.verifying_key)
    assert not result.ok
    hex_ = DIGEST.split(":")[1]
    assert result.reason() == f"no signature of {DIGEST} found (no signature referrer, no sha256-{hex_}.sig tag)"


def test_another_keys_signatures(key: SigningKey) -> None:
    other = SigningKey.generate()
    result = verify_attachments(DIGEST, key.verifying_key, referrers=[signature_referrer(other)], legacy=legacy(other))
    assert not result.ok
    reason = result.reason()
    assert reason.startswith(f"no valid signature of {DIGEST} by this key: bundle of referrer sha256:")
    assert "is signed by another key (key hint" in reason and reason.endswith("(and 1 more)")


def test_what_could_not_be_read_is_listed_and_decides_nothing(key: SigningKey) -> None:
    """A referrer listed but gone (or a .sig image that cannot be read) is one entry of the list:
    the image's own signatures still verify it; alone, it verifies nothing and says why."""
    gone = Attachment("other", "referrer sha256:" + "7" * 64, "", False, "cannot be read: manifest unknown")
    result = verify_attachments(DIGEST, key.verifying_key, referrers=[signature_referrer(key)], unread=[gone])
    assert result.ok and result.attachments[-1] == gone
    alone = verify_attachments(DIGEST, key.verifying_key, unread=[gone])
    assert not alone.ok
    assert alone.reason() == f"no valid signature of {DIGEST} by this key: cannot be read: manifest unknown"


def test_signature_of_another_image(key: SigningKey) -> None:
    other = "sha256:" + "9" * 64
    result = verify_attachments(DIGEST, key.verifying_key, legacy=legacy(key, other))
    assert not result.ok
    assert result.reason().endswith(f"legacy signature speaks of {other}, not of {DIGEST}")


def test_referrer_of_another_subject_is_not_counted(key: SigningKey) -> None:
    referrer = artifact(image_signature_bundle(key, MANIFEST), BUNDLE_MEDIA_TYPE, subject="sha256:" + "9" * 64)
    result = verify_attachments(DIGEST, key.verifying_key, referrers=[referrer])
    assert not result.ok
    assert result.reason().endswith(f"does not name {DIGEST} as its subject")


def test_altered_blobs_are_refused(key: SigningKey) -> None:
    """A blob that does not match its digest is never verified, whatever it holds."""
    good = signature_referrer(key)
    [digest] = good.blobs
    swapped = Referrer(good.digest, good.manifest, {digest: image_signature_bundle(key, MANIFEST + b" ")})
    result = verify_attachments(DIGEST, key.verifying_key, referrers=[swapped])
    assert not result.ok and "digest mismatch for referrer" in result.reason()

    wrong_manifest = Referrer("sha256:" + "8" * 64, good.manifest, good.blobs)
    assert "digest mismatch" in verify_attachments(DIGEST, key.verifying_key, referrers=[wrong_manifest]).reason()

    image = legacy(key)
    [(payload_digest, payload)] = image.blobs.items()
    forged = LegacyImage(image.manifest, {payload_digest: payload.replace(b"app", b"evil")})
    result = verify_attachments(DIGEST, key.verifying_key, legacy=forged)
    assert not result.ok and "digest mismatch for sha256-" in result.reason()


def test_provenance_alone_is_no_signature(key: SigningKey) -> None:
    provenance = provenance_statement(
        [("registry.example.com/app", DIGEST)],
        provenance_predicate(materials=[], parameters={}, builder_version="0.1.0"),
    )
    referrer = artifact(dsse_bundle(key, PAYLOAD_TYPE, provenance), BUNDLE_MEDIA_TYPE)
    result = verify_attachments(DIGEST, key.verifying_key, referrers=[referrer])
    assert [a.kind for a in result.attachments] == ["provenance"] and not result.ok
    assert json.loads(provenance)["subject"][0]["digest"]["sha256"] == DIGEST.split(":")[1]
