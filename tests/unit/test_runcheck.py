"""The will-it-run check: files that are no program, a directory, modes and owners the image's
user cannot run, and how missing libraries are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeroimage.elf import BinaryInfo, inspect_binary
from zeroimage.rootfs import FileTree, Node
from zeroimage.runcheck import problems

STATIC = BinaryInfo(format="elf", architecture="amd64", bits=64, static=True)
SCRIPT = BinaryInfo(format="script", shebang="/bin/sh")
DYNAMIC = BinaryInfo(
    format="elf",
    architecture="amd64",
    bits=64,
    interpreter="/lib64/ld-linux-x86-64.so.2",
    needed=("libc.so.6",),
)
NONROOT = (65532, 65532)


def tree(*entries: tuple[str, Node]) -> FileTree:
    t = FileTree()
    t.apply(list(entries))
    return t


def program(mode: int = 0o755, uid: int = 0, gid: int = 0, path: str = "app") -> tuple[str, Node]:
    return path, Node("file", mode, uid, gid)


def users(passwd: str, group: str) -> list[tuple[str, Node]]:
    return [("etc/passwd", Node("file", content=passwd)), ("etc/group", Node("file", content=group))]


# --- files that are not programs --------------------------------------------------------------


def test_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "app"
    empty.touch(mode=0o755)
    assert problems(inspect_binary(empty), "/app", tree(program())) == ["/app is an empty file"]


@pytest.mark.parametrize("content", [b"hello world\n", b"\0" * 64, b"PK\x03\x04zip", b"\x7fEL"])
def test_a_file_that_is_no_program(tmp_path: Path, content: bytes) -> None:
    text = tmp_path / "app"
    text.write_bytes(content)
    assert problems(inspect_binary(text), "/app", tree(program())) == [
        "/app is not a program: neither an ELF executable nor a #! script"
    ]


def test_foreign_programs_are_still_named() -> None:
    macho = BinaryInfo(format="macho", architecture="arm64", bits=64)
    assert problems(macho, "/app", tree(program())) == [
        "/app is a macOS (Mach-O) program; it cannot run in a Linux container"
    ]
    pe = BinaryInfo(format="pe", architecture="amd64", bits=64)
    assert "Windows (PE) program" in problems(pe, "/app", tree(program()))[0]
    assert problems(pe, "/app.exe", tree(program(0o644, path="app.exe")), "windows") == []


def test_a_directory_where_the_program_should_be() -> None:
    t = tree(("usr/local/bin", Node("dir")), ("app", Node("symlink", target="/usr/local/bin")))
    assert problems(STATIC, "/usr/local/bin", t) == ["/usr/local/bin is a directory in the image, not a program"]
    assert problems(STATIC, "/app", t) == ["/app is a directory in the image, not a program"]


# --- who may run it ---------------------------------------------------------------------------


def test_root_needs_one_execute_bit() -> None:
    assert problems(STATIC, "/app", tree(program(0o644))) == ["/app (mode 0644) is not executable"]
    assert problems(STATIC, "/app", tree(program(0o4600))) == ["/app (mode 4600) is not executable"]
    for mode in (0o100, 0o010, 0o001, 0o755):
        assert problems(STATIC, "/app", tree(program(mode, 1000, 1000))) == []
    assert problems(STATIC, "/app", tree(program(0o644)), user=(0, 1000)) == ["/app (mode 0644) is not executable"]


@pytest.mark.parametrize(
    ("mode", "owner", "user", "runs"),
    [
        (0o750, (0, 0), NONROOT, False),  # neither owner nor group: other bits, none
        (0o750, (0, 0), (65532, 0), True),  # the group's bits
        (0o751, (0, 0), NONROOT, True),  # other bits
        (0o700, (65532, 0), NONROOT, True),  # the owner's bits
        (0o075, (65532, 0), (65532, 0), False),  # the owner's bits alone count for the owner
        (0o705, (0, 65532), NONROOT, False),  # the group's bits alone count for the group
        (0o644, (65532, 65532), NONROOT, False),
    ],
)
def test_mode_and_owner_against_the_user(mode: int, owner: tuple[int, int], user: tuple[int, int], runs: bool) -> None:
    found = problems(STATIC, "/app", tree(program(mode, *owner)), user=user)
    if runs:
        assert found == []
    else:
        assert found == [
            f"/app (mode {mode:04o}, owner {owner[0]}:{owner[1]}) cannot be executed by user {user[0]}:{user[1]}"
        ]


def test_supplementary_groups_from_etc_group() -> None:
    base = users(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
        "root:x:0:\nbroken line\napps:x:1500:someone,nonroot\nnonroot:x:65532:\n",
    )
    in_apps = tree(*base, program(0o750, 0, 1500))
    assert problems(STATIC, "/app", in_apps, user=NONROOT) == []
    not_listed = tree(*base, program(0o750, 0, 1501))
    assert problems(STATIC, "/app", not_listed, user=NONROOT) == [
        "/app (mode 0750, owner 0:1501) cannot be executed by user 65532:65532"
    ]
    # membership is by the name /etc/passwd gives the uid: another uid in no group gets other bits
    assert problems(STATIC, "/app", in_apps, user=(1000, 1000)) != []
    # without /etc/group (or /etc/passwd) there are no supplementary groups
    assert problems(STATIC, "/app", tree(base[0], program(0o750, 0, 1500)), user=NONROOT) != []


def test_directories_on_the_way_must_be_searchable() -> None:
    t = tree(("opt/app", Node("dir", 0o700)), program(0o755, path="opt/app/prog"))
    assert problems(STATIC, "/opt/app/prog", t, user=NONROOT) == [
        "/opt/app/prog cannot be reached by user 65532:65532: the directory /opt/app "
        "(mode 0700, owner 0:0) may not be entered"
    ]
    assert problems(STATIC, "/opt/app/prog", t) == []  # root passes any directory
    shared = tree(("opt/app", Node("dir", 0o750, 0, 65532)), program(0o755, path="opt/app/prog"))
    assert problems(STATIC, "/opt/app/prog", shared, user=NONROOT) == []


def test_through_a_symlink_the_target_is_judged() -> None:
    t = tree(("usr/bin/real", Node("file", 0o700)), ("app", Node("symlink", 0o777, target="usr/bin/real")))
    assert problems(STATIC, "/app", t, user=NONROOT) == [
        "/app (mode 0700, owner 0:0) cannot be executed by user 65532:65532"
    ]


def test_a_script_must_be_readable_too() -> None:
    t = tree(("bin/sh", Node("file", 0o755)), program(0o711))
    assert problems(SCRIPT, "/app", t, user=NONROOT) == [
        "/app (mode 0711, owner 0:0) cannot be read by user 65532:65532, and a script's interpreter must read it"
    ]
    assert problems(SCRIPT, "/app", t) == []  # root reads anything
    assert problems(STATIC, "/app", t, user=NONROOT) == []  # a binary needs no read bit


def test_each_cause_is_one_message() -> None:
    assert problems(SCRIPT, "/app", tree(program(0o644))) == [
        "/app (mode 0644) is not executable",
        "/app is a script for /bin/sh, which the image does not have",
    ]


def test_a_program_not_in_the_tree_is_not_judged_by_mode() -> None:
    assert problems(STATIC, "/app", FileTree(), user=NONROOT) == []


# --- missing libraries, named once and in good grammar -----------------------------------------


def test_one_missing_library() -> None:
    t = tree(("lib64/ld-linux-x86-64.so.2", Node("file")), program())
    assert problems(DYNAMIC, "/app", t) == [
        "/app is dynamically linked and cannot start in this image: the library libc.so.6 is missing"
    ]


def test_several_missing_libraries() -> None:
    info = BinaryInfo(
        format="elf", architecture="amd64", bits=64, interpreter="/lib64/ld-linux-x86-64.so.2", needed=("a.so", "b.so")
    )
    t = tree(("lib64/ld-linux-x86-64.so.2", Node("file")), program())
    assert problems(info, "/app", t) == [
        "/app is dynamically linked and cannot start in this image: the libraries a.so, b.so are missing"
    ]


def test_the_loader_is_not_listed_again_as_a_library() -> None:
    info = BinaryInfo(
        format="elf",
        architecture="amd64",
        bits=64,
        interpreter="/lib64/ld-linux-x86-64.so.2",
        needed=("ld-linux-x86-64.so.2", "libc.so.6"),
    )
    assert problems(info, "/app", tree(program())) == [
        "/app is dynamically linked and cannot start in this image: the ELF loader "
        "/lib64/ld-linux-x86-64.so.2 is missing; the library libc.so.6 is missing"
    ]


def test_a_present_loader_satisfies_a_needed_entry_naming_it() -> None:
    """The loader is in memory already: found at its PT_INTERP path even outside the search path."""
    info = BinaryInfo(
        format="elf", architecture="amd64", bits=64, interpreter="/opt/rt/ld.so.1", needed=("ld.so.1", "libc.so.6")
    )
    t = tree(("opt/rt/ld.so.1", Node("file")), ("lib/libc.so.6", Node("file")), program())
    assert problems(info, "/app", t) == []
