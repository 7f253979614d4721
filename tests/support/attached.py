"""What a build attached to an image — signatures, SBOMs, provenance — read back apart from
zeroimage's code and judged by the verifiers others use.

* :class:`RegistryReader` reads a registry as any client would: manifests with ``skopeo inspect
  --raw`` (byte for byte), blobs and tags with raw HTTP, each blob checked against its digest.
  :class:`LayoutReader` reads an OCI layout directory (an archive once extracted) from its files.
* :func:`artifact` reads one referrer: its manifest (whose ``subject`` must be the image), every
  blob it names (present where it is stored), and its one layer.
* :func:`check_bundle` has npm's ``@sigstore/verify`` verify a Sigstore bundle against the public
  key, and in-toto's own bindings validate its statement; :func:`check_legacy` checks cosign's
  legacy ``sha256-<hex>.sig`` image with ``cryptography`` over the exact payload bytes;
  :func:`check_spdx` and :func:`check_cyclonedx` run ``pyspdxtools`` and cyclonedx-python-lib's
  strict validator.
* :func:`http` is one raw HTTP exchange; :func:`upload_blob` and :func:`put_manifest` store a
  blob or a manifest in a registry the way another tool would.
* :func:`make_key` writes a fresh ECDSA P-256 key pair as ``cosign generate-key-pair`` would use
  it (PKCS#8 PEM, and the public key's PEM).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import peers
from .sigstore_verifier import sigstore_verify

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
IN_TOTO = "application/vnd.in-toto+json"
REF_NAME = "org.opencontainers.image.ref.name"


def referrers_tag(digest: str) -> str:
    """The distribution spec's referrers tag of a sha256 digest: ``sha256-<hex>``."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}-{encoded}"


# -- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """A private key's file (unencrypted PKCS#8 PEM) and its public key's (``cosign.pub``)."""

    private: Path
    public: Path

    @property
    def public_pem(self) -> bytes:
        return self.public.read_bytes()


def make_key(folder: Path, name: str) -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return KeyPair(private, public)


# -- where images are stored ------------------------------------------------------------------------


class Reader(Protocol):
    def manifest(self, repository: str, reference: str) -> bytes: ...
    def blob(self, repository: str, digest: str) -> bytes: ...
    def has_blob(self, repository: str, digest: str) -> bool: ...


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP exchange, apart from zeroimage's client."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def upload_blob(url: str, repository: str, data: bytes) -> str:
    """Upload ``data`` into ``repository`` of the registry at ``url`` (``http://HOST:PORT``) as
    another client would, in raw HTTP: POST an upload session, then PUT the bytes with their
    digest. The digest."""
    status, headers, body = http("POST", f"{url}/v2/{repository}/blobs/uploads/")
    assert status == 202, (status, body)
    location = urljoin(url, headers["Location"])
    digest = peers.digest_of(data)
    separator = "&" if "?" in location else "?"
    # application/octet-stream: without a type, the registry (Go) would read the body as a form
    status, _, body = http(
        "PUT", f"{location}{separator}digest={digest}", data, {"Content-Type": "application/octet-stream"}
    )
    assert status == 201, (status, body)
    return digest


def put_manifest(url: str, repository: str, reference: str, data: bytes, media_type: str) -> str:
    """PUT ``data`` (of ``media_type``) as the manifest ``reference`` (a tag or a digest) of
    ``repository`` in the registry at ``url``, in raw HTTP; its digest."""
    status, _, body = http("PUT", f"{url}/v2/{repository}/manifests/{reference}", data, {"Content-Type": media_type})
    assert status == 201, (status, body)
    return peers.digest_of(data)


@dataclass(frozen=True)
class RegistryReader:
    """A registry at ``host`` (plain HTTP on 127.0.0.1): manifests by skopeo, the rest by HTTP."""

    host: str

    def manifest(self, repository: str, reference: str) -> bytes:
        """The exact bytes skopeo reads for ``repository`` at a tag or (``sha256:…``) a digest."""
        at = f"@{reference}" if reference.startswith("sha256:") else f":{reference}"
        raw = peers.skopeo_inspect(f"docker://{self.host}/{repository}{at}", raw=True)
        if reference.startswith("sha256:"):
            assert peers.digest_of(raw) == reference, (repository, reference)
        return raw

    def has_manifest(self, repository: str, reference: str) -> bool:
        status, _, _ = http("HEAD", f"http://{self.host}/v2/{repository}/manifests/{reference}")
        return status == 200

    def blob(self, repository: str, digest: str) -> bytes:
        status, _, body = http("GET", f"http://{self.host}/v2/{repository}/blobs/{digest}")
        assert status == 200, (status, repository, digest)
        assert peers.digest_of(body) == digest, f"{repository} serves other bytes for {digest}"
        return body

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = http("HEAD", f"http://{self.host}/v2/{repository}/blobs/{digest}")
        return status == 200

    def tags(self, repository: str) -> list[str]:
        status, _, body = http("GET", f"http://{self.host}/v2/{repository}/tags/list")
        if status == 404:
            return []
        assert status == 200, (status, body)
        return sorted(json.loads(body).get("tags") or [])


@dataclass(frozen=True)
class LayoutReader:
    """An OCI layout directory (``repository`` is ignored: a layout is one repository)."""

    root: Path

    def _path(self, digest: str) -> Path:
        algorithm, _, encoded = digest.partition(":")
        return self.root / "blobs" / algorithm / encoded

    def manifest(self, repository: str, reference: str) -> bytes:
        if not reference.startswith("sha256:"):
            (entry,) = [e for e in self.index()["manifests"] if (e.get("annotations") or {}).get(REF_NAME) == reference]
            reference = entry["digest"]
        return self.blob(repository, reference)

    def blob(self, repository: str, digest: str) -> bytes:
        data = self._path(digest).read_bytes()
        assert peers.digest_of(data) == digest, f"{self.root}: blob {digest} holds other bytes"
        return data

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._path(digest).is_file()

    def index(self) -> dict[str, Any]:
        return peers.read_index(self.root)

    def referrers(self, subject: str) -> list[dict[str, Any]]:
        """The entries of index.json whose manifest names ``subject`` as its subject."""
        found = []
        for entry in self.index()["manifests"]:
            document = json.loads(self.blob("", entry["digest"]))
            if (document.get("subject") or {}).get("digest") == subject:
                found.append(entry)
        return found


# -- one referrer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attached:
    """A referrer: its manifest (bytes and parsed) and the document its one layer holds."""

    raw: bytes
    manifest: dict[str, Any]
    content: bytes

    @property
    def artifact_type(self) -> str:
        return str(self.manifest.get("artifactType", ""))


def artifact(reader: Reader, repository: str, digest: str, subject: str) -> Attached:
    """The referrer ``digest``: an OCI 1.1 artifact manifest (empty config, one layer) whose
    ``subject`` is ``subject``, each blob it names stored beside it."""
    raw = reader.manifest(repository, digest)
    manifest: dict[str, Any] = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json", manifest
    assert manifest["subject"]["digest"] == subject, manifest
    assert manifest["config"] == {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2}, manifest
    for desc in (manifest["config"], *manifest["layers"]):
        assert reader.has_blob(repository, desc["digest"]), f"{repository} lacks {desc['digest']} that {digest} names"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == manifest["artifactType"], manifest
    return Attached(raw, manifest, reader.blob(repository, layer["digest"]))


# -- the verifiers ------------------------------------------------------------------------------------


def dsse_statement(bundle: bytes) -> dict[str, Any]:
    """The in-toto statement a DSSE bundle signs, read by in-toto's own bindings (strict: an
    unknown field fails) and validated by them. Their ``validate`` wants a predicate, which the
    Statement spec makes optional and cosign 3's image signature leaves empty (``{}``): such a
    statement has its subjects validated one by one instead."""
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import STATEMENT_TYPE_URI, Statement

    envelope = json.loads(bundle)["dsseEnvelope"]
    assert envelope["payloadType"] == IN_TOTO, envelope["payloadType"]
    payload = base64.b64decode(envelope["payload"])
    parsed = Statement.copy_from_pb(json_format.Parse(payload, statement_pb2.Statement()))
    if len(parsed.pb.predicate):
        parsed.validate()
    else:
        assert parsed.pb.type == STATEMENT_TYPE_URI and parsed.pb.predicate_type and parsed.pb.subject
        for subject in parsed.pb.subject:
            ResourceDescriptor.copy_from_pb(subject).validate()
            assert len(subject.digest), "a subject without a digest"
    statement: dict[str, Any] = json.loads(payload)
    return statement


def check_bundle(bundle: bytes, key: KeyPair, digest: str, predicate_type: str) -> dict[str, Any]:
    """@sigstore/verify accepts ``bundle`` by ``key`` as a DSSE envelope of ``predicate_type``
    over a statement whose subjects include ``digest``; the statement."""
    verdict = sigstore_verify(bundle, key.public_pem, digest=digest)
    assert verdict.ok, verdict.line
    assert verdict.line == f"OK dsse-envelope {IN_TOTO} {predicate_type}", verdict.line
    statement = dsse_statement(bundle)
    assert statement["predicateType"] == predicate_type
    assert {"sha256": digest.split(":", 1)[1]} in [s["digest"] for s in statement["subject"]], statement["subject"]
    return statement


def check_slsa_predicate(statement: dict[str, Any]) -> dict[str, Any]:
    """The statement's predicate, read strictly (an unknown field fails) by in-toto's bindings of
    SLSA provenance v1."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

    predicate: dict[str, Any] = statement["predicate"]
    json_format.Parse(json.dumps(predicate), provenance_pb2.Provenance())
    return predicate


def check_legacy(reader: Reader, repository: str, digest: str, key: KeyPair, docker_reference: str) -> int:
    """Cosign's legacy signature image of ``digest`` (``sha256-<hex>.sig``): each layer a
    simple-signing payload naming ``digest`` and ``docker_reference``, its annotation an ECDSA
    signature by ``key`` over those exact bytes. Returns how many signatures it holds."""
    manifest = json.loads(reader.manifest(repository, referrers_tag(digest) + ".sig"))
    public = serialization.load_pem_public_key(key.public_pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert manifest["layers"], manifest
    for layer in manifest["layers"]:
        assert layer["mediaType"] == SIMPLE_SIGNING, layer
        payload = reader.blob(repository, layer["digest"])
        signature = base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION])
        public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature
        critical = json.loads(payload)["critical"]
        assert critical["type"] == "cosign container image signature", critical
        assert critical["image"]["docker-manifest-digest"] == digest, critical
        assert critical["identity"]["docker-reference"] == docker_reference, critical
    return len(manifest["layers"])


def check_spdx(document: bytes, folder: Path, name: str = "sbom") -> dict[str, Any]:
    """``pyspdxtools -i`` (spdx-tools, which parses and validates) accepts ``document``."""
    path = folder / f"{name}.spdx.json"  # pyspdxtools picks its parser from the extension
    path.write_bytes(document)
    tool = Path(sys.executable).parent / "pyspdxtools"
    proc = subprocess.run([str(tool), "-i", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, peers.describe(proc.args, proc.returncode, proc.stdout, proc.stderr)
    parsed: dict[str, Any] = json.loads(document)
    return parsed


def check_cyclonedx(document: bytes) -> dict[str, Any]:
    """cyclonedx-python-lib's strict JSON validator of CycloneDX 1.6 accepts ``document``."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode())
    assert error is None, error
    parsed: dict[str, Any] = json.loads(document)
    return parsed


def purls(document: dict[str, Any]) -> list[str]:
    """Every package URL an SPDX or CycloneDX document gives."""
    if "spdxVersion" in document:
        return [
            ref["referenceLocator"]
            for package in document.get("packages", [])
            for ref in package.get("externalRefs", [])
            if ref.get("referenceType") == "purl"
        ]
    components: Sequence[dict[str, Any]] = [document["metadata"]["component"], *document.get("components", [])]
    return [c["purl"] for c in components if "purl" in c]
