"""OCI image layouts: in a directory (``oci:DIR[:TAG]``) or a tar archive (``oci-archive:PATH[:TAG]``).

Reads layouts as skopeo, umoci, buildah, podman and zeroimage write them: with or without ``./``
prefixes and directory entries, ``index.json`` with or without ``mediaType``, nested indexes.
Writes ``oci-layout``, ``index.json`` (one entry per tag, annotated with
``org.opencontainers.image.ref.name``) and ``blobs/<alg>/<hex>``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from zeroimage.errors import DigestError, InputError, OutputError
from zeroimage.files import (
    CHUNK,
    RangeReader,
    Readable,
    VerifyingReader,
    atomic_write,
    copy_stream,
    describe_os_error,
)
from zeroimage.image import Attachments, Blob, DocumentBudget, ImageFormat, ImageGraph, LayerTap, Source, WriteResult
from zeroimage.oci import (
    MAX_CONFIG_SIZE,
    MAX_DOCUMENT_SIZE,
    REF_NAME,
    Descriptor,
    Index,
    Manifest,
    dumps,
    loads,
    parse_document,
    sha256_digest,
    split_digest,
    verify_bytes,
)
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import Reporter
from zeroimage.transports.storage import DirFiles, Files, TarFiles
from zeroimage.transports.tarwriter import TarWriter, add_new_layers, archive_file, blob_name
from zeroimage.untrusted import open_regular, read_regular

LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
#: The most artifacts of one image a layout is searched for (each is a document read).
MAX_LISTED_REFERRERS = 256


class LayoutSource:
    """An image in an OCI layout, chosen by tag when the layout holds several."""

    def __init__(self, files: Files, tag: str | None, description: str, budget: DocumentBudget | None = None) -> None:
        self.files = files
        self.tag = tag
        self.description = self.name = description
        self.budget = budget or DocumentBudget()
        self._synthetic: dict[str, bytes] = {}

    @classmethod
    def archive(cls, path: Path, tag: str | None, budget: DocumentBudget | None = None) -> LayoutSource:
        return cls(TarFiles(path), tag, f"oci-archive:{path}", budget)

    @classmethod
    def directory(cls, path: Path, tag: str | None, budget: DocumentBudget | None = None) -> LayoutSource:
        if not path.is_dir():
            raise InputError(f"oci:{path}: no such layout directory")
        return cls(DirFiles(path), tag, f"oci:{path}", budget)

    def index(self) -> Index:
        if self.files.size("index.json") is None:
            raise InputError(f"{self.description} is not an OCI image layout: it has no index.json")
        raw = self.files.read_small("index.json", MAX_DOCUMENT_SIZE)
        obj = loads(raw, f"{self.description} index.json")
        obj.setdefault("mediaType", mt.OCI_INDEX)
        return Index.from_dict(obj, f"{self.description} index.json")

    def root(self) -> Descriptor:
        # Artifacts listed beside the images (signatures, SBOMs: entries with an artifactType)
        # are about an image, not images themselves.
        entries = tuple(d for d in self.index().manifests if not d.artifact_type)
        if not entries:
            raise InputError(f"{self.description} holds no image (index.json is empty)")
        if self.tag is not None:
            exact = [d for d in entries if d.ref_name == self.tag]
            loose = [d for d in entries if d.ref_name.rsplit(":", 1)[-1] == self.tag]
            chosen = exact or loose
            if not chosen:
                tags = sorted({d.ref_name for d in entries if d.ref_name})
                raise InputError(
                    f"{self.description} has no image tagged {self.tag!r}; it has: {', '.join(tags) or 'no tags'}"
                )
            return chosen[0]
        if len(entries) > 1:
            tags = sorted({d.ref_name for d in entries if d.ref_name})
            if len(tags) > 1 or not tags:
                raise InputError(
                    f"{self.description} holds {len(entries)} images; name one with "
                    f"{self.description}:TAG (tags: {', '.join(tags) or 'none'})"
                )
            # one tag for several platform manifests (as some tools write): treat as an index
            return self._synthetic_index(entries)
        return entries[0]

    def _synthetic_index(self, entries: tuple[Descriptor, ...]) -> Descriptor:
        data = Index(manifests=entries).to_bytes()
        desc = Descriptor(mt.OCI_INDEX, sha256_digest(data), len(data))
        self._synthetic[desc.digest] = data
        return desc

    def _check_size(self, desc: Descriptor, limit: int | None = None) -> str:
        name = blob_name(desc.digest)
        actual = self.files.size(name)
        if actual is None:
            raise InputError(f"{self.description} is missing blob {desc.digest}")
        if actual != desc.size:
            raise DigestError(
                f"{self.description}: blob {desc.digest} has {actual} bytes, but its descriptor says {desc.size}"
            )
        if limit is not None and desc.size > limit:
            raise InputError(f"{self.description}: document {desc.digest} is larger than {limit} bytes")
        return name

    def document(self, desc: Descriptor) -> bytes:
        if desc.digest in self._synthetic:
            return self._synthetic[desc.digest]
        limit = MAX_CONFIG_SIZE if desc.media_type in mt.CONFIGS else MAX_DOCUMENT_SIZE
        name = self._check_size(desc, limit)
        self.budget.charge(desc.size, f"{self.description} document {desc.digest}")
        data = self.files.read_small(name, limit)
        return verify_bytes(data, desc.digest, f"{self.description} blob {desc.digest}")

    def blob(self, desc: Descriptor) -> Blob:
        def opener() -> Readable:
            name = self._check_size(desc)
            return VerifyingReader(self.files.open(name), desc.digest, desc.size, f"layer {desc.digest}")

        return Blob(descriptor=desc, open=opener)

    def referrers(self, digest: str) -> list[Descriptor]:
        """The layout's artifacts (entries with an artifactType) whose manifest names ``digest``
        as its subject, at most MAX_LISTED_REFERRERS of them."""
        found: list[Descriptor] = []
        for entry in self.index().manifests:
            if len(found) >= MAX_LISTED_REFERRERS:
                break
            if not entry.artifact_type or entry.media_type not in mt.MANIFESTS:
                continue
            manifest = parse_document(self.document(entry), f"{self.description} {entry.digest}", entry.media_type)
            if isinstance(manifest, Manifest) and manifest.subject is not None and manifest.subject.digest == digest:
                found.append(entry)
        return found

    def tagged(self, tag: str) -> Descriptor | None:
        return next((d for d in self.index().manifests if d.ref_name == tag), None)

    def close(self) -> None:
        pass


def _index_entry(graph: ImageGraph, tag: str) -> dict[str, object]:
    entry = graph.root.to_dict()
    annotations = dict(graph.root.annotations)
    annotations[REF_NAME] = tag
    entry["annotations"] = annotations
    return entry


def _write_graph(
    graph: ImageGraph,
    put_document: Callable[[Descriptor, bytes], None],
    put_blob: Callable[[Descriptor, Blob], None],
) -> None:
    """Every document and blob of the graph, children before what names them."""
    for desc in graph.children_first():
        if desc.digest in graph.documents:
            put_document(desc, graph.documents[desc.digest])
        else:
            put_blob(desc, graph.blobs[desc.digest])


def _archive_head(tar: TarWriter) -> None:
    tar.add_bytes("oci-layout", LAYOUT_FILE)
    tar.add_dir("blobs/")
    tar.add_dir("blobs/sha256/")


class OciArchiveSink:
    """Writes one image as an OCI archive (replacing the file atomically): the head, the new
    layers (streamed in while they are compressed), the other blobs, then ``index.json``."""

    fixed_format: ImageFormat | None = "oci"
    needs_layer_files = True
    takes_attachments = True

    def __init__(self, path: Path, tag: str, mtime: int) -> None:
        self.path = path
        self.tag = tag
        self.mtime = mtime
        self.description = f"oci-archive:{path}"
        self._staged = archive_file(path, mtime, _archive_head)

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        return self._staged.layer_tap()

    def layer_sources(self) -> list[Source]:
        return []

    def discard(self) -> None:
        self._staged.discard()  # nothing, once written

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        with self._staged.output(graph) as (tar, written):
            add_new_layers(tar, graph, written, reporter)
            algorithms = {split_digest(d.digest)[0] for d in graph.children_first()} - {"sha256"}
            for algorithm in sorted(algorithms):
                tar.add_dir(f"blobs/{algorithm}/")

            def put_document(desc: Descriptor, data: bytes) -> None:
                if desc.digest not in written:
                    written.add(desc.digest)
                    tar.add_bytes(blob_name(desc.digest), data)

            def put_blob(desc: Descriptor, blob: Blob) -> None:
                if desc.digest not in written:
                    written.add(desc.digest)
                    tar.add_blob(blob_name(desc.digest), blob, reporter, f"writing {desc.digest[7:19]}")

            _write_graph(graph, put_document, put_blob)
            # The attachments, made meanwhile: asked for once the image's own blobs are in.
            artifacts = attachments.referrers(graph) if attachments is not None else []
            for artifact in artifacts:
                for desc, data in artifact.parts():
                    put_document(desc, data)
            entries = [_index_entry(graph, self.tag), *(a.descriptor.to_dict() for a in artifacts)]
            tar.add_bytes("index.json", dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}))
            tar.close()
        return [WriteResult(f"{self.description}:{self.tag}", graph.root.digest)]


class OciDirSink:
    """Adds one image to an OCI layout directory, keeping the images already there.

    Blobs are written first (each atomically; one already there is kept only if its bytes
    match its name), then ``index.json`` is replaced atomically: an interrupted write leaves
    the old layout valid, and removes a layout it began (which would otherwise, lacking
    index.json, block the next write). An existing entry with the same tag is replaced.

    The directory may hold what someone else put there, so nothing in it is followed or
    trusted: ``index.json`` is read only as a regular file (no symlink, no FIFO) of at most
    MAX_DOCUMENT_SIZE bytes and must be a valid index; ``blobs/`` and ``blobs/ALG/`` that are
    symlinks are refused rather than written through."""

    fixed_format: ImageFormat | None = "oci"
    needs_layer_files = True
    takes_attachments = True

    def __init__(self, path: Path, tag: str) -> None:
        self.path = path
        self.tag = tag
        self.description = f"oci:{path}"

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        return None

    def layer_sources(self) -> list[Source]:
        return []

    def discard(self) -> None:
        pass  # a failed write removes what it began itself

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        created = not self.path.exists()
        began = created or _is_empty_dir(self.path)  # never clean up a directory that held anything
        try:
            return [self._write(graph, reporter, attachments)]
        except BaseException:
            if began:
                _remove_layout(self.path, created)
            raise

    def _write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None) -> WriteResult:
        root = self.path
        try:
            root.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create layout {describe_os_error(exc, root)}") from None
        index_path = root / "index.json"
        existing: list[dict[str, object]] = []
        if os.path.lexists(index_path):
            entries = _index_entries(index_path)
            existing = [m for m in entries if _ref_name(m) != self.tag]
            gone = {str(m.get("digest")) for m in entries if _ref_name(m) == self.tag} - {graph.root.digest}
            existing = _without_referrers_of(root, existing, gone - {str(m.get("digest")) for m in existing})
        elif any(root.iterdir()):
            raise OutputError(f"{root} is not empty and is not an OCI layout (no index.json)")
        _layout_dir(root / "blobs")
        checked: set[Path] = set()

        def put(desc: Descriptor, source: bytes | Blob) -> None:
            target = root / blob_name(desc.digest)
            if target.parent not in checked:
                _layout_dir(target.parent)
                checked.add(target.parent)
            if _holds(target, desc):
                return
            with atomic_write(target) as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    stream = source.open()
                    try:
                        with reporter.task(f"writing {desc.digest[7:19]}", desc.size) as task:
                            copy_stream(stream, out, task.advance)
                    finally:
                        stream.close()

        _write_graph(graph, put, put)
        # The attachments, made meanwhile: asked for once the image's own blobs are in.
        artifacts = attachments.referrers(graph) if attachments is not None else []
        for artifact in artifacts:
            for desc, data in artifact.parts():
                put(desc, data)
        if not os.path.isfile(root / "oci-layout") or os.path.islink(root / "oci-layout"):
            with atomic_write(root / "oci-layout") as out:
                out.write(LAYOUT_FILE)
        index = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": _merged(
                existing, [_index_entry(graph, self.tag), *(a.descriptor.to_dict() for a in artifacts)]
            ),
        }
        with atomic_write(index_path) as out:
            out.write(dumps(index))
        return WriteResult(f"{self.description}:{self.tag}", graph.root.digest)


def _merged(existing: list[dict[str, object]], added: list[dict[str, object]]) -> list[dict[str, object]]:
    """The layout's entries, then ours; an attachment already listed (the same digest, untagged)
    is listed once."""
    ours = {str(entry["digest"]) for entry in added if not _ref_name(entry)}
    return [e for e in existing if _ref_name(e) or str(e.get("digest")) not in ours] + added


def _without_referrers_of(root: Path, entries: list[dict[str, object]], gone: set[str]) -> list[dict[str, object]]:
    """``entries`` without the attachments (untagged artifacts) whose subject is an image in
    ``gone``: one the layout no longer lists, its tag now naming another. An entry whose
    manifest cannot be read is kept."""
    if not gone:
        return entries
    kept = []
    for entry in entries:
        if entry.get("artifactType") and not _ref_name(entry) and _subject_of(root, entry) in gone:
            continue
        kept.append(entry)
    return kept


def _subject_of(root: Path, entry: dict[str, object]) -> str | None:
    """The digest an artifact entry's manifest names as its subject, if it can be read."""
    try:
        name = blob_name(str(entry.get("digest")))
        data = read_regular(root / name, MAX_DOCUMENT_SIZE, str(root / name))
        subject = loads(data, name).get("subject")
    except (OSError, InputError):
        return None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def _index_entries(path: Path) -> list[dict[str, object]]:
    """The entries of an existing layout's ``index.json``, each a valid descriptor."""
    try:
        data = read_regular(path, MAX_DOCUMENT_SIZE, str(path))
    except FileNotFoundError:  # gone since it was seen
        raise OutputError(f"{path} was removed while zeroimage was reading it; try again") from None
    obj = loads(data, str(path))
    manifests = obj.get("manifests", [])
    if not isinstance(manifests, list):
        raise InputError(f"{path} is not a valid OCI index: its manifests are not a list")
    for number, entry in enumerate(manifests):
        Descriptor.from_dict(entry, f"{path} entry {number}")  # InputError if it is not one
    return manifests


def _layout_dir(path: Path) -> None:
    """Make sure ``path`` is a directory of the layout itself, creating it if missing; one that
    is a symlink would put blobs wherever it points, and is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            path.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot create {describe_os_error(exc, path)}") from None
        return
    except OSError as exc:
        raise OutputError(f"cannot write {describe_os_error(exc, path)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{path} is a symlink: zeroimage does not write a layout through one")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path} is not a directory")


def _holds(path: Path, desc: Descriptor) -> bool:
    """Whether ``path`` is a regular file itself (not a link) with exactly the bytes ``desc``
    names; only such an existing blob is kept. Hashing it costs a read, never trust."""
    try:
        fd = open_regular(path, str(path))
    except (OSError, InputError):
        return False
    reader = VerifyingReader(RangeReader(fd, 0, desc.size), desc.digest, desc.size, str(path))
    try:
        if os.fstat(fd).st_size != desc.size:
            return False
        while reader.read(CHUNK):
            pass
        return True
    except (OSError, DigestError):
        return False
    finally:
        reader.close()


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _remove_layout(root: Path, created: bool) -> None:
    """Remove what a failed write put in a layout it began (and the directory, if it made it)."""
    if not root.is_dir() or (root / "index.json").exists():
        return  # not ours, or another writer finished it meanwhile
    for child in [root] if created else list(root.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def _ref_name(entry: dict[str, object]) -> str:
    annotations = entry.get("annotations")
    return str(annotations.get(REF_NAME, "")) if isinstance(annotations, dict) else ""
