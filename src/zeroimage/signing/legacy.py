"""cosign's legacy signatures: a simple-signing payload, signed, stored in a ``.sig`` image.

What cosign 1.x–2.x write and what verifiers of that age (and Kyverno's ``verifyImages``,
policy-controller without ``signatureFormat: bundle``) still read (cosign's SIGNATURE_SPEC.md):

- the payload, exactly as cosign marshals it (Go's ``encoding/json``, compact)::

      {"critical":{"identity":{"docker-reference":"registry.example.com/app"},
       "image":{"docker-manifest-digest":"sha256:…"},"type":"cosign container image signature"},
       "optional":null}

- signed with ECDSA P-256 over SHA-256 of those exact bytes;
- stored as a layer (media type ``application/vnd.dev.cosign.simplesigning.v1+json``) of an
  image tagged ``sha256-<hex>.sig`` in the signed image's repository, the base64 signature in
  the layer's ``dev.cosignproject.cosign/signature`` annotation. Several signatures are several
  layers of that one image: a new one is appended, the others kept as they were.

The config is what go-containerregistry makes for cosign (empty platform, zero times, one
history entry and one diff_id per layer: the layers are not compressed, so a diff_id is the
layer's digest).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zeroimage.errors import InputError, SignatureError
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.descriptor import Descriptor, dumps, loads
from zeroimage.oci.digest import sha256_digest, split_digest, validate_digest, verify_bytes
from zeroimage.oci.manifest import Manifest, parse_document
from zeroimage.signing.keys import VerifyingKey

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
#: cosign refuses to read a signature image with more layers than this.
MAX_SIGNATURES = 1000
#: A simple-signing payload is a few hundred bytes; one read to be verified is bounded.
MAX_PAYLOAD_SIZE = 1024 * 1024

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as go-containerregistry writes it


def signature_tag(manifest_digest: str) -> str:
    """The tag of the signature image of ``manifest_digest``: ``sha256-<hex>.sig``."""
    algorithm, hex_ = split_digest(manifest_digest)
    return f"{algorithm}-{hex_}.sig"


def _go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, map keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def simple_signing_payload(
    docker_reference: str, manifest_digest: str, optional: Mapping[str, Any] | None = None
) -> bytes:
    """The payload cosign signs for an image: ``docker_reference`` is the repository the image
    was pushed to, without tag or digest (``registry.example.com/app``, as cosign's
    ``Repository.Name()``); ``optional`` holds ``cosign sign -a`` annotations (null without)."""
    validate_digest(manifest_digest)
    critical = (
        '{"identity":{"docker-reference":' + _go_json(docker_reference) + "},"
        '"image":{"docker-manifest-digest":' + _go_json(manifest_digest) + "},"
        '"type":' + _go_json(COSIGN_SIGNATURE_TYPE) + "}"
    )
    optional_json = _go_json(dict(optional)) if optional else "null"
    return ('{"critical":' + critical + ',"optional":' + optional_json + "}").encode()


@dataclass(frozen=True)
class SignatureImage:
    """A ``.sig`` image to store: its manifest's exact bytes and the blobs it names that are
    new (its config and the new payload); the layers of signatures already there are named by
    descriptor and must already be where the manifest goes."""

    manifest: bytes
    media_type: str
    blobs: Mapping[str, bytes] = field(default_factory=dict)
    #: False when this signature was already there: ``manifest`` is then the existing bytes.
    added: bool = True

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def _config(existing: Mapping[str, Any] | None, layers: tuple[Descriptor, ...]) -> bytes:
    """The signature image's config: an existing one with its history and diff_ids brought up to
    the layers (every other field kept, in its place), or a fresh one as cosign makes it."""
    if existing is None:
        config: dict[str, Any] = {"architecture": "", "created": _ZERO_TIME, "history": [], "os": "", "rootfs": {}}
        config["config"] = {}
    else:
        config = dict(existing)
    history = config.get("history")
    history = list(history) if isinstance(history, list) else []
    history.extend({"created": _ZERO_TIME} for _ in range(len(layers) - len(history)))
    config["history"] = history
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.digest for layer in layers]}
    return dumps(config)


def legacy_signature_image(
    payload: bytes,
    signature: bytes,
    existing_manifest: bytes | None = None,
    existing_config: bytes | None = None,
) -> SignatureImage:
    """The ``.sig`` image with this signature (DER, as :meth:`SigningKey.sign` gives) of
    ``payload`` added to the signatures already in ``existing_manifest`` (read from the
    ``.sig`` tag; None when there is none). ``existing_config`` is that image's config (verified
    against the manifest here); without it a fresh config is made. A signature already there
    (same payload, same signature) is not added twice."""
    signature_b64 = base64.b64encode(signature).decode()
    payload_digest = sha256_digest(payload)
    layer = Descriptor(
        media_type=SIMPLE_SIGNING_MEDIA_TYPE,
        digest=payload_digest,
        size=len(payload),
        annotations={SIGNATURE_ANNOTATION: signature_b64},
    )
    existing_config_doc: dict[str, Any] | None = None
    if existing_manifest is None:
        manifest = Manifest(config=Descriptor(mt.OCI_CONFIG, sha256_digest(b"{}"), 2), layers=())
    else:
        document = parse_document(existing_manifest, "signature image")
        if not isinstance(document, Manifest):
            raise InputError("signature image is an image index, not a manifest")
        manifest = document
        for old in manifest.layers:
            if old.digest == payload_digest and old.annotations.get(SIGNATURE_ANNOTATION) == signature_b64:
                return SignatureImage(existing_manifest, manifest.media_type, {}, added=False)
        if len(manifest.layers) >= MAX_SIGNATURES:
            raise InputError(f"signature image already holds {len(manifest.layers)} signatures, cosign's limit")
        if existing_config is not None:
            verify_bytes(existing_config, manifest.config.digest, "signature image config")
            existing_config_doc = loads(existing_config, "signature image config")
    layers = (*manifest.layers, layer)
    config = _config(existing_config_doc, layers)
    new = Manifest(
        config=Descriptor(manifest.config.media_type, sha256_digest(config), len(config)),
        layers=layers,
        media_type=manifest.media_type,
        annotations=manifest.annotations,
        extra=manifest.extra,
    )
    raw = new.to_bytes()
    return SignatureImage(raw, new.media_type, {sha256_digest(config): config, payload_digest: payload})


@dataclass(frozen=True)
class LegacyEntry:
    """One signature of a ``.sig`` image: its payload's descriptor and base64 signature."""

    payload: Descriptor
    signature_b64: str
    has_certificate: bool = False


def legacy_signatures(manifest: bytes) -> tuple[LegacyEntry, ...]:
    """The signatures a ``.sig`` image holds (layers of another media type, or without a
    signature annotation, are skipped)."""
    document = parse_document(manifest, "signature image")
    if not isinstance(document, Manifest):
        raise InputError("signature image is an image index, not a manifest")
    return tuple(
        LegacyEntry(layer, layer.annotations[SIGNATURE_ANNOTATION], CERTIFICATE_ANNOTATION in layer.annotations)
        for layer in document.layers[:MAX_SIGNATURES]
        if layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE and SIGNATURE_ANNOTATION in layer.annotations
    )


@dataclass(frozen=True)
class VerifiedLegacy:
    """A legacy signature that is the key's and names the expected manifest digest."""

    docker_reference: str
    manifest_digest: str
    optional: Mapping[str, Any] | None


def verify_legacy(manifest_digest: str, payload: bytes, signature_b64: str, key: VerifyingKey) -> VerifiedLegacy:
    """Verify a legacy signature as cosign does: ``key``'s ECDSA signature over the exact
    ``payload`` bytes, and a payload of cosign's type naming ``manifest_digest``; SignatureError
    with the reason otherwise."""
    validate_digest(manifest_digest)
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise SignatureError(f"legacy signature payload is larger than {MAX_PAYLOAD_SIZE} bytes")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("legacy signature is not base64") from None
    if not key.verify(signature, payload):
        raise SignatureError("legacy signature does not verify with this key: altered, or made by another key")
    try:
        document = loads(payload, "legacy signature payload")
    except InputError as exc:
        raise SignatureError(str(exc)) from None
    critical = document.get("critical")
    critical = critical if isinstance(critical, dict) else {}
    if critical.get("type") != COSIGN_SIGNATURE_TYPE:
        raise SignatureError(f"legacy signature payload has type {str(critical.get('type'))[:80]!r}, not cosign's")
    image = critical.get("image")
    named = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if named != manifest_digest:
        raise SignatureError(f"legacy signature speaks of {str(named)[:80]}, not of {manifest_digest}")
    identity = critical.get("identity")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else ""
    optional = document.get("optional")
    return VerifiedLegacy(
        docker_reference=reference if isinstance(reference, str) else "",
        manifest_digest=manifest_digest,
        optional=optional if isinstance(optional, dict) else None,
    )
