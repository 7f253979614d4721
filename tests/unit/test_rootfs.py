"""The image filesystem model (whiteouts, symlinks), the will-it-run check and config flags."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.hostile_layers import pax_header
from zeroimage import rootfs
from zeroimage.customize import ConfigChanges, apply_changes, parse_port, parse_signal, resolve_user
from zeroimage.elf import BinaryInfo
from zeroimage.errors import InputError, UsageError
from zeroimage.image import Blob
from zeroimage.oci import Descriptor, ImageConfig, Platform, sha256_digest
from zeroimage.oci.mediatypes import OCI_LAYER, OCI_LAYER_GZIP
from zeroimage.rootfs import FileTree, ListingCache, Node, list_layer
from zeroimage.runcheck import problems
from zeroimage.store import BlobStore

F, D = Node("file"), Node("dir")


def tree(*layers: list[tuple[str, Node]]) -> FileTree:
    t = FileTree()
    for layer in layers:
        t.apply(layer)
    return t


def test_whiteouts_and_opaque_directories() -> None:
    t = tree(
        [("etc", D), ("etc/a", F), ("etc/b", F), ("lib", D), ("lib/x.so", F)],
        [("etc/.wh.a", F), ("lib/.wh..wh..opq", F), ("lib/y.so", F)],
    )
    assert not t.exists("/etc/a") and t.exists("/etc/b")
    assert not t.exists("/lib/x.so") and t.exists("/lib/y.so")


def test_symlinks_resolve_inside_the_image() -> None:
    t = tree(
        [
            ("lib64", Node("symlink", target="usr/lib64")),
            ("usr/lib64/ld.so", F),
            ("bin", Node("symlink", target="/usr/bin")),
            ("usr/bin/sh", Node("symlink", target="../../bin/busybox")),
            ("loop", Node("symlink", target="/loop")),
        ]
    )
    assert t.exists("/lib64/ld.so")
    assert not t.exists("/bin/sh")  # points at /bin/busybox, which resolves to /usr/bin/busybox: absent
    assert not t.exists("/loop")  # a cycle ends, it does not hang
    assert t.is_dir("/usr")  # implied by its members


def test_dynamic_binary_check_follows_ld_so_conf_and_multiarch() -> None:
    info = BinaryInfo(
        format="elf",
        architecture="amd64",
        bits=64,
        interpreter="/lib64/ld-linux-x86-64.so.2",
        needed=("libc.so.6", "libfoo.so.1", "libbar.so"),
        rpath=("$ORIGIN/lib",),
    )
    t = tree(
        [
            ("lib64/ld-linux-x86-64.so.2", F),
            ("lib/x86_64-linux-gnu/libc.so.6", F),
            ("etc/ld.so.conf", Node("file", content="include /etc/ld.so.conf.d/*.conf\n")),
            ("etc/ld.so.conf.d/foo.conf", Node("file", content="/opt/foo/lib\n")),
            ("opt/foo/lib/libfoo.so.1", F),
            ("app/lib/libbar.so", F),
        ]
    )
    assert problems(info, "/app/prog", t) == []
    assert "libbar.so" in problems(info, "/prog", t)[0]
    assert "loader" in problems(info, "/app/prog", FileTree())[0]


GLIBC_2_31 = tuple(f"GLIBC_2.{n}" for n in range(2, 32)) + ("GLIBC_2.2.5", "GLIBC_PRIVATE")


def test_libraries_that_libraries_need_and_symbol_versions_are_checked() -> None:
    program = BinaryInfo(
        format="elf",
        architecture="amd64",
        bits=64,
        interpreter="/lib64/ld-linux-x86-64.so.2",
        needed=("libssl.so.3", "libc.so.6"),
        versions_needed=(("libc.so.6", "GLIBC_2.34"), ("libc.so.6", "GLIBC_2.2.5"), ("libssl.so.3", "OPENSSL_3.0.0")),
    )
    libc = Node("file", library=True, needed=("ld-linux-x86-64.so.2",), versions_defined=GLIBC_2_31)
    ssl = Node(
        "file",
        library=True,
        needed=("libcrypto.so.3", "libc.so.6"),
        versions_needed=(("libc.so.6", "GLIBC_2.38"), ("libcrypto.so.3", "OPENSSL_3.0.0")),
        versions_defined=("OPENSSL_3.0.0",),
    )
    base = [
        ("lib64", Node("symlink", target="lib")),
        ("lib/ld-linux-x86-64.so.2", Node("file", library=True)),
        ("lib/libc.so.6", Node("symlink", target="libc-2.31.so")),
        ("lib/libc-2.31.so", libc),
        ("usr/lib/libssl.so.3", ssl),
    ]
    [found] = problems(program, "/app", tree(base))
    assert "the library libcrypto.so.3 (needed by libssl.so.3) is missing" in found
    assert "libc.so.6 in the image is older than it was built against: it lacks GLIBC_2.34, GLIBC_2.38" in found
    assert "(it has up to GLIBC_2.31), needed by libssl.so.3" in found  # and by the program itself
    crypto = Node("file", library=True, versions_defined=("OPENSSL_3.0.0",))
    newer_libc = Node("file", library=True, versions_defined=(*GLIBC_2_31, "GLIBC_2.34", "GLIBC_2.38"))
    fixed = tree(base, [("usr/lib/libcrypto.so.3", crypto), ("lib/libc-2.31.so", newer_libc)])
    assert problems(program, "/app", fixed) == []
    unread = tree(base, [("usr/lib/libcrypto.so.3", F), ("lib/libc-2.31.so", F)])  # not read: not judged
    assert problems(program, "/app", unread) == []


def test_user_resolution_and_flag_parsing() -> None:
    t = tree(
        [
            ("etc/passwd", Node("file", content="root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")),
            ("etc/group", Node("file", content="root:x:0:\nstaff:x:50:\n")),
        ]
    )
    assert resolve_user("app", t) == "1000:1001"
    assert resolve_user("app:staff", t) == "1000:50"
    assert resolve_user("42", t) == "42"
    with pytest.raises(UsageError):
        resolve_user("ghost", t)
    assert parse_port("80") == "80/tcp" and parse_port("53/UDP") == "53/udp"
    assert parse_signal("term") == "SIGTERM" and parse_signal("9") == "9"
    for bad in ("0", "x/tcp", "70000"):
        with pytest.raises(UsageError):
            parse_port(bad)


def test_apply_changes_merges_like_a_dockerfile() -> None:
    base = ImageConfig.scratch(Platform("linux", "amd64")).with_container(
        Env=["PATH=/bin", "A=1"], Labels={"x": "1"}, ExposedPorts={"22/tcp": {}}
    )
    out = apply_changes(
        base, ConfigChanges(env=(("A", "2"), ("B", "3")), labels=(("y", "2"),), expose=("80/tcp",)), None
    ).container
    assert out["Env"] == ["PATH=/bin", "A=2", "B=3"]
    assert out["Labels"] == {"x": "1", "y": "2"}
    assert out["ExposedPorts"] == {"22/tcp": {}, "80/tcp": {}}


def test_listing_reads_what_the_loader_checks_of_each_library(tmp_path: Path) -> None:
    library = Path("/lib/x86_64-linux-gnu/libselinux.so.1")
    if not library.exists():
        pytest.skip("needs the host's libselinux")
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(library, "usr/lib/libselinux.so.1")
        info = tarfile.TarInfo("usr/lib/libbroken.so.1")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x7fELF"))  # not a valid ELF: listed, not judged
    raw = layer.read_bytes()
    blob = Blob(Descriptor(OCI_LAYER, sha256_digest(raw), len(raw)), lambda: io.BytesIO(raw))
    for attempt in range(2):  # listed, then read back from the listing cache
        nodes = dict(ListingCache(BlobStore(tmp_path / "cache")).listing(blob))
        selinux = nodes["usr/lib/libselinux.so.1"]
        assert selinux.library and "libpcre2-8.so.0" in selinux.needed, attempt
        assert ("libc.so.6", "GLIBC_2.14") in selinux.versions_needed and "LIBSELINUX_1.0" in selinux.versions_defined
        assert nodes["usr/lib/libbroken.so.1"] == Node("file", mode=0o644)


# -- a base that is large or hostile -----------------------------------------------------------


def gzip_blob(data: bytes) -> Blob:
    raw = gzip.compress(data, 1)
    return Blob(Descriptor(OCI_LAYER_GZIP, sha256_digest(raw), len(raw)), lambda: io.BytesIO(raw))


def empty_file(name: str) -> bytes:
    info = tarfile.TarInfo(name)
    return info.tobuf(tarfile.USTAR_FORMAT)


def test_whiteouts_cost_time_linear_in_the_entries() -> None:
    """20,000 files and a layer whiting out each: 27 s when each whiteout scanned the tree."""
    files = [(f"data/f{n}", F) for n in range(20_000)]
    whiteouts = [(f"data/.wh.f{n}", F) for n in range(20_000)]
    started = time.perf_counter()
    t = tree(files, whiteouts, [(f"data/sub{n}/.wh..wh..opq", F) for n in range(20_000)])
    assert time.perf_counter() - started < 4  # 0.1 s here; a scan per whiteout took 27 s
    assert not t.exists("/data/f0") and not t.exists("/data/f19999") and t.is_dir("/data/sub7")
    assert list(t.children("/data")) == [f"data/sub{n}" for n in range(20_000)]


def test_whiteouts_concern_lower_layers_only() -> None:
    """Wherever they come in a layer, its whiteouts never remove the layer's own entries."""
    t = tree(
        [("a", Node("dir", 0o700)), ("a/old", F), ("b", F)],
        [("a/new", F), ("a/.wh..wh..opq", F), ("b/c", F), (".wh.b", F)],
    )
    assert t.exists("/a/new") and not t.exists("/a/old") and t.exists("/b/c") and t.is_dir("/b")
    assert t.resolve("/a") == ("a", Node("dir", 0o700))  # an opaque directory keeps its own mode


def test_a_directory_that_members_imply_keeps_the_mode_it_had() -> None:
    t = tree([("opt", Node("dir", 0o700, 1, 2))], [("opt/x/y", F)])
    assert t.resolve("opt") == ("opt", Node("dir", 0o700, 1, 2))
    assert t.resolve("opt/x") == ("opt/x", Node("dir", 0o755))
    t.apply([("opt", Node("dir", 0o750))])  # one that a layer names replaces it, entries kept
    assert t.resolve("opt") == ("opt", Node("dir", 0o750)) and t.exists("opt/x/y")


def test_a_hard_link_reads_as_what_it_links() -> None:
    passwd = Node("file", content="app:x:1000:1000::/:/bin/sh\n")
    t = tree([("etc/passwd.orig", passwd), ("etc/passwd", Node("hardlink", target="etc/passwd.orig"))])
    assert resolve_user("app", t) == "1000:1000"
    assert not t.exists("/etc/passwd/x")


def test_a_layer_or_a_filesystem_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs, "MAX_ENTRIES", 100)
    with pytest.raises(InputError, match="has more than 100 entries"):
        tree([(f"d/f{n}", F) for n in range(100)])  # and the directory they imply
    t = tree([(f"d/f{n}", F) for n in range(60)])
    for _ in range(5):  # what is whited out no longer counts
        t.apply([("d/.wh..wh..opq", F), *((f"d/g{n}", F) for n in range(60))])
    with pytest.raises(InputError, match="the image's filesystem has more than 100 entries"):
        t.apply([(f"e/f{n}", F) for n in range(60)])
    monkeypatch.setattr(rootfs, "MAX_TEXT", 10_000)
    long_links = [(f"l{n}", Node("symlink", target="x" * 1000)) for n in range(11)]
    with pytest.raises(InputError, match="more than 0 MiB of names, link targets"):
        tree(long_links)


def test_entries_that_differ_only_in_their_path_share_one_node() -> None:
    layer = b"".join(empty_file(f"d/f{n}") for n in range(1000)) + bytes(1024)
    nodes = [node for _, node in list_layer(gzip_blob(layer))]
    assert len(nodes) == 1000 and len({id(n) for n in nodes}) == 1


@pytest.mark.parametrize(
    ("layer", "expect"),
    [
        (
            pax_header({"comment": "x"}) * 2000 + empty_file("f") + bytes(1024),
            "more than 8 extended tar headers in a row",
        ),
        (
            pax_header({f"k{n}": "v" for n in range(100)}, tarfile.XGLTYPE) + empty_file("f") + bytes(1024),
            "global PAX headers hold more than 64 records",
        ),
        (pax_header({"size": "-1024"}) + empty_file("f") + bytes(1024), "has a negative size"),
        (pax_header({"GNU.sparse.map": "0,1", "GNU.sparse.size": "1"}) + empty_file("f") + bytes(1024), "sparse"),
        (pax_header({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}) + empty_file("f") + bytes(1024), "sparse"),
    ],
    ids=[
        "2000-pax-headers-in-a-row",
        "global-pax-100-records",
        "pax-negative-size",
        "pax-sparse-0.1",
        "pax-sparse-1.0",
    ],
)
def test_tar_headers_that_would_cost_without_bound_are_refused(layer: bytes, expect: str) -> None:
    """Before: 2000 PAX headers in a row made tarfile recurse until RecursionError (an internal
    error); a global header's records were copied into every member."""
    with pytest.raises(InputError, match=expect):
        list_layer(gzip_blob(layer))


# -- the listing cache -------------------------------------------------------------------------


def passwd_blob() -> Blob:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(PASSWD)
        tar.addfile(info, io.BytesIO(PASSWD))
        tar.addfile(tarfile.TarInfo("usr/lib/libx.so.1"), io.BytesIO(b""))
    return gzip_blob(out.getvalue())


PASSWD = b"root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n"


def cached_file(cache: Path, blob: Blob) -> Path:
    return cache / "listings" / blob.descriptor.digest.split(":")[1]


def plant_huge(path: Path) -> None:
    with open(path, "wb") as out:
        out.truncate(1 << 30)  # a gigabyte, on paper


def plant_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def plant_symlink(path: Path) -> None:
    elsewhere = path.parent.parent / "elsewhere"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)


def _replace(text: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text)


def _edit(change: Callable[[list[bytes]], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        lines = path.read_bytes().splitlines(keepends=True)
        change(lines)
        path.write_bytes(b"".join(lines))

    return apply


HEADER = rootfs._HEADER


def _trailer(count: object) -> bytes:
    return b'{"entries":%s,"size":2048,"orphans":[],"orphan_count":0}\n' % str(count).encode()


ONE = _trailer(1)
HOSTILE_CACHE = {
    "nesting-bomb": _replace(HEADER + b"[" * 100_000 + b"]" * 100_000 + b"\n" + ONE),
    "huge": plant_huge,
    "fifo": plant_fifo,
    "symlink": plant_symlink,
    "mode-a-string": _replace(HEADER + b'["etc/passwd","file","644",0,0,""]\n' + ONE),
    "unknown-kind": _replace(HEADER + b'["etc/passwd","socket",420,0,0,""]\n' + ONE),
    "bool-for-an-int": _replace(HEADER + b'["etc/passwd","file",true,0,0,""]\n' + ONE),
    "content-a-number": _replace(HEADER + b'["etc/passwd","file",420,0,0,"",{"content":5}]\n' + ONE),
    "needed-of-numbers": _replace(HEADER + b'["a","file",420,0,0,"",{"library":true,"needed":[1]}]\n' + ONE),
    "version-triple": _replace(
        HEADER + b'["a","file",420,0,0,"",{"library":true,"versions_needed":[["a","b","c"]]}]\n' + ONE
    ),
    "unknown-extra": _replace(HEADER + b'["a","file",420,0,0,"",{"evil":1}]\n' + ONE),
    "cut-short": _edit(lambda lines: lines.pop()),
    "count-wrong": _edit(lambda lines: lines.__setitem__(-1, ONE)),
    "count-a-bool": _replace(HEADER + b'["etc","dir",493,0,0,""]\n' + _trailer("true")),
    "garbage-after": _edit(lambda lines: lines.append(b"garbage\n")),
    "line-without-end": _replace(HEADER + b"[" * (5 << 20)),
    # what the format before this one let through: RecursionError, and nodes of any type
    "old-format-nesting-bomb": _replace(b'{"format":2,"entries":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "old-format-wrong-types": _replace(b'{"format":2,"entries":[["etc/passwd",{"kind":5,"mode":"644"}]]}'),
    "empty": _replace(b""),
}


@pytest.mark.parametrize("plant", HOSTILE_CACHE.values(), ids=HOSTILE_CACHE.keys())
def test_a_hostile_cached_listing_is_a_miss(plant: Callable[[Path], None], tmp_path: Path) -> None:
    """Whatever the cache file holds, the layer is listed again — within bounded memory and
    time, raising nothing — and the file is replaced by a good one. Before: a nesting bomb
    raised RecursionError, a gigabyte was read whole, a FIFO blocked, wrong types were taken."""
    blob = passwd_blob()
    cache = ListingCache(BlobStore(tmp_path / "cache"))
    first = dict(cache.listing(blob))
    plant(cached_file(tmp_path / "cache", blob))
    outcome: list[object] = []
    tracemalloc.start()
    worker = threading.Thread(target=lambda: outcome.append(dict(cache.listing(blob))), daemon=True)
    worker.start()
    worker.join(10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not worker.is_alive(), "reading the cached listing blocked"
    assert outcome == [first]
    assert peak < 20 << 20, f"{peak} bytes"
    again = cached_file(tmp_path / "cache", blob)
    if plant is not plant_fifo:  # which an output never replaces (see AtomicFile): a miss each time
        assert again.is_file() and not again.is_symlink() and again.read_bytes().startswith(HEADER)
    assert dict(ListingCache(BlobStore(tmp_path / "cache")).listing(blob)) == first


def test_a_listing_too_large_to_cache_is_listed_and_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs, "MAX_CACHED", 100)
    blob = passwd_blob()
    listed = dict(ListingCache(BlobStore(tmp_path / "cache")).listing(blob))
    assert listed["etc/passwd"].content == PASSWD.decode()
    assert list((tmp_path / "cache" / "listings").iterdir()) == []  # nor a temporary file left


def test_a_lookup_through_links_without_end_gives_up_at_once() -> None:
    """A link whose target names 400,000 components and itself again: the kernel would give
    up (ELOOP); so does a lookup, at once. Before: it walked them all, 40 times over, each name
    taken from the front of a list (quadratic): minutes per lookup, and the run check makes
    thousands."""
    t = tree([("x", D), ("loop", Node("symlink", target="x/../" * 200_000 + "loop"))])
    t.apply([("many", Node("symlink", target="/" + "x/" * 3000 + "../" * 3000 + "many"))])
    found: list[object] = []
    worker = threading.Thread(target=lambda: found.extend([t.exists("/loop/f"), t.exists("/many")]), daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(20)
    assert found == [False, False] and time.perf_counter() - started < 0.5
    assert tree([("b", D), ("a", Node("symlink", target="b/../" * 100 + "c")), ("c", F)]).exists("a")


def test_a_layer_that_does_not_decompress_is_said_to_be_unlisted() -> None:
    """What the decompressor says, after what the build was doing: listing the layer."""
    good = gzip.compress(bytes(range(256)) * 400, mtime=0)
    raw = good[:30] + bytes(b ^ 0x55 for b in good[30:200]) + good[200:]
    digest = sha256_digest(raw)
    with pytest.raises(InputError, match=rf"^cannot list layer {digest}: not valid gzip data \(.+\)$"):
        list_layer(Blob(Descriptor(OCI_LAYER_GZIP, digest, len(raw)), lambda: io.BytesIO(raw)))
