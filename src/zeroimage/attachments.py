"""What a build attaches to the image it writes: signatures, SBOMs and provenance.

Each is made once the manifest it speaks of is made — its exact bytes, its digest — as an OCI 1.1
artifact naming that manifest as its ``subject`` (:func:`~zeroimage.oci.artifact.make_artifact`),
and, for cosign's legacy form, as a payload and a signature that a registry stores under the
``sha256-<hex>.sig`` tag. A build may write one image in two formats (OCI, and Docker v2s2 for a
``--format docker`` push beside an OCI archive): each graph is signed and described as written.

    each platform manifest ── SBOM (--sbom) ─────────────┐
    the root and each manifest ── signature bundle ──────┤  referrers (every sink that takes them)
    the root ── provenance (--provenance) ───────────────┘
    the root and each manifest ── legacy signature ─────── the .sig tag (registries)

A signature covers only what the build vouches for: the pipeline proves a layer reused from a
registry before it signs an image holding it. Everything here is deterministic: the same inputs
and key give the same artifacts (ECDSA signatures are RFC 6979), so a re-push adds nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeroimage.cancel import Worker
from zeroimage.errors import InputError
from zeroimage.files import CHUNK, describe_os_error
from zeroimage.image import ImageGraph, LegacySignature
from zeroimage.oci import Descriptor, Platform
from zeroimage.oci.artifact import Artifact, make_artifact

if TYPE_CHECKING:
    from zeroimage import sbom
    from zeroimage.signing import SigningKey
    from zeroimage.signing.provenance import Material


@dataclass(frozen=True)
class PlatformFacts:
    """What one platform's image holds, as its SBOM and provenance name it: its programs and the
    files the build added (path in the image, size, checksums) and its base."""

    platform: Platform
    programs: tuple[sbom.Program, ...]
    files: tuple[sbom.File, ...]
    base: sbom.BaseImage | None


@dataclass
class Attacher:
    """Makes a build's attachments for each graph it writes (one per format), once each."""

    name: str  # the image's name in SBOMs and provenance: its first push's repository, or the program's
    created: str  # RFC 3339: the image's created time, the artifacts' too
    #: What each platform's image holds, by platform (as its config spells it): asked for once,
    #: when the first attachment is made (its files' checksums, its programs' contents).
    facts_of: Callable[[], Mapping[str, PlatformFacts]]
    key: SigningKey | None = None
    legacy_signatures: bool = False
    bundles: bool = False
    sbom: sbom.Format | None = None
    provenance: Mapping[str, Any] | None = None  # the build's parameters, when asked for
    environment: Mapping[str, str] = field(default_factory=dict)
    repository: str = ""  # of the first push, for the SBOM's package URL of the image
    tag: str = ""
    _made: dict[str, list[Artifact]] = field(default_factory=dict)
    _sboms: dict[str, list[tuple[Platform, bytes]]] = field(default_factory=dict)
    _facts: Mapping[str, PlatformFacts] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _worker: Worker | None = None
    _failure: BaseException | None = None

    @property
    def facts(self) -> Mapping[str, PlatformFacts]:
        if self._facts is None:
            self._facts = self.facts_of()
        return self._facts

    def begin(self, graphs: Iterable[ImageGraph]) -> None:
        """Make the attachments of ``graphs`` in a thread of their own, from now on, while the
        outputs take the image (a push waits for its upload meanwhile); :meth:`referrers` waits
        for them, and raises what went wrong."""
        chosen = list(graphs)

        def run() -> None:
            try:
                for graph in chosen:
                    self._made_for(graph)
            except BaseException as exc:  # noqa: BLE001 - raised in the build's thread by referrers()
                self._failure = exc

        self._worker = Worker(run, "attachments")
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.wait()

    # -- referrers -----------------------------------------------------------------------------

    def referrers(self, graph: ImageGraph) -> list[Artifact]:
        """The artifacts about ``graph``'s manifests: SBOMs, signature bundles, provenance."""
        if self._worker is not None:
            self._worker.wait(interruptible=True)
            if self._failure is not None:
                raise self._failure
        return self._made_for(graph)

    def _made_for(self, graph: ImageGraph) -> list[Artifact]:
        root = graph.root.digest
        with self._lock:
            if root not in self._made:
                self._made[root] = self._referrers(graph)
            return self._made[root]

    def _referrers(self, graph: ImageGraph) -> list[Artifact]:
        made: list[Artifact] = []
        manifests = list(graph.manifests())
        for desc, _ in manifests:
            if self.sbom is not None:
                made.append(self._sbom_artifact(graph, desc))
        signed = [graph.root] + [desc for desc, _ in manifests if desc.digest != graph.root.digest]
        if self.key is not None and self.bundles:
            from zeroimage.signing import image_signature_bundle

            for desc in signed:
                made.append(self._bundle(image_signature_bundle(self.key, graph.documents[desc.digest]), desc))
        if self.key is not None and self.provenance is not None:
            from zeroimage.signing import PAYLOAD_TYPE, dsse_bundle

            made.append(self._bundle(dsse_bundle(self.key, PAYLOAD_TYPE, self._statement(signed)), graph.root))
        return made

    def _bundle(self, bundle: bytes, subject: Descriptor) -> Artifact:
        from zeroimage.signing import BUNDLE_MEDIA_TYPE, bundle_annotations

        return make_artifact(
            BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE, bundle, subject, bundle_annotations(bundle, self.created)
        )

    def _sbom_artifact(self, graph: ImageGraph, desc: Descriptor) -> Artifact:
        from zeroimage import sbom

        assert self.sbom is not None
        document = self._sbom(graph, desc)
        media_type = sbom.MEDIA_TYPES[self.sbom]
        title = "sbom.spdx.json" if self.sbom == "spdx" else "sbom.cdx.json"
        return make_artifact(media_type, media_type, document, desc, created=self.created, title=title)

    def _sbom(self, graph: ImageGraph, desc: Descriptor) -> bytes:
        from zeroimage import __version__, sbom

        assert self.sbom is not None and desc.platform is not None
        facts = self.facts[str(desc.platform)]
        described = sbom.ImageDescription(
            name=self.name,
            digest=desc.digest,
            platform=facts.platform,
            created=self.created,
            tool=sbom.Tool("zeroimage", __version__),
            programs=facts.programs,
            files=facts.files,
            base=facts.base,
            repository=self.repository,
            tag=self.tag,
        )
        document = sbom.render(self.sbom, described)
        self._sboms.setdefault(graph.root.digest, []).append((facts.platform, document))
        return document

    def sboms(self, graph: ImageGraph) -> list[tuple[Platform, bytes]]:
        """Each platform's SBOM of ``graph``, for ``--sbom-file``."""
        self.referrers(graph)
        return self._sboms.get(graph.root.digest, [])

    def _statement(self, subjects: Sequence[Descriptor]) -> bytes:
        from zeroimage import __version__
        from zeroimage.signing.provenance import provenance_predicate, provenance_statement

        assert self.provenance is not None
        predicate = provenance_predicate(
            materials=self._materials(),
            parameters=self.provenance,
            builder_version=__version__,
            environment=self.environment,
        )
        return provenance_statement([(self.name, desc.digest) for desc in subjects], predicate)

    def _materials(self) -> list[Material]:
        """The programs and added files (by path in the image and sha256) and the bases (by
        reference, where they have one, and manifest digest), each once."""
        from zeroimage.signing.provenance import Material

        found: dict[tuple[str, str], Material] = {}
        for facts in self.facts.values():
            for file in [*(p.file for p in facts.programs), *facts.files]:
                digest = "sha256:" + file.checksums["sha256"]
                found.setdefault((file.path, digest), Material(file.path, digest))
            if facts.base is not None:
                base = facts.base
                uri = f"docker://{base.repository}@{base.digest}" if base.repository else ""
                found.setdefault(("base", base.digest), Material(base.name or "base", base.digest, uri=uri))
        return list(found.values())

    # -- cosign's legacy form --------------------------------------------------------------------

    def legacy(self, graph: ImageGraph, repository: str) -> list[LegacySignature]:
        """Cosign's legacy signatures of ``graph``'s root and manifests as pushed to
        ``repository`` (``registry/path``): the simple-signing payload names it."""
        if self.key is None or not self.legacy_signatures:
            return []
        from zeroimage.signing import simple_signing_payload

        digests = dict.fromkeys([graph.root.digest, *(desc.digest for desc, _ in graph.manifests())])
        out = []
        for digest in digests:
            payload = simple_signing_payload(_cosign_repository(repository), digest)
            out.append(LegacySignature(digest, payload, self.key.sign(payload)))
        return out


def _cosign_repository(repository: str) -> str:
    """The repository as cosign names it in a payload (go-containerregistry's ``Name()``):
    Docker Hub's is ``index.docker.io/…``."""
    registry, _, path = repository.partition("/")
    return f"index.docker.io/{path}" if registry == "docker.io" else repository


# -- checksums of the files the build adds ----------------------------------------------------------


@dataclass(frozen=True)
class Checksum:
    size: int
    digests: Mapping[str, str]  # algorithm → hex


def checksum_of(data: bytes, algorithms: Sequence[str]) -> Checksum:
    return Checksum(len(data), {name: hashlib.new(name, data).hexdigest() for name in algorithms})


class Checksums:
    """The checksums of files (each with the algorithms ``wanted`` says), read in a thread of
    their own from the moment the build knows the files (a program's while its layer is
    compressed), so that an SBOM costs no wait.

    Each file's identity (size, times, inode) is taken when the build begins and checked again
    when its checksum is asked for: the layer was read in between, so a file that changed in the
    meantime — whose layer and checksum could then tell of different bytes — is refused."""

    def __init__(self, wanted: Mapping[Path, Sequence[str]]) -> None:
        self._wanted = {path: tuple(algorithms) for path, algorithms in wanted.items()}
        self._paths = list(self._wanted)
        self._identity = {path: _identity(path) for path in self._paths}
        self._done: dict[Path, Checksum] = {}
        self._failure: BaseException | None = None
        self._stopped = False
        self._worker = Worker(self._run, "checksums")
        self._worker.start()

    def _run(self) -> None:
        try:
            for path in self._paths:
                if self._stopped:
                    return
                self._done[path] = _file_checksum(path, self._wanted[path])
        except BaseException as exc:  # noqa: BLE001 - raised in the build's thread by of()
            self._failure = exc

    def of(self, path: Path) -> Checksum:
        self._worker.wait(interruptible=True)
        if self._failure is not None:
            raise self._failure
        found = self._done.get(path)
        if found is None or _identity(path) != self._identity.get(path):
            raise InputError(f"{path} changed during the build; try again")
        return found

    def stop(self) -> None:
        self._stopped = True
        self._worker.wait()


def _identity(path: Path) -> tuple[int, ...]:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, path)}") from None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _file_checksum(path: Path, algorithms: Sequence[str]) -> Checksum:
    hashers = [hashlib.new(name) for name in algorithms]
    size = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                size += len(chunk)
                for hasher in hashers:
                    hasher.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {describe_os_error(exc, path)}") from None
    return Checksum(size, {name: hasher.hexdigest() for name, hasher in zip(algorithms, hashers, strict=True)})
