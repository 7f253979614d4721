"""Hostile image inputs, each a valid image with exactly one detail altered, are refused cleanly.

Every case is given to ``zeroimage build --from`` and, where the fault lies in something inspect
reads, to ``zeroimage inspect``. Each run must: exit non-zero; print exactly one stderr line
holding "error", and that line starting ``zeroimage: error:``; print no traceback; stay within
MAX_RSS_KB of memory; and write nothing: no output, no temporary file beside it, nothing in a
private TMPDIR, nothing anywhere under the test's directory except complete blobs in the layer
cache (which the build fills before it reads the base's layers).

The valid images are the bundled hello-world layout (as ``oci-archive:`` and ``oci:``) and a
``docker-archive:`` that zeroimage writes; the positive controls at the end show each is accepted
as it is, so that a refusal is the altered detail's doing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MULTIARCH
from tests.support import peers
from tests.support.cli import Home, Result

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TRAVERSAL = "sha256:../../etc/passwd"
GB = 1_000_000_000
#: Peak RSS a refusal may take, in kB (a build takes about 40 MB; a 2 GB header read, 2 GB).
MAX_RSS_KB = 150_000


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


# -- images in memory --------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One tar entry: a regular file unless ``kind`` says otherwise."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


def read_tar(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        files = {}
        for info in tar.getmembers():
            handle = tar.extractfile(info) if info.isreg() else None
            if handle is not None:
                files[info.name.removeprefix("./")] = handle.read()
    return files


def tar_bytes(members: list[Member]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.kind
            info.linkname = m.linkname
            info.mode = 0o755 if m.kind == tarfile.DIRTYPE else 0o644
            info.size = len(m.data) if m.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(m.data) if m.kind == tarfile.REGTYPE else None)
    return out.getvalue()


def without_end(archive: bytes) -> bytes:
    """The archive cut right after its last member: no end-of-archive blocks."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        last = tar.getmembers()[-1]
    return archive[: last.offset_data + -(-last.size // 512) * 512]


def header_offsets(archive: bytes) -> dict[str, tuple[int, int]]:
    """member name → (offset of its header, offset of its data)."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: (m.offset, m.offset_data) for m in tar.getmembers()}


def raw_header(name: bytes, size: int = 0, kind: bytes = b"0", size_field: bytes = b"", at482: bytes = b"") -> bytes:
    """A ustar header written by hand, for what tarfile will not write (sizes that lie...)."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = size_field or b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[482 : 482 + len(at482)] = at482
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


class Layout:
    """An OCI image layout in memory (file name → bytes) to alter and write out again.

    ``replace`` and ``edit_refs`` re-hash every document above what they change, so that one
    altered detail deep down leaves the rest of the image valid."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    def doc(self, digest: str) -> Any:
        return self.json(blob_name(digest))

    @property
    def nested(self) -> str:
        """The index that index.json names (hello-world's: one entry per platform)."""
        return str(self.json("index.json")["manifests"][0]["digest"])

    def manifest_for(self, architecture: str) -> str:
        (digest,) = [
            e["digest"]
            for e in self.doc(self.nested)["manifests"]
            if e["platform"] == {"architecture": architecture, "os": "linux"}
        ]
        return str(digest)

    @property
    def amd64(self) -> str:
        return self.manifest_for("amd64")

    @property
    def config(self) -> str:
        return str(self.doc(self.amd64)["config"]["digest"])

    @property
    def layer(self) -> str:
        return str(self.doc(self.amd64)["layers"][0]["digest"])

    def add(self, data: bytes) -> str:
        digest = peers.digest_of(data)
        self.files[blob_name(digest)] = data
        return digest

    def replace(self, old: str, data: bytes) -> str:
        """Put ``data`` in place of the blob ``old``, updating every descriptor that named it."""
        new = self.add(data)
        if new != old:
            self.files.pop(blob_name(old))
            self.edit_refs(old, lambda d: d.update(digest=new, size=len(data)))
        return new

    def edit(self, digest: str, change: Callable[[Any], object]) -> str:
        obj = self.doc(digest)
        change(obj)
        return self.replace(digest, dumps(obj))

    def edit_refs(self, digest: str, change: Callable[[dict[str, Any]], object]) -> None:
        """Apply ``change`` to every descriptor naming ``digest``, re-hashing the documents above."""
        changed = {}
        for name, data in self.files.items():
            try:
                obj = json.loads(data)
            except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON, or a nesting bomb
                continue
            hits = [d for d in _descriptors(obj) if d.get("digest") == digest]
            for descriptor in hits:
                change(descriptor)
            if hits:
                changed[name] = dumps(obj)
        for name, data in changed.items():  # several manifests may share a config: one by one
            if name == "index.json":
                self.files[name] = data
            elif name in self.files:
                self.replace("sha256:" + name.rsplit("/", 1)[1], data)

    def entry(self, change: Callable[[dict[str, Any]], object]) -> None:
        """Change the one descriptor of index.json."""
        index = self.json("index.json")
        change(index["manifests"][0])
        self.files["index.json"] = dumps(index)

    def members(self, first: tuple[str, ...] = ()) -> list[Member]:
        """Directory entries, then ``first``, then the other files in their order."""
        names = [*first, *(n for n in self.files if n not in first)]
        dirs = [Member("blobs/", kind=tarfile.DIRTYPE), Member("blobs/sha256/", kind=tarfile.DIRTYPE)]
        return dirs + [Member(n, self.files[n]) for n in names]

    def write_dir(self, root: Path) -> Path:
        for name, data in self.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root


def _descriptors(obj: object) -> Iterator[dict[str, Any]]:
    if not isinstance(obj, dict):
        return
    for key in ("manifests", "layers"):
        if isinstance(obj.get(key), list):
            yield from (d for d in obj[key] if isinstance(d, dict))
    if isinstance(obj.get("config"), dict):
        yield obj["config"]


BASE = Layout(read_tar(MULTIARCH))


def altered(change: Callable[[Layout], object]) -> Layout:
    layout = Layout(BASE.files)
    change(layout)
    return layout


def nested(levels: int) -> Layout:
    """hello-world below ``levels`` more indexes, each naming the next."""
    layout = Layout(BASE.files)
    child = layout.json("index.json")["manifests"][0]
    for _ in range(levels):
        data = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]})
        child = {"mediaType": OCI_INDEX, "digest": layout.add(data), "size": len(data)}
    layout.files["index.json"] = dumps({"schemaVersion": 2, "manifests": [child]})
    return layout


# -- the cases ---------------------------------------------------------------------------------

Make = Callable[[Path], str]  # writes the input under a directory; returns the source to read it as


@dataclass(frozen=True)
class Case:
    id: str
    make: Make
    #: what the error line must say ("" when several wordings are right)
    expect: str
    #: False when the fault lies in a layer's bytes, which inspect never reads (skopeo's neither)
    inspect: bool = True
    build_args: tuple[str, ...] = ()


CASES: list[Any] = []  # pytest.param(Case)


def case(
    id: str, expect: str, make: Make, inspect: bool = True, build_args: tuple[str, ...] = (), marks: Any = ()
) -> None:
    CASES.append(pytest.param(Case(id, make, expect, inspect, build_args), id=id, marks=marks))


def archive_of(layout: Layout | None = None, members: list[Member] | None = None) -> Make:
    def make(where: Path) -> str:
        return archive_bytes(tar_bytes(members if members is not None else (layout or BASE).members()))(where)

    return make


def archive_bytes(data: bytes) -> Make:
    def make(where: Path) -> str:
        (where / "base.tar").write_bytes(data)
        return f"oci-archive:{where / 'base.tar'}"

    return make


def swapped(name: str, member: Member) -> list[Member]:
    return [member if m.name == name else m for m in BASE.members()]


# Digests that are not algorithm:hex of the right length: in index.json, manifests and indexes.
_HEX = BASE.nested.split(":")[1]
for _id, _bad in [
    ("traversal", TRAVERSAL),
    ("short", "sha256:" + _HEX[:63]),
    ("long", "sha256:" + _HEX + "0"),
    ("uppercase", "sha256:" + _HEX.upper()),
    ("unknown-algorithm", "md5:" + _HEX[:32]),
    ("no-algorithm", _HEX),
    ("traversal-after-hex", "sha256:" + _HEX + "/../../x"),
    ("not-a-string", 5),
]:
    case(
        f"index.json-digest-{_id}",
        "invalid digest",
        archive_of(altered(lambda x, b=_bad: x.entry(lambda d: d.update(digest=b)))),
    )
case(
    "manifest-layer-digest-traversal",
    "invalid digest",
    archive_of(altered(lambda x: x.edit(x.amd64, lambda m: m["layers"][0].update(digest=TRAVERSAL)))),
)
case(
    "manifest-config-digest-traversal",
    "invalid digest",
    archive_of(altered(lambda x: x.edit(x.amd64, lambda m: m["config"].update(digest=TRAVERSAL)))),
)
case(
    "index-entry-digest-traversal",
    "invalid digest",
    archive_of(altered(lambda x: x.edit_refs(x.amd64, lambda d: d.update(digest=TRAVERSAL)))),
)
case(
    "config-diff-id-traversal",
    "invalid diff_id",
    archive_of(altered(lambda x: x.edit(x.config, lambda c: c["rootfs"]["diff_ids"].__setitem__(0, TRAVERSAL)))),
    inspect=False,  # inspect shows a config as it is; a build relies on its diff_ids
)

# Member names that are absolute or climb out.
for _id, _name in [
    ("dotdot", "../evil"),
    ("dotdot-inside", "blobs/../../evil"),
    ("absolute", "/etc/passwd"),
    ("backslash", "blobs\\..\\..\\evil"),
]:
    case(f"member-name-{_id}", "unsafe entry name", archive_of(members=[*BASE.members(), Member(_name, b"x")]))
case(
    "manifest-under-absolute-name",
    "unsafe entry name",
    archive_of(
        members=swapped(blob_name(BASE.amd64), Member("/" + blob_name(BASE.amd64), BASE.files[blob_name(BASE.amd64)]))
    ),
)


# Links and devices where a blob should be.
def symlinked(name: str, target: str) -> Make:
    """The base archive with ``name`` a symlink to ``target``."""
    return archive_of(members=swapped(name, Member(name, kind=tarfile.SYMTYPE, linkname=target)))


case("symlink-for-manifest", "is a symlink, not a regular file", symlinked(blob_name(BASE.amd64), "/etc/passwd"))
case(
    "symlink-for-layer",
    "is a symlink, not a regular file",
    symlinked(blob_name(BASE.layer), "../../../etc/passwd"),
    inspect=False,
)
case(
    "symlink-for-index.json",
    "is a symlink, not a regular file",
    symlinked("index.json", "/etc/passwd"),
)
case(
    "hardlink-for-manifest",
    "is a hard link, not a regular file",
    archive_of(
        members=[
            Member("blobs/sha256/copy", BASE.files[blob_name(BASE.amd64)]),
            *swapped(
                blob_name(BASE.amd64), Member(blob_name(BASE.amd64), kind=tarfile.LNKTYPE, linkname="blobs/sha256/copy")
            ),
        ]
    ),
)
case(
    "device-for-config",
    "is a special file, not a regular file",
    archive_of(members=swapped(blob_name(BASE.config), Member(blob_name(BASE.config), kind=tarfile.CHRTYPE))),
)


# Sizes in descriptors that lie: bigger, smaller, absurd.
def size_lie(which: Callable[[Layout], str], change: Callable[[int], int]) -> Layout:
    layout = Layout(BASE.files)
    digest = which(layout)
    actual = len(layout.files[blob_name(digest)])
    layout.edit_refs(digest, lambda d: d.update(size=change(actual)))
    return layout


for _what, _which in [
    ("manifest", lambda x: x.amd64),
    ("config", lambda x: x.config),
    ("index", lambda x: x.nested),
    ("layer", lambda x: x.layer),
]:
    for _how, _change in [("bigger", lambda n: n + 1), ("smaller", lambda n: n - 1), ("10GB", lambda n: 10 * GB)]:
        case(
            f"{_what}-size-{_how}",
            "but its descriptor says",
            archive_of(size_lie(_which, _change)),
            inspect=_what != "layer",
        )
case(
    "layer-bytes-altered",
    "digest mismatch",
    archive_of(altered(lambda x: x.files.update({blob_name(x.layer): bytes(len(x.files[blob_name(x.layer)]))}))),
    inspect=False,
)
case(
    "manifest-bytes-altered",
    "digest mismatch",
    archive_of(
        altered(lambda x: x.files.update({blob_name(x.amd64): x.files[blob_name(x.amd64)].replace(b"2", b"3")}))
    ),
)

# Duplicate entries.
case(
    "duplicate-index.json-other", "duplicate entry", archive_of(members=[*BASE.members(), Member("index.json", b"{}")])
)
case(
    "duplicate-index.json-same",
    "duplicate entry",
    archive_of(members=[*BASE.members(), Member("index.json", BASE.files["index.json"])]),
)
case(
    "duplicate-index.json-as-./index.json",
    "duplicate entry",
    archive_of(members=[*BASE.members(), Member("./index.json", BASE.files["index.json"])]),
)
case(
    "duplicate-manifest-same-bytes",
    "duplicate entry",
    archive_of(members=[*BASE.members(), Member(blob_name(BASE.amd64), BASE.files[blob_name(BASE.amd64)])]),
)
case(
    "duplicate-file-over-directory",
    "duplicate entry",
    archive_of(members=[*BASE.members(), Member("blobs/sha256", b"x")]),
)
case(
    "duplicate-directory-over-file",
    "duplicate entry",
    archive_of(members=[*BASE.members(), Member("index.json/", kind=tarfile.DIRTYPE)]),
)

# Truncated archives. index.json and the amd64 image come first here, so that what is left
# before many of the cuts would make a usable image: only the archive's own structure tells.
FIRST = ("index.json", "oci-layout", *(blob_name(d) for d in (BASE.nested, BASE.amd64, BASE.config, BASE.layer)))
ORDERED = tar_bytes(BASE.members(first=FIRST))
_AT = header_offsets(ORDERED)
_AFTER_AMD64 = min(h for h, _ in _AT.values() if h > _AT[blob_name(BASE.layer)][0])
for _id, _cut in {
    "empty": 0,
    "1-byte": 1,
    "511-bytes": 511,
    "header-without-data": _AT["index.json"][1],
    "mid-index.json": _AT["index.json"][1] + 20,
    "mid-layer": _AT[blob_name(BASE.layer)][1] + 100,
    "mid-header-after-amd64": _AFTER_AMD64 + 100,
    "at-member-boundary-after-amd64": _AFTER_AMD64,
    "mid-last-member": len(without_end(ORDERED)) - 300,
    "end-blocks-missing": len(without_end(ORDERED)),
    "half": len(ORDERED) // 2,
}.items():
    case(f"truncated-{_id}", "", archive_bytes(ORDERED[:_cut]))
case("truncated-original-half", "", archive_bytes(MULTIARCH.read_bytes()[: MULTIARCH.stat().st_size // 2]))
case(
    "garbage-header-after-amd64",
    "truncated or corrupt",
    archive_bytes(ORDERED[:_AFTER_AMD64] + b"\x07" * 512 + ORDERED[_AFTER_AMD64 + 512 :]),
)


# Tar headers that lie, written by hand after the valid archive's members.
def appended(header: bytes, sparse_tail: int = 0, end: bytes = bytes(1024)) -> Make:
    def make(where: Path) -> str:
        path = where / "base.tar"
        with open(path, "wb") as out:
            out.write(without_end(tar_bytes(BASE.members())))
            out.write(header)
            out.seek(sparse_tail, os.SEEK_CUR)  # a hole: gigabytes on paper, nothing on disk
            out.write(end)
        return f"oci-archive:{path}"

    return make


case("member-size-past-end-of-file", "runs past the end", appended(raw_header(b"big", 10 * GB)))
case(
    "member-negative-size",
    "negative size",
    appended(raw_header(b"neg", size_field=b"\xff" + (256**11 - 4096).to_bytes(11, "big"))),
)
case("pax-header-2GB", "tar header claims more than", appended(raw_header(b"pax", 2 * GB, b"x"), 2 * GB))
case("gnu-long-name-2GB", "tar header claims more than", appended(raw_header(b"long", 2 * GB, b"L"), 2 * GB))
case(
    "gnu-sparse-member-at-eof", "sparse tar members", appended(raw_header(b"sparse", 10, b"S", at482=b"\x01"), end=b"")
)

# Absurdly deep nesting, and cycles (which need a digest that lies).
case("nested-9-deep", "nested more than 8 deep", archive_of(nested(8)))
case("nested-50-deep", "nested more than 8 deep", archive_of(nested(49)))


def index_naming(child: str, size: int) -> bytes:
    doc = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_INDEX, "digest": child, "size": size}],
        }
    )
    return doc.ljust(size)  # JSON may end in spaces: the size can be the document's own


def self_naming(layout: Layout) -> None:
    fake = peers.digest_of(b"anything else")
    layout.files[blob_name(fake)] = index_naming(fake, 300)  # names itself, stored under a digest that lies
    layout.entry(lambda d: d.update(digest=fake, size=300))


def mutually_naming(layout: Layout) -> None:
    a, b = peers.digest_of(b"a"), peers.digest_of(b"b")
    layout.files[blob_name(a)] = index_naming(b, 300)
    layout.files[blob_name(b)] = index_naming(a, 300)
    layout.entry(lambda d: d.update(digest=a, size=300))


case("index-naming-itself", "digest mismatch", archive_of(altered(self_naming)))
case("two-indexes-naming-each-other", "digest mismatch", archive_of(altered(mutually_naming)))

# Documents too big to be real (digests and sizes right).
_BIG = "x" * (5 << 20)
case(
    "manifest-5MB",
    "larger than",
    archive_of(altered(lambda x: x.edit(x.amd64, lambda m: m.update(annotations={"x": _BIG})))),
)
case(
    "index-5MB",
    "larger than",
    archive_of(altered(lambda x: x.edit(x.nested, lambda i: i.update(annotations={"x": _BIG})))),
)
case(
    "index.json-5MB",
    "larger than",
    archive_of(altered(lambda x: x.files.update({"index.json": dumps({**x.json("index.json"), "x": _BIG})}))),
)
case(
    "config-17MB",
    "larger than",
    archive_of(altered(lambda x: x.edit(x.config, lambda c: c.update(x="x" * (17 << 20))))),
)

# Not JSON, or not the JSON of an index or manifest.
for _id, _data in [
    ("garbage", b"\x00\x01garbage{"),
    ("invalid-utf8", b'{"schemaVersion":2,"manifests":[],"x":"\xff\xfe"}'),
    ("empty", b""),
    ("array", b"[]"),
    ("nested-100000-deep", b"[" * 100_000 + b"]" * 100_000),
    ("5000-digit-number", b'{"schemaVersion":2,"manifests":[{"size":' + b"9" * 5000 + b"}]}"),
    ("manifests-not-a-list", b'{"schemaVersion":2,"manifests":{}}'),
    ("schema-version-1", b'{"schemaVersion":1,"manifests":[]}'),
    ("no-manifests", b'{"schemaVersion":2,"manifests":[]}'),
]:
    case(f"index.json-{_id}", "", archive_of(altered(lambda x, d=_data: x.files.update({"index.json": d}))))
for _id, _size in [("negative", -1), ("fraction", 2420.5), ("string", "2420"), ("boolean", True)]:
    case(
        f"index.json-size-{_id}",
        "no valid size",
        archive_of(altered(lambda x, s=_size: x.entry(lambda d: d.update(size=s)))),
    )
case("index.json-missing", "no index.json", archive_of(altered(lambda x: x.files.pop("index.json"))))
case("manifest-not-json", "not valid JSON", archive_of(altered(lambda x: x.replace(x.amd64, b"\x89PNG not json"))))
case(
    "config-not-json",
    "not valid JSON",
    archive_of(altered(lambda x: x.replace(x.config, b"\x89PNG not json"))),
)
case(
    "config-a-json-array",
    "not a JSON object",
    archive_of(altered(lambda x: x.replace(x.config, b"[1, 2, 3]"))),
)

# JSON nested without end, or deeper than any image document: the parser takes up to about
# 1,000 levels, and copying or writing out again what it took then exhausted the recursion
# limit (exit 70 when the build copied the config).
_BOMB = b"[" * 100_000 + b"]" * 100_000
_DEEP: list[Any] = []
for _ in range(600):
    _DEEP = [_DEEP]
for _what, _which in [("manifest", lambda x: x.amd64), ("config", lambda x: x.config), ("index", lambda x: x.nested)]:
    case(
        f"{_what}-nested-100000-deep", "not valid JSON", archive_of(altered(lambda x, w=_which: x.replace(w(x), _BOMB)))
    )
    case(
        f"{_what}-field-nested-600-deep",
        "nested more than 100 deep",
        archive_of(altered(lambda x, w=_which: x.edit(w(x), lambda d: d.update(x=_DEEP)))),
    )
case(
    "index.json-field-nested-600-deep",
    "nested more than 100 deep",
    archive_of(altered(lambda x: x.files.update({"index.json": dumps({**x.json("index.json"), "x": _DEEP})}))),
)

# Values of a type other than the one their place needs (before: TypeError, AttributeError).
case(
    "index.json-media-type-a-list",
    "mediaType that is not a string",
    archive_of(altered(lambda x: x.files.update({"index.json": dumps({**x.json("index.json"), "mediaType": ["x"]})}))),
)
case(
    "manifest-media-type-an-object",
    "mediaType that is not a string",
    archive_of(altered(lambda x: x.edit(x.amd64, lambda m: m.update(mediaType={"a": 1})))),
)
case(
    "config-section-a-list",
    "invalid config section",
    archive_of(altered(lambda x: x.edit(x.config, lambda c: c.update(config=[1])))),
)
for _field, _value, _flag in [
    ("Env", 5, ("--env", "A=1")),
    ("Env", [["PATH=/bin"]], ("--env", "A=1")),
    ("Labels", ["a"], ("--label", "a=b")),
    ("ExposedPorts", ["80/tcp"], ("--expose", "80")),
]:
    case(
        f"config-{_field}-{type(_value).__name__}-with-{_flag[0][2:]}",
        _field,
        archive_of(altered(lambda x, f=_field, v=_value: x.edit(x.config, lambda c: c["config"].update({f: v})))),
        inspect=False,  # inspect shows a config as it is; a build merges its flags into these fields
        build_args=_flag,
    )

# Wrong mediaTypes.
case(
    "index.json-says-it-is-a-manifest",
    "unsupported mediaType",
    archive_of(
        altered(lambda x: x.files.update({"index.json": dumps({**x.json("index.json"), "mediaType": OCI_MANIFEST})}))
    ),
)
case(
    "entry-says-manifest-for-an-index",
    "manifest",  # build: "is not an image manifest"; inspect: "... the descriptor naming it says ..."
    archive_of(altered(lambda x: x.entry(lambda d: d.update(mediaType=OCI_MANIFEST)))),
)
case(
    "entry-says-index-for-a-manifest",
    "the descriptor naming it says",
    archive_of(altered(lambda x: x.edit_refs(x.amd64, lambda d: d.update(mediaType=OCI_INDEX)))),
)
case(
    "index-of-unknown-media-type",
    "neither an image manifest nor an index",
    archive_of(altered(lambda x: x.edit(x.nested, lambda i: i.update(mediaType="application/vnd.evil+json")))),
)
case(
    "manifest-says-docker-schema-1",
    "schema 1",
    archive_of(
        altered(
            lambda x: x.edit(
                x.amd64, lambda m: m.update(mediaType="application/vnd.docker.distribution.manifest.v1+prettyjws")
            )
        )
    ),
)
case(
    "index.json-entry-says-layer",
    "no image for platform",
    archive_of(altered(lambda x: x.entry(lambda d: d.update(mediaType=OCI_LAYER_GZIP)))),
    inspect=False,  # inspect shows the index it names, with no image in it: it skips what is not an image
)
case(
    "config-with-two-diff-ids-for-one-layer",
    "diff_ids",
    archive_of(
        altered(lambda x: x.edit(x.config, lambda c: c["rootfs"]["diff_ids"].append(c["rootfs"]["diff_ids"][0])))
    ),
    inspect=False,
)
case(
    "gzip-layer-that-is-not-gzip",
    "cannot list layer",
    archive_of(altered(lambda x: x.replace(x.layer, b"not gzip at all" * 100))),
    inspect=False,
    build_args=("--with", "tmp"),  # the base's files are listed to place /tmp
)


# The same faults in an oci: layout directory.
def directory(change: Callable[[Path, Layout], object], layout: Layout | None = None) -> Make:
    def make(where: Path) -> str:
        copy = Layout((layout or BASE).files)
        root = copy.write_dir(where / "layout")
        change(root, copy)
        return f"oci:{root}"

    return make


def moved_outside(name: Callable[[Layout], str]) -> Callable[[Path, Layout], None]:
    """``name`` becomes a symlink to an identical copy outside the layout."""

    def change(root: Path, layout: Layout) -> None:
        outside = root.parent / "outside" / name(layout).replace("/", "_")
        outside.parent.mkdir(exist_ok=True)
        shutil.move(root / name(layout), outside)
        (root / name(layout)).symlink_to(outside)

    return change


def made_into(name: Callable[[Layout], str], make: Callable[[Path], object]) -> Callable[[Path, Layout], None]:
    def change(root: Path, layout: Layout) -> None:
        (root / name(layout)).unlink()
        make(root / name(layout))

    return change


def blobs_outside(root: Path, layout: Layout) -> None:
    shutil.move(root / "blobs", root.parent / "blobs-elsewhere")
    (root / "blobs").symlink_to(root.parent / "blobs-elsewhere")


def traversal_to_a_real_file(root: Path, layout: Layout) -> None:
    (root.parent / "etc").mkdir()
    (root.parent / "etc" / "passwd").write_bytes(layout.files[blob_name(layout.nested)])
    index = layout.json("index.json")
    index["manifests"][0]["digest"] = "sha256:../../../etc/passwd"
    (root / "index.json").write_bytes(dumps(index))


def _manifest(x: Layout) -> str:
    return blob_name(x.amd64)


case("dir-symlink-for-manifest", "is a symlink", directory(moved_outside(_manifest)))
case("dir-symlink-for-layer", "is a symlink", directory(moved_outside(lambda x: blob_name(x.layer))), inspect=False)
case("dir-symlink-for-index.json", "is a symlink", directory(moved_outside(lambda x: "index.json")))
case(
    "dir-symlink-to-etc-passwd", "is a symlink", directory(made_into(_manifest, lambda p: p.symlink_to("/etc/passwd")))
)
case("dir-blobs-is-a-symlink-outside", "outside the layout", directory(blobs_outside))
case("dir-fifo-for-manifest", "not a regular file", directory(made_into(_manifest, os.mkfifo)))
case("dir-directory-for-manifest", "not a regular file", directory(made_into(_manifest, Path.mkdir)))
case("dir-directory-for-index.json", "not a regular file", directory(made_into(lambda x: "index.json", Path.mkdir)))
case("dir-digest-traversal-to-a-real-file", "invalid digest", directory(traversal_to_a_real_file))
case(
    "dir-layer-size-10GB",
    "but its descriptor says",
    directory(lambda r, x: None, size_lie(lambda x: x.layer, lambda n: 10 * GB)),
    inspect=False,
)
case(
    "dir-index.json-5MB",
    "larger than",
    directory(lambda r, x: (r / "index.json").write_bytes(x.files["index.json"] + b" " * (5 << 20))),
)
case("dir-index.json-not-json", "not valid JSON", directory(lambda r, x: (r / "index.json").write_bytes(b"<html>")))
case("dir-nested-50-deep", "nested more than 8 deep", directory(lambda r, x: None, nested(49)))


# -- running them ------------------------------------------------------------------------------


def run_cli(args: list[str], home: Path) -> Result:
    """``python -m zeroimage ARGS`` in ``home/work``, with its cache, Docker config and TMPDIR
    under ``home``, its peak RSS measured."""
    return Home.under(home).run(*args, timeout=120, measure_rss=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root (but the layer cache) → (size, mtime); symlinks not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != "cache"]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()  # a directory's mtime changes when a temporary file comes and goes
            out[str(path.relative_to(root))] = (0, 0) if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def leftovers(cache: Path) -> list[str]:
    return (
        [str(p) for p in cache.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
        if cache.exists()
        else []
    )


def assert_refused(proc: Result, expect: str) -> None:
    told = f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    assert proc.returncode not in (0, 70), told  # 70: an internal error, a bug
    assert "Traceback" not in proc.stderr, told
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("zeroimage: error: "), told
    assert expect in errors[0], told
    assert proc.peak_rss_kb is not None and proc.peak_rss_kb < MAX_RSS_KB, f"peak RSS {proc.peak_rss_kb} kB\n{told}"


def prepare(tmp_path: Path) -> Path:
    for name in ("work", "tmp", "in"):
        (tmp_path / name).mkdir()
    return tmp_path / "in"


def refuse_everywhere(
    tmp_path: Path, source: str, program: Path, expect: str, inspect: bool, build_args: tuple[str, ...] = ()
) -> None:
    before = snapshot(tmp_path)
    started = time.monotonic()
    proc = run_cli(["build", "--from", source, *build_args, "-o", "out.tar", str(program)], tmp_path)
    assert_refused(proc, expect)
    if inspect:
        proc = run_cli(["inspect", source], tmp_path)
        assert_refused(proc, expect)
    assert time.monotonic() - started < 60
    assert snapshot(tmp_path) == before  # no output, no temporary file, nothing in TMPDIR
    assert leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("hostile", CASES)
def test_hostile_base_is_refused(hostile: Case, static_binary: Path, tmp_path: Path) -> None:
    source = hostile.make(prepare(tmp_path))
    refuse_everywhere(tmp_path, source, static_binary, hostile.expect, hostile.inspect, hostile.build_args)


# -- docker-archive ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_base(static_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A docker-archive zeroimage writes (hello-world's layer and the program's), as files."""
    home = tmp_path_factory.mktemp("docker-base")
    prepare(home)
    proc = run_cli(
        ["build", "--from", f"oci-archive:{MULTIARCH}", "-o", "docker-archive:base.tar", str(static_binary)], home
    )
    assert proc.returncode == 0, proc.stderr
    return read_tar(home / "work" / "base.tar")


DockerChange = Callable[[dict[str, bytes]], object]


def docker_manifest(files: dict[str, bytes]) -> dict[str, Any]:
    return dict(json.loads(files["manifest.json"])[0])


def docker_entry(change: Callable[[dict[str, Any]], object]) -> DockerChange:
    def apply(files: dict[str, bytes]) -> None:
        entry = docker_manifest(files)
        change(entry)
        files["manifest.json"] = dumps([entry])

    return apply


def docker_config(change: Callable[[dict[str, Any]], object]) -> DockerChange:
    """Change the config; its new digest is its new name (as docker save names it)."""

    def apply(files: dict[str, bytes]) -> None:
        entry = docker_manifest(files)
        config = json.loads(files.pop(entry["Config"]))
        change(config)
        data = dumps(config)
        entry["Config"] = blob_name(peers.digest_of(data))
        files[entry["Config"]] = data
        files["manifest.json"] = dumps([entry])

    return apply


def uncompressed_first_layer(alter: Callable[[bytes], bytes] = lambda b: b) -> DockerChange:
    """The first layer stored uncompressed (as docker save did before 25.0), then ``alter``ed."""

    def apply(files: dict[str, bytes]) -> None:
        import gzip

        entry = docker_manifest(files)
        name = entry["Layers"][0]
        files[name] = alter(gzip.decompress(files[name]))

    return apply


def docker_members(files: dict[str, bytes]) -> list[Member]:
    return [Member("blobs/", kind=tarfile.DIRTYPE), Member("blobs/sha256/", kind=tarfile.DIRTYPE)] + [
        Member(n, d) for n, d in files.items()
    ]


def symlink_for(which: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, bytes]], list[Member]]:
    def members(files: dict[str, bytes]) -> list[Member]:
        name = which(docker_manifest(files))
        return [
            Member(name, kind=tarfile.SYMTYPE, linkname="/etc/passwd") if m.name == name else m
            for m in docker_members(files)
        ]

    return members


#: (id, what the error says, alteration of the files or of the members, inspect refuses too, source suffix)
DOCKER_CASES: list[tuple[str, str, DockerChange | Callable[[dict[str, bytes]], list[Member]], bool, str]] = [
    ("manifest.json-not-json", "not valid JSON", lambda f: f.update({"manifest.json": b"{oops"}), True, ""),
    (
        "manifest.json-5MB",
        "larger than",
        lambda f: f.update({"manifest.json": f["manifest.json"] + b" " * (5 << 20)}),
        True,
        "",
    ),
    (
        "manifest.json-an-object",
        "lists no images",
        lambda f: f.update({"manifest.json": dumps(docker_manifest(f))}),
        True,
        "",
    ),
    ("manifest.json-missing", "no manifest.json", lambda f: f.pop("manifest.json"), True, ""),
    ("config-name-dotdot", "unsafe entry name", docker_entry(lambda e: e.update(Config="../../etc/passwd")), True, ""),
    ("config-name-absolute", "unsafe entry name", docker_entry(lambda e: e.update(Config="/etc/passwd")), True, ""),
    (
        "layer-name-dotdot",
        "unsafe entry name",
        docker_entry(lambda e: e["Layers"].__setitem__(0, "../layer.tar")),
        True,
        "",
    ),
    ("config-not-json", "not valid JSON", lambda f: f.update({docker_manifest(f)["Config"]: b"nope"}), True, ""),
    (
        "config-diff-id-traversal",
        "invalid diff_id",
        docker_config(lambda c: c["rootfs"]["diff_ids"].__setitem__(0, TRAVERSAL)),
        True,
        "",
    ),
    (
        "config-one-diff-id-too-many",
        "diff_ids",
        docker_config(lambda c: c["rootfs"]["diff_ids"].append(peers.digest_of(b""))),
        True,
        "",
    ),
    ("uncompressed-layer-altered", "digest mismatch", uncompressed_first_layer(lambda b: b[:-1] + b"x"), False, ""),
    (
        "uncompressed-layer-diff-id-traversal",
        "invalid diff_id",
        lambda f: (
            uncompressed_first_layer()(f),
            docker_config(lambda c: c["rootfs"]["diff_ids"].__setitem__(0, TRAVERSAL))(f),
        ),
        True,
        "",
    ),
    ("repo-tags-not-a-list", "has no image tagged", docker_entry(lambda e: e.update(RepoTags=5)), True, ":app:v1"),
    (
        "repo-tags-of-objects",
        "has no image tagged",
        docker_entry(lambda e: e.update(RepoTags=[{"a": 1}])),
        True,
        ":app:v1",
    ),
    (
        "manifest.json-nested-100000-deep",
        "not valid JSON",
        lambda f: f.update({"manifest.json": b"[" * 100_000 + b"]" * 100_000}),
        True,
        "",
    ),
    (
        "manifest.json-layer-named-by-an-object",
        "not a string",
        docker_entry(lambda e: e["Layers"].__setitem__(0, {"a": 1})),
        True,
        "",
    ),
    ("config-field-nested-600-deep", "nested more than 100 deep", docker_config(lambda c: c.update(x=_DEEP)), True, ""),
    ("symlink-for-config", "is a symlink", symlink_for(lambda e: str(e["Config"])), True, ""),
    ("symlink-for-layer", "is a symlink", symlink_for(lambda e: str(e["Layers"][1])), True, ""),
    (
        "duplicate-manifest.json",
        "duplicate entry",
        lambda f: [*docker_members(f), Member("manifest.json", f["manifest.json"])],
        True,
        "",
    ),
]


@pytest.mark.parametrize(
    ("id", "expect", "change", "inspect", "suffix"), DOCKER_CASES, ids=[c[0] for c in DOCKER_CASES]
)
def test_hostile_docker_archive_is_refused(
    id: str,
    expect: str,
    change: Callable[[dict[str, bytes]], object],
    inspect: bool,
    suffix: str,
    docker_base: dict[str, bytes],
    static_binary: Path,
    tmp_path: Path,
) -> None:
    files = dict(docker_base)
    result = change(files)
    members = result if isinstance(result, list) else docker_members(files)
    path = prepare(tmp_path) / "docker.tar"
    path.write_bytes(tar_bytes(members))
    refuse_everywhere(tmp_path, f"docker-archive:{path}{suffix}", static_binary, expect, inspect)


@pytest.mark.parametrize("cut", ["half", "end-blocks-missing", "mid-header"])
def test_truncated_docker_archive_is_refused(
    cut: str, docker_base: dict[str, bytes], static_binary: Path, tmp_path: Path
) -> None:
    data = tar_bytes(docker_members(dict(docker_base)))
    end = len(without_end(data))
    data = data[
        : {
            "half": len(data) // 2,
            "end-blocks-missing": end,
            "mid-header": header_offsets(data)["manifest.json"][0] + 10,
        }[cut]
    ]
    path = prepare(tmp_path) / "docker.tar"
    path.write_bytes(data)
    refuse_everywhere(tmp_path, f"docker-archive:{path}", static_binary, "", True)


# -- positive controls: the unaltered images, and what is legal however odd --------------------


def accepted_everywhere(tmp_path: Path, source: str, program: Path) -> None:
    proc = run_cli(["build", "--from", source, "-o", "out.tar", str(program)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    built = peers.skopeo_inspect(f"oci-archive:{tmp_path / 'work' / 'out.tar'}")
    assert (built["Os"], built["Architecture"]) == ("linux", "amd64")
    assert len(built["Layers"]) >= 2  # the base's layers, then the program's
    proc = run_cli(["inspect", source], tmp_path)
    assert proc.returncode == 0 and "linux/amd64" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "make",
    [
        archive_of(),
        archive_bytes(ORDERED),
        directory(lambda r, x: None),
        archive_of(nested(7)),  # 8 deep: the most allowed
        directory(lambda r, x: None, nested(7)),
    ],
    ids=["oci-archive", "oci-archive-reordered", "oci-dir", "oci-archive-8-deep", "oci-dir-8-deep"],
)
def test_unaltered_base_is_accepted(make: Make, static_binary: Path, tmp_path: Path) -> None:
    accepted_everywhere(tmp_path, make(prepare(tmp_path)), static_binary)


def test_unaltered_docker_archive_is_accepted(
    docker_base: dict[str, bytes], static_binary: Path, tmp_path: Path
) -> None:
    path = prepare(tmp_path) / "docker.tar"
    path.write_bytes(tar_bytes(docker_members(dict(docker_base))))
    accepted_everywhere(tmp_path, f"docker-archive:{path}", static_binary)
    files = dict(docker_base)
    uncompressed_first_layer()(files)
    path.write_bytes(tar_bytes(docker_members(files)))
    accepted_everywhere(tmp_path, f"docker-archive:{path}", static_binary)


def test_index_naming_an_index_many_times_over_is_read_once(static_binary: Path, tmp_path: Path) -> None:
    """Three levels of indexes, each naming the next 300 times: 27 million paths, 3 documents."""
    layout = Layout(BASE.files)
    child = layout.json("index.json")["manifests"][0]
    for _ in range(3):
        data = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child] * 300})
        child = {"mediaType": OCI_INDEX, "digest": layout.add(data), "size": len(data)}
    layout.files["index.json"] = dumps({"schemaVersion": 2, "manifests": [child]})
    started = time.monotonic()
    accepted_everywhere(tmp_path, archive_of(layout)(prepare(tmp_path)), static_binary)
    assert time.monotonic() - started < 20
