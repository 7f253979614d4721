"""Whatever bytes an archive holds, reading it as an image raises ZeroimageError or nothing.

Arbitrary bytes, and the bundled valid image with bytes flipped (in data and in headers, with
the header checksums made right again so that tarfile believes them) and cut short, go through
TarFiles and LayoutSource as a build and inspect would: index, root, every candidate, the base
for linux/amd64 and every byte of its layers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import MULTIARCH
from tests.support.hostile_layers import pax_header
from zeroimage.errors import InputError, ZeroimageError
from zeroimage.image import candidates, load_base
from zeroimage.oci import Descriptor, Index, Manifest, Platform, parse_document, sha256_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.transports.oci_layout import LayoutSource
from zeroimage.transports.storage import TarFiles

VALID = MULTIARCH.read_bytes()
with tarfile.open(MULTIARCH) as _tar:
    HEADERS = sorted({m.offset for m in _tar.getmembers()} | {m.offset_data - 512 for m in _tar.getmembers()})
AMD64 = Platform("linux", "amd64")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "image.tar"


@dataclass(frozen=True)
class Read:
    """What :func:`read_everything` found: how many manifests, the platform of the base chosen
    for linux/amd64, and (descriptor digest, digest of the bytes read) of each of its layers."""

    manifests: int
    platform: Platform
    layers: list[tuple[str, str]]


def read_everything(path: Path) -> Read:
    """What a build and an inspect read of an oci-archive."""
    TarFiles(path).names()
    source = LayoutSource.archive(path, None)
    source.index()
    found = candidates(source)
    for candidate in found:
        source.document(candidate.descriptor)
    base = load_base(source, AMD64)
    layers = []
    for layer in base.layers:
        digest = hashlib.sha256()
        stream = layer.open()
        try:
            while chunk := stream.read(1 << 16):
                digest.update(chunk)
        finally:
            stream.close()
        layers.append((layer.descriptor.digest, "sha256:" + digest.hexdigest()))
    return Read(len(found), base.platform, layers)


def only_zeroimage_errors(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    with contextlib.suppress(ZeroimageError):
        read_everything(path)


def fix_checksums(data: bytearray, touched: Iterator[int]) -> None:
    """Make the checksum of every header block that was touched right again."""
    for block in {p - p % 512 for p in touched}:
        if block in HEADERS and block + 512 <= len(data):
            data[block + 148 : block + 156] = b" " * 8
            data[block + 148 : block + 156] = b"%06o\0 " % sum(data[block : block + 512])


HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HOSTILE
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(scratch: Path, data: bytes) -> None:
    only_zeroimage_errors(scratch, data)


@HOSTILE
@given(st.binary(min_size=1, max_size=1024), st.sampled_from(HEADERS))
def test_arbitrary_bytes_in_place_of_a_header_and_after(scratch: Path, junk: bytes, at: int) -> None:
    data = bytearray(VALID[:at] + junk + VALID[at + len(junk) :])
    fix_checksums(data, iter(range(at, at + len(junk), 512)))
    only_zeroimage_errors(scratch, bytes(data))


@HOSTILE
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=16),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, len(VALID))),
)
def test_mutated_valid_archive(scratch: Path, flips: list[tuple[int, int]], fix: bool, cut: int | None) -> None:
    data = bytearray(VALID)
    for position, value in flips:
        data[position] = value
    if fix:
        fix_checksums(data, (p for p, _ in flips))
    only_zeroimage_errors(scratch, bytes(data[:cut]))


_FIELDS = {
    "name": (0, 100),
    "mode": (100, 8),
    "size": (124, 12),
    "type": (156, 1),
    "link": (157, 100),
    "prefix": (345, 155),
    "gnu-sparse-extended": (482, 1),
}
_VALUES = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"../x", b"/etc/passwd", b"index.json", b"./index.json", b"\x01", b"L", b"K", b"S", b"g", b"x"]),
    st.integers(-(2**80), 2**80).map(lambda n: (b"\x80" if n >= 0 else b"\xff") + (n % 256**11).to_bytes(11, "big")),
)


@HOSTILE
@given(
    st.sampled_from(HEADERS),
    st.lists(st.tuples(st.sampled_from(sorted(_FIELDS)), _VALUES), min_size=1, max_size=3),
    st.booleans(),
)
@example(at=HEADERS[3], edits=[("type", b"S"), ("gnu-sparse-extended", b"\x01")], cut_after=True)
def test_header_fields_that_lie(scratch: Path, at: int, edits: list[tuple[str, bytes]], cut_after: bool) -> None:
    """Sizes (octal, base-256, negative, huge), types and names a tar header can claim, the
    archive going on as before or ending right after the header."""
    data = bytearray(VALID)
    for field, value in edits:
        offset, length = _FIELDS[field]
        data[at + offset : at + offset + length] = value[:length].ljust(length, b"\0")
    fix_checksums(data, iter([at]))
    only_zeroimage_errors(scratch, bytes(data[: at + 512] if cut_after else data))


def test_a_cut_archive_is_refused_wherever_it_is_cut(scratch: Path) -> None:
    """At every block boundary and in between: what tarfile would take for a clean end is not one."""
    end = max(HEADERS) + 1024  # where the end-of-archive blocks begin
    for cut in [*range(0, end + 1, 512), *range(100, end, 512)]:
        scratch.write_bytes(VALID[:cut])
        with pytest.raises(InputError):
            TarFiles(scratch)


def test_a_valid_archive_is_read() -> None:
    """The control for the cases above: the unaltered archive gives all its manifests, and the
    linux/amd64 base's layers byte for byte, as the archive's own documents name them."""
    with tarfile.open(MULTIARCH) as tar:

        def document(name: str) -> Any:
            member = tar.extractfile(name)
            assert member is not None
            return json.load(member)

        (top,) = document("index.json")["manifests"]
        nested = document("blobs/sha256/" + top["digest"].split(":")[1])["manifests"]
        (amd64,) = [m for m in nested if m["platform"] == {"architecture": "amd64", "os": "linux"}]
        layers = document("blobs/sha256/" + amd64["digest"].split(":")[1])["layers"]
    read = read_everything(MULTIARCH)
    assert read.manifests == len(nested) == 11
    assert read.platform == AMD64
    assert read.layers == [(layer["digest"], layer["digest"]) for layer in layers]


# -- documents that name each other --------------------------------------------------------------


class FakeSource:
    """Documents by digest, taken at their word (no verification): what a lying source could do."""

    description = "fake"

    def __init__(self, root: Descriptor, documents: dict[str, bytes]) -> None:
        self._root = root
        self.documents = documents
        self.reads = 0

    def root(self) -> Descriptor:
        return self._root

    def document(self, desc: Descriptor) -> bytes:
        self.reads += 1
        return self.documents[desc.digest]

    def blob(self, desc: Descriptor) -> object:
        raise AssertionError("not reached")

    def close(self) -> None:
        pass


def index_of(*children: Descriptor) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [c.to_dict() for c in children]}
    ).encode()


def named(digest_of: str) -> Descriptor:
    return Descriptor(mt.OCI_INDEX, sha256_digest(digest_of.encode()), 1)


def test_an_index_naming_itself_is_a_cycle() -> None:
    a = named("a")
    source = FakeSource(a, {a.digest: index_of(a)})
    with pytest.raises(InputError, match="refers to itself"):
        candidates(source)  # type: ignore[arg-type]


def test_indexes_naming_each_other_are_a_cycle() -> None:
    a, b = named("a"), named("b")
    source = FakeSource(a, {a.digest: index_of(b), b.digest: index_of(a)})
    with pytest.raises(InputError, match="refers to itself"):
        candidates(source)  # type: ignore[arg-type]


def test_an_index_named_many_times_over_is_read_once() -> None:
    manifest = Descriptor(mt.OCI_MANIFEST, sha256_digest(b"m"), 1, platform=AMD64)
    levels = [named(f"level{i}") for i in range(6)]
    documents = {levels[-1].digest: index_of(manifest)}
    for parent, child in zip(levels, levels[1:], strict=False):
        documents[parent.digest] = index_of(*[child] * 1000)  # 1000**5 paths to the manifest
    source = FakeSource(levels[0], documents)
    assert [c.descriptor for c in candidates(source)] == [manifest]  # type: ignore[arg-type]
    assert source.reads == len(levels)


@pytest.mark.parametrize(
    ("named_as", "own"),
    [(mt.OCI_MANIFEST, mt.OCI_INDEX), (mt.OCI_INDEX, mt.OCI_MANIFEST), (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST)],
)
def test_a_document_of_the_other_kind_than_its_descriptor_says_is_refused(named_as: str, own: str) -> None:
    digest = sha256_digest(b"x")
    doc = {"schemaVersion": 2, "mediaType": own, "manifests": [], "config": {"digest": digest, "size": 1}, "layers": []}
    with pytest.raises(InputError, match="the descriptor naming it says"):
        parse_document(json.dumps(doc).encode(), "doc", named_as)


def test_a_document_without_a_media_type_or_of_the_other_format_is_taken() -> None:
    digest = sha256_digest(b"x")
    manifest = {"schemaVersion": 2, "config": {"digest": digest, "size": 1}, "layers": []}
    assert isinstance(parse_document(json.dumps(manifest).encode(), "doc", mt.OCI_MANIFEST), Manifest)
    docker = json.dumps({**manifest, "mediaType": mt.DOCKER_MANIFEST}).encode()
    assert isinstance(parse_document(docker, "doc", mt.OCI_MANIFEST), Manifest)
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(parse_document(index, "doc", mt.DOCKER_MANIFEST_LIST), Index)


def test_huge_tar_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A PAX header claiming 16 GiB, in a sparse file that really is that long."""
    header = tarfile.TarInfo("pax")
    header.type = tarfile.XHDTYPE
    header.size = 1 << 34
    path = tmp_path / "huge.tar"
    with open(path, "wb") as out:
        out.write(header.tobuf(tarfile.GNU_FORMAT))  # a base-256 size
        out.truncate(512 + (1 << 34) + 1024)
    with pytest.raises(InputError, match="claims more than"):
        TarFiles(path)


@pytest.mark.parametrize(
    ("records", "kind", "count", "expect"),
    [
        ({"comment": "x"}, tarfile.XHDTYPE, 2000, "more than 8 extended tar headers in a row"),
        ({f"k{n}": "v" for n in range(100)}, tarfile.XGLTYPE, 1, "global PAX headers hold more than 64 records"),
    ],
    ids=["2000-pax-headers-in-a-row", "global-pax-header-of-100-records"],
)
def test_tar_headers_read_recursively_or_copied_into_every_member_are_bounded(
    records: dict[str, str], kind: bytes, count: int, expect: str, tmp_path: Path
) -> None:
    """The archive reader shares the layer lister's header bounds. Before: 2000 PAX headers in
    a row made tarfile recurse into RecursionError (an internal error, not ours)."""
    path = tmp_path / "headers.tar"
    path.write_bytes(pax_header(records, kind) * count + tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) + bytes(1024))
    with pytest.raises(InputError, match=expect):
        TarFiles(path)
