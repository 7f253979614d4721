"""The image filesystem model (whiteouts, symlinks), the will-it-run check and config flags."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from zeroimage.customize import ConfigChanges, apply_changes, parse_port, parse_signal, resolve_user
from zeroimage.elf import BinaryInfo
from zeroimage.errors import UsageError
from zeroimage.image import Blob
from zeroimage.oci import Descriptor, ImageConfig, Platform, sha256_digest
from zeroimage.oci.mediatypes import OCI_LAYER
from zeroimage.rootfs import FileTree, ListingCache, Node
from zeroimage.runcheck import problems

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
        nodes = dict(ListingCache(tmp_path / "cache").listing(blob))
        selinux = nodes["usr/lib/libselinux.so.1"]
        assert selinux.library and "libpcre2-8.so.0" in selinux.needed, attempt
        assert ("libc.so.6", "GLIBC_2.14") in selinux.versions_needed and "LIBSELINUX_1.0" in selinux.versions_defined
        assert nodes["usr/lib/libbroken.so.1"] == Node("file", mode=0o644)
