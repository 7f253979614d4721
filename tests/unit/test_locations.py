"""Locations (``oci:DIR:TAG``, ``docker-archive:PATH:NAME:TAG`` …) as the user writes them: the OCI
tag grammar of the image-spec, Docker's for docker-archive names, and whatever text comes in
raising nothing but a one-line usage error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zeroimage.errors import UsageError, ZeroimageError
from zeroimage.transports.locations import (
    Inputs,
    Location,
    archive_location,
    check_outputs,
    parse_location,
    parse_output,
    parse_source,
)

#: The documented bound on an OCI tag (README: "What zeroimage refuses").
MAX_OCI_TAG = 512

#: annotations.md, written out again here (not imported) so that the test checks the code.
SEPARATOR = r"(?:[-._:@+]|--)"
COMPONENT = rf"[A-Za-z0-9]+(?:{SEPARATOR}[A-Za-z0-9]+)*"
SPEC_REF_NAME = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*", re.ASCII)
SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "tag", ["latest", "v1.2.3", "a:b", "a@b", "a+b", "a--b", "A.B_C-D", "example.com/team/app:v1", "a" * MAX_OCI_TAG]
)
@pytest.mark.parametrize("transport", ["oci:lay", "oci-archive:x.tar"])
def test_oci_tags_of_the_grammar_are_taken_as_written(transport: str, tag: str) -> None:
    location = parse_output(f"{transport}:{tag}")
    assert location.tag == tag
    assert parse_output(str(location)) == location


@pytest.mark.parametrize(
    ("tag", "shown"),
    [
        ("a..b", "'a..b'"),
        ("-x", "'-x'"),
        ("x-", "'x-'"),
        ("a__b", "'a__b'"),
        ("a---b", "'a---b'"),
        ("a b", "'a b'"),
        ("a\nb", r"'a\nb'"),
        ("a\x1b[2Jb", r"'a\x1b[2Jb'"),
        ("café", "'café'"),
        ("/x", "'/x'"),
        ("a//b", "'a//b'"),
        ("../x", "'../x'"),
        ("a/", "'a/'"),
    ],
)
@pytest.mark.parametrize("parse", [parse_output, parse_source])
def test_oci_tags_outside_the_grammar_are_usage_errors_that_name_them(parse: object, tag: str, shown: str) -> None:
    for transport in ("oci:lay", "oci-archive:x.tar"):
        with pytest.raises(UsageError) as refused:
            parse(f"{transport}:{tag}")  # type: ignore[operator]
        message = str(refused.value)
        assert f"the tag {shown} is not an OCI reference name" in message
        assert "\n" not in message and "\x1b" not in message


def test_an_absurdly_long_tag_is_refused_without_echoing_it() -> None:
    with pytest.raises(UsageError) as refused:
        parse_output("oci:lay:" + "a" * 100_000)
    assert "100000 characters long, more than 512" in str(refused.value)
    assert len(str(refused.value)) < 400


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"docker-archive:d.tar:app@{SHA}", "not a digest"),
        (f"docker-archive:d.tar:app:v1@{SHA}", "not a digest"),
        (f"docker-daemon:app@{SHA}", "not a digest"),
        ("docker-archive:d.tar:app:a\nb", "white space"),
        ("docker-archive:d.tar:app:" + "t" * 129, "a tag is 1 to 128"),
        ("docker-archive:d.tar:App:v1", "lowercase"),
        ("docker-archive:d.tar:a..b:v1", "path component"),
        ("docker-archive:d.tar:r.io/" + "a" * 251 + ":v1", "longer than 255"),
        ("oci:lay\0x:v1", "NUL"),
        ("x\0.tar", "NUL"),
        ("oci:" + "d" * 5000, "longer than 4095 bytes"),
        ("./" + "f" * 5000, "longer than 4095 bytes"),
    ],
)
def test_docker_names_paths_and_nul_are_checked_before_any_work(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=re.escape(why)):
        parse_output(text)


def test_docker_grammar_is_dockers_own() -> None:
    """A Docker tag may hold ``..`` (``[\\w][\\w.-]{0,127}``): Docker, the registries and skopeo
    take it, and a tag is never a path."""
    assert parse_output("docker-archive:d.tar:app:1..2").tag == "docker.io/library/app:1..2"


@given(st.text(max_size=300))
@example("oci:lay:a\0b")
@example("oci:lay:" + "a-" * 3000 + "!")
@example("oci:lay:" + "a." * 3000)
@example("docker-archive:x:" + "a:" * 3000)
def test_any_text_gives_a_location_or_a_usage_error(text: str) -> None:
    """Whatever is written after -o or --from: a location, or one line of usage error; an OCI
    tag accepted is one of the image-spec's grammar (so skopeo and umoci open it)."""
    for parse in (parse_output, lambda t: parse_location(t, "docker")):
        try:
            location = parse(text)
        except ZeroimageError as exc:
            assert isinstance(exc, UsageError)
            assert "\n" not in str(exc)
            continue
        if location.transport in ("oci", "oci-archive") and location.tag is not None:
            assert SPEC_REF_NAME.fullmatch(location.tag) and len(location.tag) <= MAX_OCI_TAG


@given(st.from_regex(SPEC_REF_NAME, fullmatch=True).filter(lambda t: len(t) <= MAX_OCI_TAG))
def test_every_tag_of_the_grammar_round_trips(tag: str) -> None:
    location = parse_output(f"oci:some/dir:{tag}")
    assert location.tag == tag
    assert parse_output(str(location)) == location


@pytest.mark.parametrize("path", ["p:q.tar", "x:-y.tar", "dir/a:b:c.tar", "/abs/p:q.tar"])
def test_an_archive_path_is_never_split_at_a_colon(path: str) -> None:
    """For ``--from-archive PATH`` and the default ``./PROGRAM.tar``: the whole text is the
    path (``oci-archive:p:q.tar`` would be the file ``p`` tagged ``q.tar``)."""
    location = archive_location(path)
    assert (location.transport, str(location.path), location.tag) == ("oci-archive", path, None)
    for bad in ("a\0b.tar", "f" * 5000, ""):
        with pytest.raises(UsageError):
            archive_location(bad)


@pytest.mark.parametrize("text", ["\ud800.tar", "oci:lay\udfff", "docker-archive:d\ud800.tar:app:v1", "./x\ud800"])
def test_a_name_no_file_can_have_is_a_usage_error_not_an_encoding_error(text: str) -> None:
    """A lone surrogate, which only Python code can pass (a command line's arguments always
    encode): before, UnicodeEncodeError escaped from the path's length check."""
    for parse in (parse_output, parse_source, archive_location, lambda t: parse_location(t, "oci-archive")):
        with pytest.raises(UsageError) as refused:
            parse(text)
        assert refused.value.message == (
            f"invalid location {text!r}: it holds a character no file name can (a lone surrogate)"
        )


@pytest.mark.parametrize(
    ("inputs", "digest_file", "named"),
    [
        (Inputs(programs=[Path("a\ud800pp")]), None, "the program 'a\\ud800pp'"),
        (Inputs(added=[Path("c\ud800nf")]), None, "--add 'c\\ud800nf'"),
        (Inputs(), Path("d\ud800"), "--digest-file 'd\\ud800'"),
        (Inputs(base=Location("oci-archive", path=Path("b\ud800.tar"))), None, "the base 'b\\ud800.tar'"),
    ],
)
def test_local_paths_no_file_can_have_are_refused_before_any_work(
    inputs: Inputs, digest_file: Path | None, named: str
) -> None:
    with pytest.raises(UsageError) as refused:
        check_outputs([archive_location("out.tar")], digest_file, inputs, terminal=False)
    assert refused.value.message == f"{named}: it holds a character no file name can (a lone surrogate)"


def test_an_empty_output_is_no_path() -> None:
    """(Before: the archive ``.``, refused only later as a directory.)"""
    with pytest.raises(UsageError) as refused:
        parse_output("")
    assert refused.value.message == "invalid location '': no path"
