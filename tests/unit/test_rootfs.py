"""The image filesystem model (whiteouts, symlinks), the will-it-run check and config flags."""

from __future__ import annotations

import pytest

from zeroimage.customize import ConfigChanges, apply_changes, parse_port, parse_signal, resolve_user
from zeroimage.elf import BinaryInfo
from zeroimage.errors import UsageError
from zeroimage.oci import ImageConfig, Platform
from zeroimage.rootfs import FileTree, Node
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
