"""Signatures and attestations for images, as cosign makes and reads them — a pure library.

Nothing here does I/O but reading key files; the caller stores what it gets (artifacts with a
``subject``, a ``.sig`` tag) and fetches what it verifies. Everything is deterministic given the
same inputs and key (ECDSA signatures are RFC 6979 where OpenSSL offers it).

- :mod:`~zeroimage.signing.keys`: ECDSA P-256 keys — PEM, encrypted PEM, cosign's encrypted keys.
- :mod:`~zeroimage.signing.bundle`: Sigstore bundles v0.3 — the image signature cosign 3 stores
  (a DSSE envelope of ``https://sigstore.dev/cosign/sign/v1``), DSSE and message-signature
  bundles, and their offline verification against a key.
- :mod:`~zeroimage.signing.legacy`: cosign's legacy signatures — simple-signing payload and the
  ``sha256-<hex>.sig`` image.
- :mod:`~zeroimage.signing.intoto`: in-toto Statements and DSSE's encoding.
- :mod:`~zeroimage.signing.provenance`: SLSA v1 provenance of a build, with the CI's identity.
- :mod:`~zeroimage.signing.verification`: what ``zeroimage verify`` decides from what the
  caller fetched (referrers, the ``.sig`` image): which signatures are the key's, what is attached.

``cryptography`` and PyNaCl load only when a key is loaded.
"""

from zeroimage.signing.bundle import (
    ANNOTATION_CONTENT,
    ANNOTATION_CREATED,
    ANNOTATION_PREDICATE_TYPE,
    BUNDLE_MEDIA_TYPE,
    CONTENT_DSSE,
    CONTENT_MESSAGE,
    VerifiedBundle,
    bundle_annotations,
    dsse_bundle,
    image_signature_bundle,
    message_signature_bundle,
    verify_bundle,
)
from zeroimage.signing.intoto import (
    COSIGN_SIGN_PREDICATE_TYPE,
    PAYLOAD_TYPE,
    SLSA_PROVENANCE_PREDICATE_TYPE,
    STATEMENT_TYPE,
    Statement,
    parse_statement,
)
from zeroimage.signing.keys import SigningKey, VerifyingKey, load_signing_key, load_verifying_key
from zeroimage.signing.legacy import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    LegacyEntry,
    SignatureImage,
    VerifiedLegacy,
    legacy_signature_image,
    legacy_signatures,
    signature_tag,
    simple_signing_payload,
    verify_legacy,
)
from zeroimage.signing.provenance import (
    BUILD_TYPE,
    LOCAL_BUILDER_ID,
    CIIdentity,
    Material,
    ci_identity,
    provenance_predicate,
    provenance_statement,
)
from zeroimage.signing.verification import Attachment, LegacyImage, Referrer, Verification, verify_attachments

__all__ = [
    "ANNOTATION_CONTENT",
    "ANNOTATION_CREATED",
    "ANNOTATION_PREDICATE_TYPE",
    "BUILD_TYPE",
    "BUNDLE_MEDIA_TYPE",
    "CONTENT_DSSE",
    "CONTENT_MESSAGE",
    "COSIGN_SIGN_PREDICATE_TYPE",
    "LOCAL_BUILDER_ID",
    "PAYLOAD_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "SLSA_PROVENANCE_PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "Attachment",
    "CIIdentity",
    "LegacyEntry",
    "LegacyImage",
    "Material",
    "Referrer",
    "SignatureImage",
    "SigningKey",
    "Statement",
    "VerifiedBundle",
    "VerifiedLegacy",
    "Verification",
    "VerifyingKey",
    "bundle_annotations",
    "ci_identity",
    "dsse_bundle",
    "image_signature_bundle",
    "legacy_signature_image",
    "legacy_signatures",
    "load_signing_key",
    "load_verifying_key",
    "message_signature_bundle",
    "parse_statement",
    "provenance_predicate",
    "provenance_statement",
    "signature_tag",
    "simple_signing_payload",
    "verify_attachments",
    "verify_bundle",
    "verify_legacy",
]
