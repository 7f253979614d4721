"""What ``zeroimage verify`` decides, once the caller has fetched what is attached to an image.

The caller (registry or layout side) gathers, for one manifest digest:

- each referrer (from the Referrers API or the ``sha256-<hex>`` tag schema): the artifact
  manifest's bytes and the blobs of its layers (:class:`Referrer`);
- the legacy signature image at the ``sha256-<hex>.sig`` tag, if any, with the payload blobs
  its layers name (:class:`LegacyImage`).

:func:`verify_attachments` checks every blob against its digest, every artifact's ``subject``,
every signature against the key, and lists what is attached (signatures, provenance, SBOMs, other
attestations). The image is verified when at least one signature of the image itself — a cosign 3
bundle, a message signature, or a legacy signature — is valid for the key;
:meth:`Verification.reason` is the one line saying why not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zeroimage.errors import DigestError, InputError, SignatureError
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.digest import validate_digest, verify_bytes
from zeroimage.oci.manifest import Manifest, parse_document
from zeroimage.signing import intoto
from zeroimage.signing.bundle import BUNDLE_MEDIA_TYPES, verify_bundle
from zeroimage.signing.keys import VerifyingKey
from zeroimage.signing.legacy import legacy_signatures, signature_tag, verify_legacy

#: SBOM media types (an artifact's artifactType, or its layer's media type) and their format.
SBOM_FORMATS = {
    mt.SPDX_JSON: "SPDX",
    "text/spdx": "SPDX",
    mt.CYCLONEDX_JSON: "CycloneDX",
    "application/vnd.cyclonedx+xml": "CycloneDX",
    "application/vnd.syft+json": "Syft",
}
#: Predicate types of attestations that carry an SBOM.
SBOM_PREDICATES = {
    "https://spdx.dev/Document": "SPDX",
    "https://cyclonedx.org/bom": "CycloneDX",
}

SIGNATURE = "signature"
PROVENANCE = "provenance"
SBOM = "sbom"
ATTESTATION = "attestation"
OTHER = "other"


@dataclass(frozen=True)
class Referrer:
    """An artifact that names the image as its subject: its manifest's bytes (with the digest
    it was listed under) and the blobs of its layers, by digest."""

    digest: str
    manifest: bytes
    blobs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class LegacyImage:
    """The image at the ``.sig`` tag: its manifest's bytes and the payload blobs, by digest."""

    manifest: bytes
    blobs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    """One thing attached to the image, and what came of checking it."""

    kind: str  # SIGNATURE, PROVENANCE, SBOM, ATTESTATION or OTHER
    where: str  # "referrer sha256:…" or "sha256-….sig layer N"
    form: str  # "bundle", "legacy", or the artifact's type
    verified: bool
    #: What it is (a predicate type, an SBOM format) when verified, why not otherwise.
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    """Everything found attached to one manifest digest."""

    digest: str
    attachments: tuple[Attachment, ...]

    def to_json(self) -> dict[str, object]:
        """What ``zeroimage verify --json`` prints."""
        return {
            "digest": self.digest,
            "verified": self.ok,
            "reason": self.reason(),
            "attachments": [
                {"kind": a.kind, "form": a.form, "verified": a.verified, "detail": a.detail, "where": a.where}
                for a in self.attachments
            ],
        }

    @property
    def signatures(self) -> tuple[Attachment, ...]:
        return tuple(a for a in self.attachments if a.kind == SIGNATURE and a.verified)

    @property
    def ok(self) -> bool:
        """Whether a valid signature of this image by the key was found."""
        return bool(self.signatures)

    def reason(self) -> str:
        """One line: which signatures verified, or why none did."""
        if self.ok:
            forms = sorted({a.form for a in self.signatures})
            return f"{self.digest} is signed by this key ({', '.join(forms)})"
        failed = [a for a in self.attachments if not a.verified and a.kind in (SIGNATURE, OTHER)]
        if failed:
            return f"no valid signature of {self.digest} by this key: {failed[0].detail}" + (
                f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            )
        return f"no signature of {self.digest} found (no signature referrer, no {signature_tag(self.digest)} tag)"


def _blob(blobs: Mapping[str, bytes], digest: str, what: str) -> bytes:
    data = blobs.get(digest)
    if data is None:
        raise SignatureError(f"{what} {digest} was not fetched")
    try:
        return verify_bytes(data, digest, what)
    except DigestError as exc:
        raise SignatureError(str(exc)) from None


def _kind_of_statement(predicate_type: str) -> tuple[str, str]:
    if predicate_type == intoto.COSIGN_SIGN_PREDICATE_TYPE:
        return SIGNATURE, predicate_type
    if predicate_type.startswith("https://slsa.dev/provenance/"):
        return PROVENANCE, predicate_type
    if predicate_type in SBOM_PREDICATES:
        return SBOM, SBOM_PREDICATES[predicate_type]
    return ATTESTATION, predicate_type


def _referrer(referrer: Referrer, digest: str, key: VerifyingKey, subject_manifest: bytes | None) -> Attachment:
    where = f"referrer {referrer.digest}"
    try:
        manifest = parse_document(verify_bytes(referrer.manifest, referrer.digest, where), where)
    except InputError as exc:  # DigestError included
        return Attachment(OTHER, where, "", False, str(exc))
    if not isinstance(manifest, Manifest) or manifest.subject is None or manifest.subject.digest != digest:
        return Attachment(OTHER, where, "", False, f"{where} does not name {digest} as its subject")
    layer_types = {layer.media_type for layer in manifest.layers}
    artifact_type = manifest.artifact_type or manifest.config.media_type
    bundle_layers = [layer for layer in manifest.layers if layer.media_type in BUNDLE_MEDIA_TYPES]
    if artifact_type in BUNDLE_MEDIA_TYPES or bundle_layers:
        if len(bundle_layers) != 1:
            return Attachment(OTHER, where, "bundle", False, f"{where} holds {len(bundle_layers)} bundles, not one")
        try:
            bundle = _blob(referrer.blobs, bundle_layers[0].digest, f"{where}'s bundle")
            verified = verify_bundle(bundle, key, digest, subject_manifest, what=f"bundle of {where}")
        except SignatureError as exc:
            return Attachment(SIGNATURE, where, "bundle", False, str(exc))
        if verified.statement is None:  # a message signature
            return Attachment(SIGNATURE, where, "bundle", True, "message signature")
        kind, detail = _kind_of_statement(verified.predicate_type)
        return Attachment(kind, where, "bundle", True, detail)
    for media_type in (artifact_type, *sorted(layer_types)):
        if media_type in SBOM_FORMATS:
            return Attachment(SBOM, where, media_type, False, f"{SBOM_FORMATS[media_type]} (not signed by itself)")
    return Attachment(ATTESTATION, where, artifact_type, False, f"unknown artifact type {artifact_type[:80]!r}")


def _legacy(image: LegacyImage, digest: str, key: VerifyingKey) -> list[Attachment]:
    tag = signature_tag(digest)
    try:
        entries = legacy_signatures(image.manifest)
    except InputError as exc:
        return [Attachment(SIGNATURE, tag, "legacy", False, f"{tag}: {exc}")]
    found = []
    for n, entry in enumerate(entries, 1):
        where = f"{tag} layer {n}"
        try:
            payload = _blob(image.blobs, entry.payload.digest, f"{where} payload")
            verify_legacy(digest, payload, entry.signature_b64, key)
        except SignatureError as exc:
            found.append(Attachment(SIGNATURE, where, "legacy", False, str(exc)))
        else:
            found.append(Attachment(SIGNATURE, where, "legacy", True, "simple signing"))
    return found


def verify_attachments(
    digest: str,
    key: VerifyingKey,
    *,
    referrers: Sequence[Referrer] = (),
    legacy: LegacyImage | None = None,
    subject_manifest: bytes | None = None,
    unread: Sequence[Attachment] = (),
) -> Verification:
    """Check what is attached to the manifest ``digest`` against ``key`` (see the module).
    ``subject_manifest``, that manifest's bytes, lets message-signature bundles be checked.
    ``unread``: what the caller found listed but could not fetch (a referrer deleted since it
    was listed), listed as it says."""
    validate_digest(digest)
    attachments = [_referrer(referrer, digest, key, subject_manifest) for referrer in referrers]
    if legacy is not None:
        attachments.extend(_legacy(legacy, digest, key))
    attachments.extend(unread)
    return Verification(digest, tuple(attachments))
