"""in-toto attestation Statements (v1) and DSSE, the envelope that signs them.

A Statement binds a predicate (what is said) to subjects (the artifacts it is said of, by
digest)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "…", "digest": {"sha256": "…"}}],
     "predicateType": "https://slsa.dev/provenance/v1",
     "predicate": {…}}

DSSE signs a payload together with its type: the signature covers the pre-authentication encoding
``PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body`` (lengths in bytes, decimal),
so a payload cannot be passed off as another type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zeroimage.errors import InputError, SignatureError
from zeroimage.oci.descriptor import dumps, loads
from zeroimage.oci.digest import split_digest

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: The Statement's previous version, which verifiers still meet (cosign 1.x attestations).
STATEMENT_TYPE_V01 = "https://in-toto.io/Statement/v0.1"
#: DSSE's payloadType for an in-toto Statement.
PAYLOAD_TYPE = "application/vnd.in-toto+json"

#: What cosign 3 signs for an image: an empty predicate over the image's digest.
COSIGN_SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
SLSA_PROVENANCE_PREDICATE_TYPE = "https://slsa.dev/provenance/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the bytes a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def digest_set(digest: str) -> dict[str, str]:
    """``sha256:ab…`` as an in-toto DigestSet, ``{"sha256": "ab…"}``."""
    algorithm, hex_ = split_digest(digest)
    return {algorithm: hex_}


def resource(
    digest: str = "",
    *,
    name: str = "",
    uri: str = "",
    media_type: str = "",
    annotations: Mapping[str, Any] | None = None,
    digests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An in-toto ResourceDescriptor with the fields given (one of ``uri`` or a digest at least),
    in the spec's order. ``digests`` adds DigestSet entries that are not OCI digests
    (``{"gitCommit": "…"}``)."""
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if uri:
        out["uri"] = uri
    digest_map = digest_set(digest) if digest else {}
    digest_map.update(digests or {})
    if digest_map:
        out["digest"] = digest_map
    if media_type:
        out["mediaType"] = media_type
    if annotations:
        out["annotations"] = dict(annotations)
    if not (uri or digest_map):
        raise ValueError("an in-toto ResourceDescriptor needs a uri or a digest")
    return out


def statement(subjects: Sequence[Mapping[str, Any]], predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    """A Statement v1, serialised compactly in a fixed key order (the same input gives the same
    bytes)."""
    if not subjects:
        raise ValueError("an in-toto Statement needs at least one subject")
    if not all(s.get("digest") for s in subjects):
        raise ValueError("every subject of an in-toto Statement needs a digest")
    return dumps(
        {
            "_type": STATEMENT_TYPE,
            "subject": [dict(s) for s in subjects],
            "predicateType": predicate_type,
            "predicate": dict(predicate),
        }
    )


@dataclass(frozen=True)
class Statement:
    """A Statement as read back: its subjects' DigestSets (and names), its predicate."""

    type: str
    predicate_type: str
    subjects: tuple[tuple[str, Mapping[str, str]], ...]
    predicate: Mapping[str, Any] = field(default_factory=dict)

    def covers(self, digest: str) -> bool:
        """Whether one of the subjects is the artifact of this digest."""
        algorithm, hex_ = split_digest(digest)
        return any(digests.get(algorithm, "").lower() == hex_ for _, digests in self.subjects)

    def subject_digests(self) -> list[str]:
        return [f"{alg}:{hex_}" for _, digests in self.subjects for alg, hex_ in sorted(digests.items())]


def parse_statement(payload: bytes, what: str = "attestation") -> Statement:
    """An in-toto Statement (v1 or v0.1) from a verified DSSE payload; SignatureError saying
    what is wrong otherwise."""
    try:
        document = loads(payload, f"{what}'s statement")
    except InputError as exc:
        raise SignatureError(str(exc)) from None
    kind = document.get("_type")
    if kind not in (STATEMENT_TYPE, STATEMENT_TYPE_V01):
        raise SignatureError(f"{what} is not an in-toto statement (_type {str(kind)[:80]!r})")
    predicate_type = document.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise SignatureError(f"{what}'s in-toto statement has no predicateType")
    raw_subjects = document.get("subject")
    if not isinstance(raw_subjects, list) or not raw_subjects:
        raise SignatureError(f"{what}'s in-toto statement has no subject")
    subjects: list[tuple[str, Mapping[str, str]]] = []
    for item in raw_subjects:
        digests = item.get("digest") if isinstance(item, dict) else None
        if not isinstance(digests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in digests.items()
        ):
            raise SignatureError(f"{what}'s in-toto statement has a subject without a valid digest")
        name = item.get("name", "")
        subjects.append((name if isinstance(name, str) else "", dict(digests)))
    predicate = document.get("predicate")
    return Statement(
        type=kind,
        predicate_type=predicate_type,
        subjects=tuple(subjects),
        predicate=predicate if isinstance(predicate, dict) else {},
    )


def cosign_sign_statement(manifest_digest: str, annotations: Mapping[str, str] | None = None) -> bytes:
    """What cosign 3 signs for ``cosign sign IMAGE``: a Statement with the image's digest as its
    only (unnamed) subject, predicate type ``https://sigstore.dev/cosign/sign/v1`` and an empty
    predicate; ``cosign sign -a k=v`` annotations go on the subject."""
    subject: dict[str, Any] = {"digest": digest_set(manifest_digest)}
    if annotations:
        subject["annotations"] = dict(annotations)
    return statement([subject], COSIGN_SIGN_PREDICATE_TYPE, {})
