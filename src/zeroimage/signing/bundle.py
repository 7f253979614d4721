"""Sigstore bundles (v0.3): a signature with what is needed to verify it, as one JSON document.

The JSON is protobuf-specs' ``dev.sigstore.bundle.v1.Bundle`` in its JSON mapping. For a key of
one's own (no Fulcio certificate, no transparency log) it reads::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "<base64 sha256 of the key's SPKI DER>"},
                              "tlogEntries": []},
     "dsseEnvelope": {"payload": "<base64>", "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": "<base64 DER ECDSA>"}]}}

or, signing bytes directly, ``"messageSignature": {"messageDigest": {"algorithm": "SHA2_256",
"digest": "<base64>"}, "signature": "<base64>"}``. The hint is sigstore-go's and cosign's
convention; a verifier finds its key by it. As sigstore-go, the DSSE signature carries no
``keyid``: DSSE verifiers (go-securesystemslib) compare a keyid with one they compute in another
encoding, and would skip the signature.

cosign 3 signs an image as a DSSE envelope of an in-toto Statement over the manifest's digest
(predicate ``https://sigstore.dev/cosign/sign/v1``), never as a message signature, and ``cosign
verify`` accepts only DSSE bundles for images: :func:`image_signature_bundle` makes that.

:func:`verify_bundle` checks a bundle against one public key, offline, as sigstore-go does with
a key and no transparency log: the one signature over the DSSE PAE (or over the signed bytes),
then that the statement's subjects (or the message digest) name the expected manifest digest.
Transparency-log entries and timestamps, if a bundle has any, are not checked (nor needed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zeroimage.errors import InputError, SignatureError
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.descriptor import CREATED, dumps, loads
from zeroimage.oci.digest import sha256_digest, split_digest, validate_digest
from zeroimage.signing import intoto
from zeroimage.signing.keys import SigningKey, VerifyingKey

BUNDLE_MEDIA_TYPE = mt.SIGSTORE_BUNDLE_V03
#: Every media type a Sigstore bundle has had; v0.1 and v0.2 bundles verify the same way here.
BUNDLE_MEDIA_TYPES = frozenset(
    {
        BUNDLE_MEDIA_TYPE,
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
    }
)

#: Annotations of the OCI artifact manifest holding a bundle (cosign's BUNDLE_SPEC.md).
ANNOTATION_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"
ANNOTATION_CREATED = CREATED
CONTENT_DSSE = "dsse-envelope"
CONTENT_MESSAGE = "message-signature"

#: Bundles read to be verified are refused past this size (a provenance statement listing a
#: large tree of added files stays far below it).
MAX_BUNDLE_SIZE = 32 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bundle(key: SigningKey, content_field: str, content: Mapping[str, Any]) -> bytes:
    return dumps(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": key.verifying_key.hint}, "tlogEntries": []},
            content_field: dict(content),
        }
    )


def dsse_bundle(key: SigningKey, payload_type: str, payload: bytes) -> bytes:
    """A bundle holding a DSSE envelope of ``payload``, signed by ``key``."""
    signature = key.sign(intoto.pae(payload_type, payload))
    envelope = {"payload": _b64(payload), "payloadType": payload_type, "signatures": [{"sig": _b64(signature)}]}
    return _bundle(key, "dsseEnvelope", envelope)


def message_signature_bundle(key: SigningKey, message: bytes) -> bytes:
    """A bundle holding ``key``'s signature over ``message`` itself (as ``cosign sign-blob``)."""
    signature = key.sign(message)
    content = {
        "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(hashlib.sha256(message).digest())},
        "signature": _b64(signature),
    }
    return _bundle(key, "messageSignature", content)


def image_signature_bundle(key: SigningKey, manifest: bytes, annotations: Mapping[str, str] | None = None) -> bytes:
    """What cosign 3 stores as an image's signature: a DSSE bundle of the in-toto Statement
    ``https://sigstore.dev/cosign/sign/v1`` over the digest of ``manifest`` — the exact bytes
    pushed, whose digest is computed here rather than taken on trust."""
    digest = sha256_digest(manifest)
    return dsse_bundle(key, intoto.PAYLOAD_TYPE, intoto.cosign_sign_statement(digest, annotations))


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SignatureError(f"{what} is missing")
    return value


def _unb64(value: object, what: str) -> bytes:
    text = _text(value, what)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:  # protobuf's JSON mapping accepts URL-safe base64 too
        return base64.b64decode(text, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not base64") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SignatureError(f"{what} is missing")
    return value


@dataclass(frozen=True)
class ParsedBundle:
    """A bundle's parts, not yet verified."""

    media_type: str
    hint: str
    content: str  # CONTENT_DSSE or CONTENT_MESSAGE
    signature: bytes
    payload_type: str = ""
    payload: bytes = b""
    message_digest: bytes = b""
    message_digest_algorithm: str = ""
    tlog_entries: int = 0


def parse_bundle(data: bytes, what: str = "bundle") -> ParsedBundle:
    """A bundle's parts; SignatureError saying what is wrong with it."""
    if len(data) > MAX_BUNDLE_SIZE:
        raise SignatureError(f"{what} is larger than {MAX_BUNDLE_SIZE} bytes")
    try:
        document = loads(data, what)
    except InputError as exc:
        raise SignatureError(str(exc)) from None
    media_type = document.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise SignatureError(f"{what} has media type {str(media_type)[:80]!r}, not a Sigstore bundle's")
    material = _object(document.get("verificationMaterial"), f"{what}'s verificationMaterial")
    if "certificate" in material or "x509CertificateChain" in material:
        raise SignatureError(f"{what} is signed with a certificate (keyless); only key signatures are verified here")
    public_key = _object(material.get("publicKey"), f"{what}'s public key identifier")
    hint = public_key.get("hint", "")
    tlog = material.get("tlogEntries") or []
    common = {
        "media_type": media_type,
        "hint": hint if isinstance(hint, str) else "",
        "tlog_entries": len(tlog) if isinstance(tlog, list) else 0,
    }
    envelope, message = document.get("dsseEnvelope"), document.get("messageSignature")
    if (envelope is None) == (message is None):
        raise SignatureError(f"{what} must hold exactly one of a DSSE envelope and a message signature")
    if envelope is not None:
        envelope = _object(envelope, f"{what}'s DSSE envelope")
        signatures = envelope.get("signatures")
        if not isinstance(signatures, list) or len(signatures) != 1:
            raise SignatureError(f"{what}'s DSSE envelope must hold exactly one signature")
        signature = _object(signatures[0], f"{what}'s DSSE signature")
        return ParsedBundle(
            content=CONTENT_DSSE,
            signature=_unb64(signature.get("sig"), f"{what}'s DSSE signature"),
            payload_type=_text(envelope.get("payloadType"), f"{what}'s DSSE payloadType"),
            payload=_unb64(envelope.get("payload"), f"{what}'s DSSE payload"),
            **common,
        )
    message = _object(message, f"{what}'s message signature")
    message_digest = _object(message.get("messageDigest"), f"{what}'s message digest")
    return ParsedBundle(
        content=CONTENT_MESSAGE,
        signature=_unb64(message.get("signature"), f"{what}'s message signature"),
        message_digest=_unb64(message_digest.get("digest"), f"{what}'s message digest"),
        message_digest_algorithm=str(message_digest.get("algorithm", "")),
        **common,
    )


def bundle_annotations(bundle: bytes, created: str) -> dict[str, str]:
    """The annotations of the OCI artifact manifest that stores ``bundle``, as cosign writes
    them: its content kind, the predicate type of a DSSE statement, and ``created`` (RFC 3339,
    given by the caller so that a build stays reproducible)."""
    parsed = parse_bundle(bundle)
    annotations = {ANNOTATION_CONTENT: parsed.content}
    if parsed.content == CONTENT_DSSE and parsed.payload_type == intoto.PAYLOAD_TYPE:
        annotations[ANNOTATION_PREDICATE_TYPE] = intoto.parse_statement(parsed.payload).predicate_type
    annotations[ANNOTATION_CREATED] = created
    return annotations


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature is the key's and which speaks of the expected digest."""

    content: str  # CONTENT_DSSE or CONTENT_MESSAGE
    hint: str
    payload_type: str = ""
    #: The statement's predicate type (COSIGN_SIGN_PREDICATE_TYPE for an image signature,
    #: SLSA_PROVENANCE_PREDICATE_TYPE for provenance, …); "" for a message signature.
    predicate_type: str = ""
    statement: intoto.Statement | None = None
    #: Transparency-log entries the bundle carries; offline and keyed, they are not checked.
    tlog_entries: int = 0
    payload: bytes = field(default=b"", repr=False)

    @property
    def is_signature(self) -> bool:
        """Whether this is a signature of the image itself (not another kind of attestation)."""
        return self.content == CONTENT_MESSAGE or self.predicate_type == intoto.COSIGN_SIGN_PREDICATE_TYPE


def _not_this_key(parsed: ParsedBundle, key: VerifyingKey, what: str) -> SignatureError:
    if parsed.hint and parsed.hint != key.hint:
        return SignatureError(f"{what} is signed by another key (key hint {parsed.hint[:64]}, not {key.hint})")
    return SignatureError(f"{what}'s signature does not verify with this key: altered, or made by another key")


def verify_bundle(
    bundle: bytes, key: VerifyingKey, subject_digest: str, manifest: bytes | None = None, what: str = "bundle"
) -> VerifiedBundle:
    """Verify ``bundle`` against ``key`` for the artifact of ``subject_digest``; SignatureError
    with the reason otherwise. A message-signature bundle signs bytes, not a digest: it needs
    ``manifest``, the bytes themselves, which must have that digest."""
    validate_digest(subject_digest)
    parsed = parse_bundle(bundle, what)
    if parsed.content == CONTENT_DSSE:
        if not key.verify(parsed.signature, intoto.pae(parsed.payload_type, parsed.payload)):
            raise _not_this_key(parsed, key, what)
        if parsed.payload_type != intoto.PAYLOAD_TYPE:
            raise SignatureError(f"{what}'s DSSE payload is {parsed.payload_type[:80]!r}, not an in-toto statement")
        statement = intoto.parse_statement(parsed.payload, what)
        if not statement.covers(subject_digest):
            named = ", ".join(statement.subject_digests()[:3]) or "nothing"
            raise SignatureError(f"{what} speaks of {named}, not of {subject_digest}")
        return VerifiedBundle(
            content=CONTENT_DSSE,
            hint=parsed.hint,
            payload_type=parsed.payload_type,
            predicate_type=statement.predicate_type,
            statement=statement,
            tlog_entries=parsed.tlog_entries,
            payload=parsed.payload,
        )
    if manifest is None:
        raise SignatureError(f"{what} is a message signature: verifying it needs the signed bytes")
    algorithm, hex_ = split_digest(subject_digest)
    actual = hashlib.new(algorithm, manifest).hexdigest()
    if actual != hex_:
        raise SignatureError(f"the bytes given to verify {what} are {algorithm}:{actual}, not {subject_digest}")
    if not key.verify(parsed.signature, manifest):
        raise _not_this_key(parsed, key, what)
    if (
        parsed.message_digest_algorithm not in ("SHA2_256", "")
        or parsed.message_digest != hashlib.sha256(manifest).digest()
    ):
        raise SignatureError(f"{what}'s message digest is not that of {subject_digest}")
    return VerifiedBundle(content=CONTENT_MESSAGE, hint=parsed.hint, tlog_entries=parsed.tlog_entries)
