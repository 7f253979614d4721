"""The build's options, declared once: the command's flags and the library's keywords are made
from the one declaration, and a Python caller's wrong type or value is one UsageError naming the
keyword — never a silent misreading (``cmd="serve"`` as five arguments) or an internal error."""

from __future__ import annotations

import inspect
import pydoc
from pathlib import Path

import click
import pytest

import zeroimage
from zeroimage.cli.commands import build as build_command
from zeroimage.errors import UsageError
from zeroimage.options import BuildOptions, options_fields


def parse(**given: object) -> BuildOptions:
    return BuildOptions.parse(programs=["app"], **given)


def test_every_option_is_a_flag_and_a_keyword_from_one_declaration() -> None:
    flags = {p.name: p for p in build_command.params if isinstance(p, click.Option)}
    keywords = inspect.signature(zeroimage.build).parameters
    for name, spec, _ in options_fields():
        assert name in keywords, name
        if spec.flags:
            assert flags[name].opts + flags[name].secondary_opts == list(spec.flags), name
            assert flags[name].help == spec.help
    declared = {name for name, _, _ in options_fields()}
    assert set(flags) - declared == {"as_json", "quiet", "verbose"}  # what the command prints


def test_help_of_build_documents_every_keyword() -> None:
    text = pydoc.render_doc(zeroimage.build, renderer=pydoc.plaintext)
    for name, spec, _ in options_fields():
        assert f"{name} : {spec.accepts}" in text, name
        assert spec.help.split(";")[0][:40] in " ".join(text.split()), name
    assert "--from SOURCE" in text and "outputs : list of str or os.PathLike" in text


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"outputs": "x.tar"}, "outputs: expected a list of paths, not str 'x.tar'; write outputs=[...]"),
        ({"cmd": "serve"}, "cmd: expected a list of str, not str 'serve'"),
        ({"env": [1, 2]}, "env: expected a str, not int 1"),
        ({"env": {"A": 1}}, "env: expected a str, not int 1"),
        ({"source_date_epoch": "1"}, "source_date_epoch: expected an int, not str '1'"),
        ({"source_date_epoch": True}, "source_date_epoch: expected an int, not bool True"),
        ({"strict": "yes"}, "strict: expected True or False, not str 'yes'"),
        ({"platform": "linux/amd64"}, "platform: expected a list of str, not str"),
        ({"push": ("a", b"b")}, "push: expected a list of str, not one holding bytes"),
        ({"digest_file": b"d"}, "digest_file: expected a path (str or os.PathLike), not bytes"),
        ({"digest_file": "a\0b"}, "digest_file: 'a\\x00b' holds a NUL character"),
        ({"expose": [True]}, "expose: expected a list of str or int, not one holding bool"),
        ({"add": [("a",)]}, "add: expected 'SRC:DEST' strings or (source path, destination) pairs"),
        ({"colour": "red"}, "unknown option 'colour'"),
        ({"compression": "brotli"}, "--compression 'brotli': choose gzip, zstd or none"),
        ({"compression_level": 9}, "gzip compression level must be from 0 to 3"),
    ],
)
def test_a_wrong_type_or_value_names_its_keyword(given: dict[str, object], said: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse(**given)
    assert said in refused.value.message
    assert "\n" not in refused.value.message


def test_programs_take_one_path_or_a_list_of_str_or_path_but_never_bytes() -> None:
    assert BuildOptions.parse(programs="app").programs == (Path("app"),)
    assert BuildOptions.parse(programs=Path("app")).programs == (Path("app"),)
    assert BuildOptions.parse(programs=["a", Path("b")]).programs == (Path("a"), Path("b"))
    with pytest.raises(UsageError, match="programs: expected a path"):
        BuildOptions.parse(programs=[b"x"])
    with pytest.raises(UsageError, match="no program given"):
        BuildOptions.parse(programs=[])


def test_paths_may_be_path_objects_wherever_a_path_is_taken(tmp_path: Path) -> None:
    options = parse(
        outputs=[tmp_path / "a:b.tar", "oci:layout"],
        digest_file=tmp_path / "d",
        from_archive=tmp_path / "base.tar",
        add=[(tmp_path / "conf", "/etc/conf"), "static:/srv"],
    )
    archive, layout = options.outputs
    assert (archive.transport, archive.path) == ("oci-archive", tmp_path / "a:b.tar")  # a path object is a path
    assert (layout.transport, layout.path) == ("oci", Path("layout"))  # a str keeps its transport syntax
    assert options.digest_file == tmp_path / "d"
    assert options.source is not None and options.source.path == tmp_path / "base.tar"
    assert options.add == ((tmp_path / "conf", "/etc/conf"), (Path("static"), "/srv"))


def test_mappings_and_key_value_lists_are_the_same_pairs() -> None:
    assert parse(env={"A": "1", "B": "$A"}).env == parse(env=["A=1", "B=$A"]).env == (("A", "1"), ("B", "$A"))
    assert parse(labels={"k": "v"}).config.labels == (("k", "v"),)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("abc", "SOURCE_DATE_EPOCH must be a whole number of seconds, not 'abc'"),
        ("-5", "SOURCE_DATE_EPOCH must be a whole number of seconds"),
        ("1e9", "SOURCE_DATE_EPOCH must be a whole number of seconds"),
        ("١٢٣", "SOURCE_DATE_EPOCH must be a whole number of seconds"),  # digits, but not ASCII
        ("99999999999999999999999999", "after the year 9999"),
        ("1700000000000", "after the year 9999"),  # milliseconds
    ],
)
def test_a_malformed_or_huge_source_date_epoch_is_one_line(
    value: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(UsageError, match=said):
        parse()
    with pytest.raises(UsageError, match="after the year 9999"):
        parse(source_date_epoch=10**30)


def test_source_date_epoch_comes_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", " 1700000000 ")
    assert parse().source_date_epoch == 1700000000
    assert parse(source_date_epoch=5).source_date_epoch == 5
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert parse().source_date_epoch is None


def test_platform_twice_for_one_program_says_so() -> None:
    with pytest.raises(UsageError) as refused:
        parse(platform=["linux/amd64", "linux/arm64"])
    assert refused.value.message == (
        "--platform is given 2 times (linux/amd64, linux/arm64) for one program: an image of several "
        "platforms takes one binary per platform (--platform OS/ARCH=PATH for each)"
    )
    with pytest.raises(UsageError, match="no program after '='"):
        parse(platform=["linux/amd64="])


@pytest.mark.parametrize("output", ["docker-archive:app.tar", "docker-daemon:app:v1"])
def test_zstd_is_refused_for_docker_outputs(output: str) -> None:
    with pytest.raises(UsageError, match="cannot carry zstd layers: docker load"):
        parse(outputs=[output], compression="zstd")
    with pytest.raises(UsageError, match="--format docker cannot carry zstd"):
        parse(push=["localhost:5000/a:b"], compression="zstd", format="docker")
    assert parse(outputs=["oci-archive:x.tar"], compression="zstd").layer.media_type.endswith("+zstd")


def test_options_not_given_keep_their_defaults() -> None:
    options = parse()
    assert (options.format, options.compression, options.pull, options.target.name) == ("oci", "gzip", "missing", "")
    assert [str(d) for d in options.destinations] == ["oci-archive:app.tar"]  # ./PROGRAM.tar
    assert parse(target="lambda").target.name == "lambda"
