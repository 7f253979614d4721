"""cosign's legacy signatures: the payload byte for byte as cosign writes it, its signature checked
with ``cryptography`` directly, and the ``.sig`` image made, merged and read back."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.support.peers import digest_of
from zeroimage.errors import DigestError, SignatureError
from zeroimage.signing import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SigningKey,
    legacy_signature_image,
    legacy_signatures,
    signature_tag,
    simple_signing_payload,
    verify_legacy,
)

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPOSITORY = "registry.example.com/team/app"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def test_payload_is_cosigns_byte_for_byte() -> None:
    assert simple_signing_payload(REPOSITORY, DIGEST) == (
        b'{"critical":{"identity":{"docker-reference":"registry.example.com/team/app"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )


def test_payload_annotations_as_go_writes_them() -> None:
    """``cosign sign -a``: a map, whose keys Go sorts, with <, > and & escaped."""
    payload = simple_signing_payload(REPOSITORY, DIGEST, {"z": "1", "a": "<b&c>"})
    assert payload.endswith(b'"optional":{"a":"\\u003cb\\u0026c\\u003e","z":"1"}}')
    assert json.loads(payload)["optional"] == {"a": "<b&c>", "z": "1"}


def test_signature_verifies_with_cryptography(key: SigningKey) -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    image = legacy_signature_image(payload, key.sign(payload))
    [layer] = json.loads(image.manifest)["layers"]
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public = load_pem_public_key(key.verifying_key.pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))  # cosign's scheme: raises if not
    with pytest.raises(InvalidSignature):
        public.verify(signature, payload.replace(b"ab", b"cd"), ec.ECDSA(hashes.SHA256()))


def test_new_signature_image(key: SigningKey) -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    signature = key.sign(payload)
    image = legacy_signature_image(payload, signature)
    manifest = json.loads(image.manifest)
    config_digest = manifest["config"]["digest"]
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == image.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["layers"] == [
        {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": digest_of(payload),
            "size": len(payload),
            "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()},
        }
    ]
    assert json.loads(image.blobs[config_digest]) == {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(payload)]},
        "config": {},
    }
    assert image.blobs[digest_of(payload)] == payload
    assert set(image.blobs) == {config_digest, digest_of(payload)}
    assert all(digest_of(blob) == digest for digest, blob in image.blobs.items())
    assert image.digest == digest_of(image.manifest)
    assert image.added


def test_signatures_already_there_are_kept(key: SigningKey) -> None:
    """A second signer's signature is appended; the first layer and the config's other fields
    stay as they were."""
    first_key = SigningKey.generate()
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    first = legacy_signature_image(payload, first_key.sign(payload))
    first_manifest = json.loads(first.manifest)
    first_config = json.loads(first.blobs[first_manifest["config"]["digest"]])
    first_config["created"] = "2024-01-01T00:00:00Z"  # as cosign sign --record-creation-timestamp
    config_bytes = json.dumps(first_config).encode()
    first_manifest["config"].update(digest=digest_of(config_bytes), size=len(config_bytes))
    existing = json.dumps(first_manifest).encode()

    second = legacy_signature_image(payload, key.sign(payload), existing, config_bytes)
    manifest = json.loads(second.manifest)
    assert manifest["layers"][0] == first_manifest["layers"][0]
    assert len(manifest["layers"]) == 2
    config = json.loads(second.blobs[manifest["config"]["digest"]])
    assert config["created"] == "2024-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == [digest_of(payload), digest_of(payload)]
    assert len(config["history"]) == 2
    entries = legacy_signatures(second.manifest)
    assert [e.payload.digest for e in entries] == [digest_of(payload)] * 2
    for entry, signer in zip(entries, (first_key, key), strict=True):
        assert verify_legacy(DIGEST, payload, entry.signature_b64, signer.verifying_key).docker_reference == REPOSITORY


def test_same_signature_is_not_added_twice(key: SigningKey) -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    first = legacy_signature_image(payload, key.sign(payload))
    again = legacy_signature_image(payload, key.sign(payload), first.manifest)
    assert not again.added
    assert again.manifest == first.manifest
    assert again.blobs == {}


def test_existing_config_must_match_its_digest(key: SigningKey) -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    first = legacy_signature_image(payload, key.sign(payload))
    other_payload = simple_signing_payload(REPOSITORY, OTHER)
    with pytest.raises(DigestError, match=r"^digest mismatch for signature image config"):
        legacy_signature_image(other_payload, key.sign(other_payload), first.manifest, b'{"forged":true}')


def test_signature_tag() -> None:
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"


def test_verify_legacy(key: SigningKey) -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    signature_b64 = base64.b64encode(key.sign(payload)).decode()
    verified = verify_legacy(DIGEST, payload, signature_b64, key.verifying_key)
    assert (verified.docker_reference, verified.manifest_digest, verified.optional) == (REPOSITORY, DIGEST, None)

    with pytest.raises(SignatureError, match=rf"^legacy signature speaks of {DIGEST}, not of {OTHER}$"):
        verify_legacy(OTHER, payload, signature_b64, key.verifying_key)
    tampered = payload.replace(b"team", b"evil")
    with pytest.raises(SignatureError, match=r"^legacy signature does not verify with this key"):
        verify_legacy(DIGEST, tampered, signature_b64, key.verifying_key)
    with pytest.raises(SignatureError, match=r"^legacy signature does not verify with this key"):
        verify_legacy(DIGEST, payload, signature_b64, SigningKey.generate().verifying_key)
    with pytest.raises(SignatureError, match=r"^legacy signature is not base64$"):
        verify_legacy(DIGEST, payload, "%%%", key.verifying_key)
    foreign = payload.replace(b"cosign container image signature", b"atomic container signature")
    foreign_b64 = base64.b64encode(key.sign(foreign)).decode()
    with pytest.raises(SignatureError, match=r"has type 'atomic container signature', not cosign's$"):
        verify_legacy(DIGEST, foreign, foreign_b64, key.verifying_key)


def test_legacy_signatures_skip_other_layers(key: SigningKey) -> None:
    payload = simple_signing_payload(REPOSITORY, DIGEST)
    manifest = json.loads(legacy_signature_image(payload, key.sign(payload)).manifest)
    manifest["layers"].append({"mediaType": "application/octet-stream", "digest": OTHER, "size": 1})
    unsigned = {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": OTHER, "size": 1}
    manifest["layers"].append(unsigned)
    entries = legacy_signatures(json.dumps(manifest).encode())
    assert [e.payload.digest for e in entries] == [digest_of(payload)]
    assert entries[0].payload.annotations[SIGNATURE_ANNOTATION] == entries[0].signature_b64
