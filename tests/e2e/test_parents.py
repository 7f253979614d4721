"""Issue 16, first part: every layer zeroimage makes carries a directory entry for every parent
of every entry, before the entries below it, as BuildKit's ``COPY`` does (AWS Lambda refuses a
layer without them). A parent the base has is written with the base's mode and owner, never
0755/root over it; one the base lacks is 0755, root's, with the layer's time.

Checked on the layers themselves (listed with Python's ``tarfile``) and on what umoci unpacks
from the image, layer over layer, as a runtime would.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from tests.conftest import Zeroimage
from tests.support import images, peers
from tests.support.images import directory, symlink

EPOCH = 1_700_000_000
NEW = (0o755, 0, 0)  # a parent the base lacks


def attributes(member: tarfile.TarInfo) -> tuple[int, int, int]:
    return member.mode, member.uid, member.gid


def check_parents_first(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """Assert that each member's every parent is a directory entry of this layer, before it;
    returns the members by name."""
    seen: dict[str, tarfile.TarInfo] = {}
    for member in members:
        name = member.name
        assert not name.startswith(("/", "./")) and name not in seen, f"odd or repeated name {name!r}"
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            assert parent in seen, f"{name} comes before (or without) its parent {parent}"
            assert seen[parent].isdir(), f"{name}'s parent {parent} is not a directory entry"
        seen[name] = member
    return seen


def test_every_parent_on_scratch(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """FROM scratch: the program's, the extra files' and the essentials' layers each name every
    parent, 0755 and root's, dated as the layer."""
    program = images.tiny_program(tmp_path / "app")
    (tmp_path / "site" / "css").mkdir(parents=True)
    (tmp_path / "site" / "css" / "a.css").write_text("body {}\n")
    (tmp_path / "conf").write_text("x = 1\n")
    zeroimage(
        "build",
        "--entrypoint-path",
        "/usr/local/bin/app",
        "--add",
        "site:/srv/www",
        "--add",
        "conf:/etc/app/conf",
        "--with",
        "users,tmp",
        "-o",
        "scratch.tar",
        "app",
        env={"SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    image = images.read_image(tmp_path / "scratch.tar", tmp_path)
    files, program_layer = (check_parents_first(image.layer_members(i)) for i in (0, 1))
    assert list(program_layer) == ["usr", "usr/local", "usr/local/bin", "usr/local/bin/app"]
    for name in ("usr", "usr/local", "usr/local/bin"):
        assert (*attributes(program_layer[name]), program_layer[name].mtime) == (*NEW, EPOCH), name
    for name in ("etc", "etc/app", "srv", "home"):
        assert (*attributes(files[name]), files[name].mtime) == (*NEW, EPOCH), name
    assert {"etc/passwd", "etc/group", "home/nonroot", "tmp", "srv/www/css/a.css", "etc/app/conf"} <= set(files)
    rootfs = peers.umoci_unpack(tmp_path / "scratch.tar", "latest", tmp_path / "bundle") / "rootfs"
    for name in ("usr/local/bin", "etc/app", "srv"):
        st = os.lstat(rootfs / name)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == NEW, name
    assert (rootfs / "usr/local/bin/app").read_bytes() == program.read_bytes()


#: The base's directories, mode and owner, none of them 0755/root but /usr.
BASE_DIRS = {
    "usr": (0o755, 0, 0),
    "usr/bin": (0o751, 0, 0),
    "usr/local": (0o750, 1000, 1000),
    "usr/local/share": (0o705, 1000, 1001),
    "etc": (0o711, 0, 2),
    "srv": (0o700, 7, 7),
}


def test_parents_keep_the_bases_modes_and_follow_its_symlinks(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """On a base with unusual directory modes and a merged /bin → usr/bin: each parent the base
    has is written as the base has it, and what unpacks is the base's directory, not 0755/root;
    /bin/app lands in /usr/bin/app and /bin stays a symlink."""
    base = images.write_archive(
        tmp_path / "base.tar",
        [[*(directory(name, *attrs) for name, attrs in BASE_DIRS.items()), symlink("bin", "usr/bin")]],
    )
    program = images.tiny_program(tmp_path / "app")
    (tmp_path / "conf").write_text("x = 1\n")
    zeroimage(
        "build",
        "--from",
        f"oci-archive:{base}",
        "--entrypoint-path",
        "/bin/app",
        "--add",
        "conf:/usr/local/share/app/conf",
        "--add",
        "conf:/srv/conf",
        "--add",
        "conf:/etc/app/conf",
        "--with",
        "users",
        "-o",
        "out.tar",
        "app",
    )
    image = images.read_image(tmp_path / "out.tar", tmp_path)
    files, program_layer = (check_parents_first(image.layer_members(i)) for i in (1, 2))
    assert list(program_layer) == ["usr", "usr/bin", "usr/bin/app"]
    for name in ("usr", "usr/bin"):
        assert attributes(program_layer[name]) == BASE_DIRS[name], name
    for name in ("usr", "usr/local", "usr/local/share", "etc", "srv"):
        assert attributes(files[name]) == BASE_DIRS[name], name
    for name in ("usr/local/share/app", "etc/app", "home"):
        assert attributes(files[name]) == NEW, name
    rootfs = peers.umoci_unpack(tmp_path / "out.tar", "latest", tmp_path / "bundle") / "rootfs"
    for name, attrs in BASE_DIRS.items():
        st = os.lstat(rootfs / name)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == attrs, name
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert (rootfs / "usr/bin/app").read_bytes() == program.read_bytes()
    assert (rootfs / "usr/local/share/app/conf").read_text() == "x = 1\n"
