"""Sigstore bundles: what zeroimage signs is verified by an independent verifier (npm's
@sigstore/verify, offline, key-only trust material) and by zeroimage's own verify_bundle, and
anything altered — the manifest, the payload, the signature, the key — is refused by both."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.sigstore_verifier import require_verifier, sigstore_verify
from zeroimage.errors import SignatureError
from zeroimage.signing import (
    ANNOTATION_CONTENT,
    ANNOTATION_CREATED,
    ANNOTATION_PREDICATE_TYPE,
    BUNDLE_MEDIA_TYPE,
    COSIGN_SIGN_PREDICATE_TYPE,
    PAYLOAD_TYPE,
    SLSA_PROVENANCE_PREDICATE_TYPE,
    SigningKey,
    bundle_annotations,
    dsse_bundle,
    image_signature_bundle,
    message_signature_bundle,
    verify_bundle,
)
from zeroimage.signing.intoto import pae, statement

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c" * 64, "size": 2},
        "layers": [],
    },
    indent=3,  # the exact bytes matter, whatever their layout
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
OTHER = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(autouse=True)
def _verifier() -> None:
    require_verifier()


def edit(bundle: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(bundle)
    change(document)
    return json.dumps(document).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def provenance_payload(*digests: str) -> bytes:
    subjects = [{"name": "registry.example.com/app", "digest": {"sha256": d.split(":")[1]}} for d in digests]
    predicate = {
        "buildDefinition": {"buildType": "urn:x", "externalParameters": {}},
        "runDetails": {"builder": {"id": "urn:y"}},
    }
    return statement(subjects, SLSA_PROVENANCE_PREDICATE_TYPE, predicate)


# --- what is made, and that it verifies --------------------------------------------------------


def test_image_signature_bundle_is_what_cosign_3_stores(key: SigningKey) -> None:
    bundle = json.loads(image_signature_bundle(key, MANIFEST))
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": key.verifying_key.hint}, "tlogEntries": []}
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    # One signature, without a keyid (DSSE verifiers would compare it with one of their own).
    assert [set(s) for s in envelope["signatures"]] == [{"sig"}]
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": DIGEST.split(":")[1]}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }


def test_image_signature_bundle_verifies(key: SigningKey) -> None:
    bundle = image_signature_bundle(key, MANIFEST)
    verdict = sigstore_verify(bundle, key.verifying_key.pem, digest=DIGEST)
    assert verdict.line == f"OK dsse-envelope {PAYLOAD_TYPE} {COSIGN_SIGN_PREDICATE_TYPE}", verdict
    verified = verify_bundle(bundle, key.verifying_key, DIGEST)
    assert verified.is_signature
    assert verified.predicate_type == COSIGN_SIGN_PREDICATE_TYPE


def test_message_signature_bundle_verifies(key: SigningKey) -> None:
    bundle = message_signature_bundle(key, MANIFEST)
    content = json.loads(bundle)["messageSignature"]
    assert content["messageDigest"] == {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(MANIFEST).digest())}
    verdict = sigstore_verify(bundle, key.verifying_key.pem, artifact=MANIFEST, digest=DIGEST)
    assert verdict.line == "OK message-signature - -", verdict
    assert verify_bundle(bundle, key.verifying_key, DIGEST, MANIFEST).is_signature


def test_dsse_bundle_of_provenance_verifies(key: SigningKey) -> None:
    index = "sha256:" + "1" * 64
    bundle = dsse_bundle(key, PAYLOAD_TYPE, provenance_payload(index, DIGEST))
    for digest in (index, DIGEST):
        verdict = sigstore_verify(bundle, key.verifying_key.pem, digest=digest)
        assert verdict.line == f"OK dsse-envelope {PAYLOAD_TYPE} {SLSA_PROVENANCE_PREDICATE_TYPE}", verdict
        verified = verify_bundle(bundle, key.verifying_key, digest)
        assert verified.predicate_type == SLSA_PROVENANCE_PREDICATE_TYPE
        assert not verified.is_signature


def test_dsse_signature_covers_the_pae(key: SigningKey) -> None:
    """The signature is over DSSEv1's pre-authentication encoding, checked here by hand."""
    payload = b'{"x":"\xc3\xa9"}'
    envelope = json.loads(dsse_bundle(key, "application/x-test", payload))["dsseEnvelope"]
    signed = b"DSSEv1 18 application/x-test " + str(len(payload)).encode() + b" " + payload
    assert pae("application/x-test", payload) == signed
    assert key.verifying_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), signed)


def test_bundles_are_identical_on_repeat(key: SigningKey) -> None:
    assert image_signature_bundle(key, MANIFEST) == image_signature_bundle(key, MANIFEST)
    assert message_signature_bundle(key, MANIFEST) == message_signature_bundle(key, MANIFEST)


def test_bundle_annotations(key: SigningKey) -> None:
    created = "2024-03-08T18:18:20Z"
    assert bundle_annotations(image_signature_bundle(key, MANIFEST), created) == {
        ANNOTATION_CONTENT: "dsse-envelope",
        ANNOTATION_PREDICATE_TYPE: COSIGN_SIGN_PREDICATE_TYPE,
        ANNOTATION_CREATED: created,
    }
    assert bundle_annotations(message_signature_bundle(key, MANIFEST), created) == {
        "dev.sigstore.bundle.content": "message-signature",
        "org.opencontainers.image.created": created,
    }


# --- what is refused, by both verifiers --------------------------------------------------------


def test_another_manifest_is_refused(key: SigningKey) -> None:
    signed = image_signature_bundle(key, MANIFEST)
    verdict = sigstore_verify(signed, key.verifying_key.pem, digest=OTHER)
    assert not verdict.ok and "SUBJECT_ERROR" in verdict.line, verdict
    with pytest.raises(SignatureError, match=rf"^bundle speaks of {DIGEST}, not of {OTHER}$"):
        verify_bundle(signed, key.verifying_key, OTHER)

    message = message_signature_bundle(key, MANIFEST)
    altered = MANIFEST.replace(b'"layers": []', b'"layers": [ ]')
    altered_digest = "sha256:" + hashlib.sha256(altered).hexdigest()
    verdict = sigstore_verify(message, key.verifying_key.pem, artifact=altered)
    assert not verdict.ok and "signature verification failed" in verdict.line, verdict
    with pytest.raises(SignatureError, match=r"signature does not verify with this key"):
        verify_bundle(message, key.verifying_key, altered_digest, altered)
    with pytest.raises(SignatureError, match=r"^the bytes given to verify bundle are sha256:\w+, not sha256:0+$"):
        verify_bundle(message, key.verifying_key, OTHER, MANIFEST)
    with pytest.raises(SignatureError, match=r"needs the signed bytes$"):
        verify_bundle(message, key.verifying_key, DIGEST)


def _retarget_payload(document: dict[str, Any]) -> None:
    """Point the signed statement at another image, keeping the signature."""
    envelope = document["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"]).replace(DIGEST.split(":")[1].encode(), b"0" * 64)
    envelope["payload"] = b64(payload)


def _flip_signature(content: str, field: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        holder = document[content]["signatures"][0] if content == "dsseEnvelope" else document[content]
        signature = bytearray(base64.b64decode(holder[field]))
        signature[-5] ^= 0x40
        holder[field] = b64(bytes(signature))

    return change


def _retype_payload(document: dict[str, Any]) -> None:
    document["dsseEnvelope"]["payloadType"] = "application/json"


@pytest.mark.parametrize(
    ("change", "digest"),
    [(_retarget_payload, OTHER), (_flip_signature("dsseEnvelope", "sig"), DIGEST), (_retype_payload, DIGEST)],
    ids=["payload-retargeted", "signature-altered", "payload-type-altered"],
)
def test_altered_dsse_bundle_is_refused(key: SigningKey, change: Callable[[dict[str, Any]], None], digest: str) -> None:
    altered = edit(image_signature_bundle(key, MANIFEST), change)
    verdict = sigstore_verify(altered, key.verifying_key.pem, digest=digest)
    assert not verdict.ok and "signature verification failed" in verdict.line, verdict
    with pytest.raises(SignatureError, match=r"^bundle's signature does not verify with this key: altered, or made"):
        verify_bundle(altered, key.verifying_key, digest)


def test_altered_message_signature_is_refused(key: SigningKey) -> None:
    altered = edit(message_signature_bundle(key, MANIFEST), _flip_signature("messageSignature", "signature"))
    verdict = sigstore_verify(altered, key.verifying_key.pem, artifact=MANIFEST)
    assert not verdict.ok and "signature verification failed" in verdict.line, verdict
    with pytest.raises(SignatureError, match=r"signature does not verify with this key"):
        verify_bundle(altered, key.verifying_key, DIGEST, MANIFEST)


def test_altered_message_digest_is_refused(key: SigningKey) -> None:
    """The message digest is not what the signature covers, but a bundle whose digest names
    another artifact is not this artifact's."""

    def change(document: dict[str, Any]) -> None:
        document["messageSignature"]["messageDigest"]["digest"] = b64(b"\x00" * 32)

    altered = edit(message_signature_bundle(key, MANIFEST), change)
    verdict = sigstore_verify(altered, key.verifying_key.pem, artifact=MANIFEST)
    assert not verdict.ok and "DIGEST_ERROR" in verdict.line, verdict
    with pytest.raises(SignatureError, match=r"message digest is not that of sha256:"):
        verify_bundle(altered, key.verifying_key, DIGEST, MANIFEST)


def test_another_key_is_refused(key: SigningKey, other_key: SigningKey) -> None:
    bundle = image_signature_bundle(other_key, MANIFEST)
    verdict = sigstore_verify(bundle, key.verifying_key.pem, digest=DIGEST)
    assert not verdict.ok and "key not found" in verdict.line, verdict
    with pytest.raises(SignatureError, match=r"^bundle is signed by another key \(key hint "):
        verify_bundle(bundle, key.verifying_key, DIGEST)

    # The hint is no authentication: naming the expected key changes nothing.
    def claim(document: dict[str, Any]) -> None:
        document["verificationMaterial"]["publicKey"]["hint"] = key.verifying_key.hint

    claimed = edit(bundle, claim)
    verdict = sigstore_verify(claimed, key.verifying_key.pem, digest=DIGEST)
    assert not verdict.ok and "signature verification failed" in verdict.line, verdict
    with pytest.raises(SignatureError, match=r"signature does not verify with this key"):
        verify_bundle(claimed, key.verifying_key, DIGEST)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(mediaType="application/json"),
            r"has media type 'application/json', not a Sigstore bundle's$",
        ),
        (
            lambda d: d["verificationMaterial"].update(publicKey=None, certificate={"rawBytes": "AAAA"}),
            r"is signed with a certificate \(keyless\); only key signatures are verified here$",
        ),
        (
            lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]),
            r"DSSE envelope must hold exactly one signature$",
        ),
        (
            lambda d: d.update(messageSignature={"signature": "AAAA"}),
            r"must hold exactly one of a DSSE envelope and a message signature$",
        ),
        (lambda d: d["dsseEnvelope"].update(payload="not base64!"), r"DSSE payload is not base64$"),
    ],
    ids=["media-type", "certificate", "two-signatures", "two-contents", "bad-base64"],
)
def test_malformed_bundles_are_refused(key: SigningKey, change: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_bundle(edit(image_signature_bundle(key, MANIFEST), change), key.verifying_key, DIGEST)


def test_not_json_is_refused(key: SigningKey) -> None:
    with pytest.raises(SignatureError, match=r"^bundle is not valid JSON"):
        verify_bundle(b"\x00not json", key.verifying_key, DIGEST)


def test_statement_of_a_bundle_must_be_in_toto(key: SigningKey) -> None:
    """A DSSE envelope of in-toto type whose payload is not a Statement is refused, once its
    signature is known to be good."""
    bundle = dsse_bundle(key, PAYLOAD_TYPE, b'{"_type":"https://example.com/other"}')
    with pytest.raises(SignatureError, match=r"is not an in-toto statement \(_type 'https://example.com/other'\)$"):
        verify_bundle(bundle, key.verifying_key, DIGEST)
