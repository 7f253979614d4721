"""Dockerfile semantics of the config flags: ``--env`` expansion as ENV does it, and users
resolved to the numeric ids a runtime will use."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroimage.customize import ConfigChanges, apply_changes, expand_env, resolve_user, user_ids
from zeroimage.errors import UsageError
from zeroimage.essentials import GROUP, PASSWD, add_entries, merge_passwd
from zeroimage.oci import ImageConfig, Platform
from zeroimage.rootfs import FileTree, Node

ENV = {"A": "1", "EMPTY": "", "PATH": "/usr/bin:/bin", "ÄNV": "ü", "_x9": "under"}


# --- expand_env ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("$A", "1"),
        ("${A}", "1"),
        ("x$A.y", "x1.y"),
        ("/opt/bin:$PATH", "/opt/bin:/usr/bin:/bin"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("a${UNSET}b", "ab"),
        # a $ that starts no name stays
        ("$", "$"),
        ("cost: 5$", "cost: 5$"),
        ("$/x", "$/x"),
        ("$ x", "$ x"),
        ("$}", "$}"),
        # names: letters (unicode too), digits, _; $1 and $@ are names that are never set
        ("$ÄNV", "ü"),
        ("${ÄNV}!", "ü!"),
        ("$_x9-", "under-"),
        ("$A_", ""),
        ("$1x", "x"),
        ("$12", ""),
        ("$$", ""),
        ("$@", ""),
        # defaults and alternatives, with and without the colon
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${A:-d}", "1"),
        ("${UNSET-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET:+alt}", ""),
        ("${EMPTY:+alt}", ""),
        ("${A:+alt}", "alt"),
        ("${EMPTY+alt}", "alt"),
        ("${A:-}", "1"),
        ("${UNSET:-}", ""),
        ("${A:?}", "1"),
        ("${EMPTY?}", ""),
        # nesting
        ("${UNSET:-${A}}", "1"),
        ("${UNSET:-${ALSO:-deep $A}}", "deep 1"),
        ("${A:+[${PATH}]}", "[/usr/bin:/bin]"),
        ("${UNSET:-{x}}", "{x}"),  # the first } closes, as in BuildKit; the second is text
        ("${UNSET:-a\\}b}", "a}b"),
        ("${UNSET:-ü€😀}", "ü€😀"),
        # backslashes: \$ and \\ escape, others stay; quotes are kept
        ("\\$A", "$A"),
        ("\\${A}", "${A}"),
        ("\\\\$A", "\\1"),
        ("C:\\path\\n", "C:\\path\\n"),
        ("trailing\\", "trailing\\"),
        ("\\}", "\\}"),
        ("'$A' \"$A\"", "'1' \"1\""),
        ('{"key": "$A"}', '{"key": "1"}'),
        # an expanded value is not expanded again
        ("${UNSET:-\\$A}", "$A"),
    ],
)
def test_expand_env(value: str, expected: str) -> None:
    assert expand_env(value, ENV) == expected


def test_values_are_not_expanded_twice() -> None:
    assert expand_env("$X", {"X": "$A ${A}"}) == "$A ${A}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${", "a '${' has no closing '}' (at character 1)"),
        ("ab${A", "a '${' has no closing '}' (at character 3)"),
        ("${A:-x", "a '${' has no closing '}' (at character 1)"),
        ("${A:-${B}", "a '${' has no closing '}' (at character 1)"),
        ("${A:", "a '${' has no closing '}' (at character 1)"),
        ("${}", "bad substitution: '${' must be followed by a variable name (at character 1)"),
        ("x${:-d}", "bad substitution: '${' must be followed by a variable name (at character 2)"),
        ("${{A}}", "bad substitution"),
        ("${A.b}", "bad substitution: unknown operator '.' after ${A"),
        ("${A:=x}", "bad substitution: unknown operator '=' after ${A"),
        ("${A#x}", "the pattern substitution ${A#...} is not supported"),
        ("${A%x}", "the pattern substitution ${A%...} is not supported"),
        ("${A/x/y}", "the pattern substitution ${A/...} is not supported"),
        ("${UNSET?}", "${UNSET}: is not allowed to be unset"),
        ("${EMPTY:?}", "${EMPTY}: is not allowed to be empty"),
        ("${UNSET:?set it first}", "${UNSET}: set it first"),
        ("${A:-" * 40 + "x" + "}" * 40, "substitutions nest more than 32 deep"),
    ],
)
def test_malformed_substitutions(value: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        expand_env(value, ENV)
    assert message in info.value.message


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(UsageError, match="nest more than"):
        expand_env("${A:-" * 100_000, {})


def test_long_values_take_linear_time() -> None:
    value = "$A${A}\\$" * 200_000  # 1.6 MB
    start = time.perf_counter()
    assert expand_env(value, ENV) == "11$" * 200_000
    assert time.perf_counter() - start < 10


@given(st.text(alphabet=st.sampled_from("$\\{}:-+?#%/AB_1 é'\"")))
def test_any_value_expands_or_is_one_usage_error(value: str) -> None:
    try:
        expanded = expand_env(value, {"A": "x", "B": ""})
    except UsageError as exc:
        assert exc.message and exc.exit_code == 2
    else:
        assert isinstance(expanded, str)


@given(st.text().filter(lambda t: "$" not in t and "\\" not in t))
def test_text_without_dollar_or_backslash_is_unchanged(value: str) -> None:
    assert expand_env(value, ENV) == value


# --- --env in apply_changes ---------------------------------------------------------------------


def base_config(*env: str) -> ImageConfig:
    return ImageConfig.scratch(Platform("linux", "amd64")).with_container(Env=list(env))


def env_of(config: ImageConfig) -> list[str]:
    return list(config.container["Env"])


def test_env_extends_the_base() -> None:
    config = apply_changes(
        base_config("PATH=/usr/bin:/bin", "HOME=/root"), ConfigChanges(env=(("PATH", "/opt/bin:$PATH"),)), None
    )
    assert env_of(config) == ["PATH=/opt/bin:/usr/bin:/bin", "HOME=/root"]  # in its place, as BuildKit's ENV


def test_env_replaces_a_base_variable_where_it_stands_and_adds_a_new_one_last() -> None:
    """BuildKit's ENV (dockerfile2llb addEnv): the first entry of the key takes the new value in
    its place; a key the image lacks goes at the end."""
    base = base_config("A=1", "B=2", "C=3", "B=dup")
    config = apply_changes(base, ConfigChanges(env=(("B", "x"), ("D", "4"), ("A", "$B"))), None)
    assert env_of(config) == ["A=x", "B=x", "C=3", "B=dup", "D=4"]


def test_each_env_sees_the_ones_before_it() -> None:
    changes = ConfigChanges(env=(("A", "1"), ("B", "$A-${A}"), ("C", "${B:+set}"), ("D", "${NOPE:-$C}")))
    assert env_of(apply_changes(base_config(), changes, None)) == ["A=1", "B=1-1", "C=set", "D=set"]


def test_a_key_given_twice_replaces_and_sees_its_earlier_value() -> None:
    changes = ConfigChanges(env=(("A", "1"), ("B", "b"), ("A", "$A:2")))
    assert env_of(apply_changes(base_config("A=0", "Z=z"), changes, None)) == ["A=1:2", "Z=z", "B=b"]


def test_base_env_entries_without_a_value() -> None:
    changes = ConfigChanges(env=(("X", "[$FLAG][${FLAG-unset}][$EQ]"),))
    config = apply_changes(base_config("FLAG", "EQ=a=b"), changes, None)
    assert env_of(config) == ["FLAG", "EQ=a=b", "X=[][][a=b]"]


def test_a_bad_env_names_the_key_and_never_the_value() -> None:
    changes = ConfigChanges(env=(("TOKEN", "s3cr3t-${"),))
    with pytest.raises(UsageError) as info:
        apply_changes(base_config(), changes, None)
    assert info.value.message == "--env TOKEN: a '${' has no closing '}' (at character 8)"
    assert "s3cr3t" not in str(info.value)


# --- users --------------------------------------------------------------------------------------


def tree_with(passwd: str | None, group: str | None = None) -> FileTree:
    t = FileTree()
    files = [("etc/passwd", passwd), ("etc/group", group)]
    t.apply([(path, Node("file", content=text)) for path, text in files if text is not None])
    return t


PASSWD_TEXT = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "broken\n"
    "app:x:1000:1001::/srv:/bin/sh\n"
    "bad:x:abc:12::/:/bin/sh\n"
    "huge:x:99999999999:0::/:/bin/sh\n"
    "ünï:x:1200:1200::/:/bin/sh\n"
)
GROUP_TEXT = "root:x:0:\nstaff:x:50:app\nodd:x:nope:\n"


@pytest.mark.parametrize(
    ("user", "ids"),
    [
        ("root", (0, 0)),
        ("app", (1000, 1001)),
        ("app:staff", (1000, 50)),
        ("app:7", (1000, 7)),
        ("ünï", (1200, 1200)),
        ("1000", (1000, 1001)),  # numeric and in /etc/passwd: its gid
        ("4242", (4242, 0)),  # numeric and unknown: root's group, as runc does
        ("4242:staff", (4242, 50)),
        ("4242:4243", (4242, 4243)),
        ("0", (0, 0)),
    ],
)
def test_user_ids(user: str, ids: tuple[int, int]) -> None:
    assert user_ids(user, tree_with(PASSWD_TEXT, GROUP_TEXT)) == ids


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("ghost", "--user: no user 'ghost' in the image's /etc/passwd"),
        ("app:ghosts", "--user: no group 'ghosts' in the image's /etc/group"),
        ("app:odd", "--user: the gid of group 'odd' in the image's /etc/group is not a number from 0 to"),
        ("bad", "--user: the uid of 'bad' in the image's /etc/passwd is not a number"),
        ("huge", "--user: the uid of 'huge' in the image's /etc/passwd is not a number"),
        ("99999999999", "--user: uid 99999999999 is not a number from 0 to 2147483647"),
        ("²", "--user: no user '²'"),  # not a number: a name, and unknown
        ("1000:²", "--user: no group '²'"),
    ],
)
def test_user_ids_errors(user: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        user_ids(user, tree_with(PASSWD_TEXT, GROUP_TEXT))
    assert info.value.message.startswith(message)


def test_user_ids_without_passwd_hints_at_with_users() -> None:
    with pytest.raises(UsageError, match=r"\(add --with users for root, nonroot and nobody\)"):
        user_ids("nonroot", FileTree())
    assert user_ids("65532", FileTree()) == (65532, 0)
    assert user_ids("65532:65532", FileTree()) == (65532, 65532)


def test_users_resolve_against_the_merged_files() -> None:
    """The caller adds the merged /etc/passwd to the tree: the base's users and ours resolve."""
    base = "root:x:0:0::/root:/bin/sh\ndeploy:x:1500:1500::/:/bin/sh\n"
    merged, _ = merge_passwd(base, PASSWD)
    t = tree_with(base)
    t.apply([("etc/passwd", Node("file", content=merged)), ("etc/group", Node("file", content=GROUP))])
    assert user_ids("deploy", t) == (1500, 1500)
    assert user_ids("nonroot", t) == (65532, 65532)
    assert user_ids("nobody:nonroot", t) == (65534, 65532)
    assert resolve_user("nonroot", t) == "65532:65532"


def test_users_resolve_against_a_passwd_added_from_the_host(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nsvc:x:900:901::/:/bin/sh\n")
    t = FileTree()
    t.add_entries(add_entries(passwd, "/etc/passwd"))
    assert resolve_user("svc", t) == "900:901"
    assert user_ids("svc", t) == (900, 901)


def test_resolve_user_takes_ascii_ids_only() -> None:
    t = tree_with(PASSWD_TEXT, GROUP_TEXT)
    assert resolve_user("42", t) == "42"
    assert resolve_user("app:50", t) == "1000:50"
    with pytest.raises(UsageError, match="no user '²'"):
        resolve_user("²", t)
    with pytest.raises(UsageError, match="the uid of 'bad' in the image's /etc/passwd is not a number"):
        resolve_user("bad", t)  # never written into the config as "abc:12"
