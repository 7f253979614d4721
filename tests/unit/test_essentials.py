"""``--with users`` merged into a base's users, and ``--add`` sources that collide."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeroimage.customize import MAX_ID, user_ids
from zeroimage.errors import UsageError
from zeroimage.essentials import (
    GROUP,
    PASSWD,
    add_entries,
    check_collisions,
    combine_adds,
    essential_entries,
    merge_group,
    merge_passwd,
    parse_chown,
)
from zeroimage.layers.entries import Entry
from zeroimage.progress import NullReporter
from zeroimage.rootfs import FileTree, Node

NONROOT = "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"
NOBODY = "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin"


class Warnings(NullReporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        self.messages.append(message)


# --- merge_passwd / merge_group ---------------------------------------------------------------


def test_merge_keeps_the_base_and_adds_what_is_free() -> None:
    base = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
    merged, warnings = merge_passwd(base, PASSWD)
    assert merged == base + NONROOT + "\n" + NOBODY + "\n"
    assert warnings == []  # root is in the base under its own name and uid: no clash


def test_a_uid_the_base_uses_keeps_the_base_entry() -> None:
    base = "root:x:0:0::/root:/bin/sh\nfoo:x:65532:65532::/home/foo:/bin/sh\n"
    merged, warnings = merge_passwd(base, PASSWD)
    assert merged == base + NOBODY + "\n"
    assert warnings == ["the base's /etc/passwd has uid 65532 as 'foo'; keeping it, not adding nonroot"]


def test_a_name_the_base_uses_for_another_uid_keeps_the_base_entry() -> None:
    base = "root:x:0:0::/root:/bin/sh\nnonroot:x:1000:1000::/home/nonroot:/bin/sh\n"
    merged, warnings = merge_passwd(base, PASSWD)
    assert merged == base + NOBODY + "\n"
    assert warnings == [
        "the base's /etc/passwd has the user 'nonroot' as uid 1000; keeping it, not adding nonroot (uid 65532)"
    ]


def test_a_base_that_has_all_of_ours_is_returned_as_it_is() -> None:
    base = PASSWD.replace("root:x:0:0:root:/root:/sbin/nologin", "root:x:0:0:Super User:/root:/bin/zsh")
    assert merge_passwd(base, PASSWD) == (base, [])


def test_malformed_base_lines_are_kept_verbatim_and_in_order() -> None:
    base = (
        "# a comment:x:65534:\n"
        "\n"
        "garbage\n"
        "half:x\n"
        "root:x:0:0::/root:/bin/sh\n"
        "+::::::\n"
        "weird:x:notanumber:1::/:/bin/sh\r\n"
        "ünïcode:x:65534:65534::/:/bin/sh"  # no newline at the end; takes nobody's uid
    )
    merged, warnings = merge_passwd(base, PASSWD)
    assert merged == base + "\n" + NONROOT + "\n"
    assert merged.splitlines()[: len(base.splitlines())] == base.splitlines()
    assert warnings == ["the base's /etc/passwd has uid 65534 as 'ünïcode'; keeping it, not adding nobody"]


def test_the_ids_of_a_comment_do_not_count() -> None:
    merged, warnings = merge_passwd("#nonroot:x:65532:65532::/:/bin/sh\n", PASSWD)
    assert merged.count("\n") == 4 and warnings == []


def test_an_empty_base_gets_ours() -> None:
    assert merge_passwd("", PASSWD) == (PASSWD, [])
    assert merge_group("", GROUP) == (GROUP, [])


def test_merge_group() -> None:
    base = "root:x:0:\nstaff:x:50:alice,bob\nfoo:x:65532:\nnobody:x:1234:\n"
    merged, warnings = merge_group(base, GROUP)
    assert merged == base  # root identical; nonroot's gid and nobody's name taken
    assert warnings == [
        "the base's /etc/group has gid 65532 as 'foo'; keeping it, not adding nonroot",
        "the base's /etc/group has the group 'nobody' as gid 1234; keeping it, not adding nobody (gid 65534)",
    ]
    merged, warnings = merge_group("root:x:0:\nstaff:x:50:alice,bob", GROUP)
    assert merged == "root:x:0:\nstaff:x:50:alice,bob\nnonroot:x:65532:\nnobody:x:65534:\n" and warnings == []


def test_ours_must_be_well_formed() -> None:
    with pytest.raises(ValueError):
        merge_passwd("", "nonroot:x\n")


# --- --with users on a base ------------------------------------------------------------------------


def by_path(entries: list[Entry]) -> dict[str, Entry]:
    return {e.path: e for e in entries}


def test_with_users_on_scratch() -> None:
    entries = by_path(essential_entries(["users"]))
    assert entries["/etc/passwd"].data == PASSWD.encode()
    assert entries["/etc/group"].data == GROUP.encode()
    assert set(entries) == {"/etc/passwd", "/etc/group", "/root", "/home/nonroot"}
    assert (entries["/home/nonroot"].uid, entries["/home/nonroot"].mode) == (65532, 0o700)


def test_with_users_merges_into_the_base_and_keeps_its_mode_and_owner() -> None:
    base = FileTree()
    base.apply(
        [
            ("etc/passwd", Node("file", 0o640, 0, 42, content="root:x:0:0::/root:/bin/sh\nfoo:x:65532:65532::/:/\n")),
            ("etc/group", Node("file", 0o644, content="root:x:0:\n")),
        ]
    )
    warnings = Warnings()
    entries = by_path(essential_entries(["users"], base=base, reporter=warnings))
    passwd = entries["/etc/passwd"]
    assert passwd.data == b"root:x:0:0::/root:/bin/sh\nfoo:x:65532:65532::/:/\n" + NOBODY.encode() + b"\n"
    assert (passwd.mode, passwd.uid, passwd.gid) == (0o640, 0, 42)
    assert entries["/etc/group"].data == GROUP.encode()
    assert "/home/nonroot" not in entries  # nonroot was not added: no home for it
    assert "/root" not in entries  # the base's root, not ours
    assert warnings.messages == ["the base's /etc/passwd has uid 65532 as 'foo'; keeping it, not adding nonroot"]


def test_with_users_leaves_a_base_with_everything_alone() -> None:
    base = FileTree()
    base.apply([("etc/passwd", Node("file", content=PASSWD)), ("etc/group", Node("file", content=GROUP))])
    entries = by_path(essential_entries(["users"], base=base))
    assert "/etc/passwd" not in entries and "/etc/group" not in entries


def test_with_users_never_overwrites_a_base_file_it_could_not_read() -> None:
    base = FileTree()
    base.apply([("etc/passwd", Node("file")), ("usr/share/group", Node("file"))])
    base.apply([("etc/group", Node("symlink", target="/usr/share/group"))])
    warnings = Warnings()
    entries = by_path(essential_entries(["users"], base=base, reporter=warnings))
    assert "/etc/passwd" not in entries and "/etc/group" not in entries
    assert "/home/nonroot" not in entries
    assert warnings.messages == [
        "the base's /etc/passwd could not be read; keeping it as it is, adding no entries to it",
        "the base's /etc/group could not be read; keeping it as it is, adding no entries to it",
    ]


# --- --add collisions ----------------------------------------------------------------------------


def f(path: str) -> Entry:
    return Entry(path, "file", 0o644, data=b"x", size=1)


def d(path: str, mode: int = 0o755, uid: int = 0) -> Entry:
    return Entry(path, "dir", mode, uid=uid)


def link(path: str) -> Entry:
    return Entry(path, "symlink", 0o777, target="/elsewhere")


A, B = "--add ./a:/srv", "--add ./b:/srv"


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ([f("/srv/x")], [f("/srv/x")], f"{A} and {B} both put something at /srv/x: a file and a file"),
        ([d("/srv/x")], [f("/srv/x")], f"{A} and {B} both put something at /srv/x: a directory and a file"),
        ([f("/srv/x")], [d("/srv/x")], f"{A} and {B} both put something at /srv/x: a file and a directory"),
        ([link("/srv/x")], [link("/srv/x")], f"{A} and {B} both put something at /srv/x: a symlink and a symlink"),
        ([f("/srv")], [f("/srv/x")], f"{A} puts a file at /srv, where {B} needs a directory for /srv/x"),
        ([link("/srv")], [d("/srv/x")], f"{A} puts a symlink at /srv, where {B} needs a directory for /srv/x"),
        ([f("/srv/a/b/c")], [f("/srv/a")], f"{B} puts a file at /srv/a, where {A} needs a directory"),
    ],
)
def test_colliding_sources(first: list[Entry], second: list[Entry], message: str) -> None:
    with pytest.raises(UsageError) as info:
        check_collisions([(A, first), (B, second)], ["/app"])
    assert info.value.message == message and info.value.exit_code == 2


@pytest.mark.parametrize(
    ("entries", "program", "message"),
    [
        ([f("/app")], "/app", f"{A} puts a file at /app, the program's path"),
        ([d("/app")], "/app", f"{A} puts a directory at /app, the program's path"),
        ([f("/app/config.json")], "/app", f"{A} puts /app/config.json below /app, the program's path"),
        (
            [f("/usr/local/bin")],
            "/usr/local/bin/app",
            f"{A} puts a file at /usr/local/bin, where the program /usr/local/bin/app needs a directory",
        ),
        (
            [d("/usr/local/bin"), f("/usr/local/bin/app")],
            "/usr/local/bin/app",
            f"{A} puts a file at /usr/local/bin/app, the program's path",
        ),
    ],
)
def test_sources_colliding_with_the_program(entries: list[Entry], program: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        check_collisions([(A, entries)], [program])
    assert info.value.message == message


def test_shared_directories_merge_later_wins() -> None:
    first = [d("/srv", 0o750), f("/srv/a")]
    second = [d("/srv", 0o700, uid=1000), f("/srv/b"), d("/srv/sub"), f("/srv/sub/c")]
    check_collisions([(A, first), (B, second)], ["/usr/local/bin/app"])  # no error
    combined = combine_adds([(A, first), (B, second)], ["/usr/local/bin/app"])
    assert [e.path for e in combined] == ["/srv", "/srv/a", "/srv/b", "/srv/sub", "/srv/sub/c"]
    assert (combined[0].mode, combined[0].uid) == (0o700, 1000)


def test_program_in_an_added_directory_is_fine() -> None:
    check_collisions(
        [(A, [d("/usr"), d("/usr/local"), d("/usr/local/bin"), f("/usr/local/bin/tool")])], ["/usr/local/bin/app"]
    )


def test_collisions_of_real_trees(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name / "static").mkdir(parents=True)
        (tmp_path / name / "static" / "index.html").write_text(name)
    (tmp_path / "b" / "static" / "only-b.css").write_text("b")
    a = ("--add ./a:/srv", add_entries(tmp_path / "a", "/srv"))
    b = ("--add ./b:/srv", add_entries(tmp_path / "b", "/srv"))
    with pytest.raises(UsageError, match=r"^--add ./a:/srv and --add ./b:/srv both put something at /srv/static/index"):
        check_collisions([a, b], ["/app"])
    (tmp_path / "b" / "static" / "index.html").unlink()
    b = ("--add ./b:/srv", add_entries(tmp_path / "b", "/srv"))
    paths = [e.path for e in combine_adds([a, b], ["/app"])]
    assert sorted(paths) == ["/srv", "/srv/static", "/srv/static/index.html", "/srv/static/only-b.css"]
    assert len(paths) == len(set(paths))


def test_parse_chown_takes_ascii_digits_only() -> None:
    assert parse_chown("1000:2000") == (1000, 2000) and parse_chown("7") == (7, 7)
    for bad in ("²", "1:²", "x", "1:x"):
        with pytest.raises(UsageError, match="expected numeric UID"):
            parse_chown(bad)


def test_parse_chown_takes_every_id_user_takes() -> None:
    """Leading zeros: ``--user 000000000001`` runs as uid 1, and ``--chown`` takes the same id
    (before: refused for having more digits than the largest id); above the largest id, both
    refuse."""
    tree = FileTree()
    assert user_ids("000000000001:0000000000002", tree) == (1, 2)
    assert parse_chown("000000000001:0000000000002") == (1, 2)
    assert parse_chown(f"{MAX_ID}") == (MAX_ID, MAX_ID)
    with pytest.raises(UsageError, match="expected numeric UID"):
        parse_chown(f"{MAX_ID + 1}")
    with pytest.raises(UsageError, match="is not a number from 0"):
        user_ids(f"{MAX_ID + 1}", tree)
