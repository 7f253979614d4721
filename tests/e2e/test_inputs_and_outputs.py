"""Issue 13: a build never destroys an input, checks every output before any work, reads a
source as what it is, and prints references that skopeo, umoci and Docker open as printed.

Every refusal is checked by its outcome: the exit code, one ``zeroimage: error:`` line, the
whole working folder as it was (a sha256 of every file before and after: no input touched,
no output written) and, where the build also pushes, no request for that repository in the
registry's access log.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MULTIARCH, Zeroimage
from tests.support import images, peers
from tests.support.cli import Home, Result, finish
from tests.support.dockerd import Dockerd
from tests.support.images import directory, text_file
from tests.support.outcomes import digest_in, fingerprint, refused, requests_for
from tests.support.registry import Registry, start_registry

OCI_MANIFEST = images.OCI_MANIFEST
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module; each test pushes to repositories of its own."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


BASE_FILES = [directory("etc"), text_file("etc/motd", "from the base\n")]


def inputs_scene(work: Path) -> None:
    """Every kind of input a build reads, in ``work``: the program ``app`` (and ``app-link`` to
    it), an added file ``conf`` and tree ``site/`` (and ``page-link`` into it), a base archive
    ``base.tar``, a base layout ``L`` (tag latest) and an output layout ``out-layout``."""
    images.tiny_program(work / "app")
    (work / "app-link").symlink_to("app")
    (work / "conf").write_text("key = value\n")
    (work / "site" / "css").mkdir(parents=True)
    (work / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (work / "site" / "css" / "a.css").write_text("body {}\n")
    (work / "page-link").symlink_to("site/index.html")
    images.write_archive(work / "base.tar", [BASE_FILES])
    images.write_layout(work / "L", [BASE_FILES])
    images.write_layout(work / "out-layout", [BASE_FILES], tag="old")


# -- 1. never destroy an input -------------------------------------------------------------------

#: What a build is given, and the output its one error line must name.
DESTROYERS = {
    "o-is-the-program": (["-o", "app"], "app"),
    "o-is-a-symlink-to-the-program": (["-o", "app-link"], "app-link"),
    "digest-file-is-the-program": (["-o", "out.tar", "--digest-file", "app"], "--digest-file app"),
    "o-is-an-added-file": (["--add", "conf:/etc/conf", "-o", "conf"], "oci-archive:conf"),
    "digest-file-is-an-added-file": (
        ["--add", "conf:/etc/conf", "-o", "out.tar", "--digest-file", "conf"],
        "--digest-file conf",
    ),
    "o-is-a-file-in-an-added-tree": (["--add", "site:/srv/www", "-o", "site/css/a.css"], "site/css/a.css"),
    "digest-file-links-into-an-added-tree": (
        ["--add", "site:/srv/www", "-o", "out.tar", "--digest-file", "page-link"],
        "--digest-file page-link",
    ),
    "layout-over-an-added-tree": (["--add", "site:/srv/www", "-o", "oci:site"], "oci:site"),
    "o-is-the-base-archive": (["--from-archive", "base.tar", "-o", "base.tar"], "oci-archive:base.tar"),
    "docker-archive-over-the-base": (
        ["--from", "base.tar", "-o", "docker-archive:base.tar"],
        "docker-archive:base.tar",
    ),
    "digest-file-is-the-base": (
        ["--from", "oci-archive:base.tar", "-o", "out.tar", "--digest-file", "base.tar"],
        "--digest-file base.tar",
    ),
    "layout-replaces-the-base-image": (["--from", "oci:L", "-o", "oci:L"], "oci:L"),
    "layout-replaces-the-base-tag": (["--from", "oci:L:latest", "-o", "oci:L:latest"], "oci:L:latest"),
    "layout-replaces-a-bare-base-dir": (["--from", "L", "-o", "oci:L:latest"], "oci:L:latest"),
    "digest-file-over-the-base-layout-index": (
        ["--from", "oci:L", "-o", "out.tar", "--digest-file", "L/index.json"],
        "L/index.json",
    ),
    "o-over-the-base-layout-index": (["--from", "oci:L", "-o", "L/index.json"], "L/index.json"),
    "two-outputs-one-file": (["-o", "a.tar", "-o", "docker-archive:./a.tar"], "a.tar"),
    "digest-file-is-an-output": (["-o", "a.tar", "--digest-file", "a.tar"], "--digest-file a.tar"),
    "digest-file-over-an-output-layout-index": (
        ["-o", "oci:out-layout:new", "--digest-file", "out-layout/index.json"],
        "out-layout/index.json",
    ),
}


@pytest.mark.parametrize("args,named", DESTROYERS.values(), ids=DESTROYERS.keys())
def test_an_output_never_overwrites_an_input(
    zeroimage: Zeroimage,
    registry: Registry,
    tmp_path: Path,
    args: list[str],
    named: str,
    request: pytest.FixtureRequest,
) -> None:
    """Refused before any work (exit 2) in one line naming the output: every file as it was,
    nothing pushed."""
    inputs_scene(tmp_path)
    before = fingerprint(tmp_path)
    repository = f"destroy/{request.node.callspec.id}"
    result = zeroimage("build", *args, "--push", f"{registry.host}/{repository}:v1", "app", check=False)
    refused(result, 2, named)
    assert fingerprint(tmp_path) == before
    assert requests_for(registry, repository) == []


def test_an_output_may_share_a_layout_with_the_base_under_another_tag(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """The control of the refusals above: a new tag in the base's own layout is written, and
    the base's image stays in it as it was."""
    inputs_scene(tmp_path)
    base = peers.skopeo_inspect(f"oci:{tmp_path / 'L'}:latest", raw=True)
    zeroimage("build", "--from", "oci:L:latest", "-o", "oci:L:mine", "app")
    assert sorted(peers.ref_names(tmp_path / "L")) == ["latest", "mine"]
    assert peers.skopeo_inspect(f"oci:{tmp_path / 'L'}:latest", raw=True) == base


# -- 2. every output checked before any work ----------------------------------------------------

BAD_SECOND_OUTPUTS = {
    "o-in-a-missing-folder": (["-o", "nodir/second.tar"], 1),
    "digest-file-in-a-missing-folder": (["--digest-file", "nodir/digest"], 1),
    "layout-in-a-missing-folder": (["-o", "oci:nodir/layout"], 1),
    "docker-archive-in-a-missing-folder": (["-o", "docker-archive:nodir/d.tar"], 1),
    "o-is-a-directory": (["-o", "adir"], 2),
    "digest-file-is-a-directory": (["--digest-file", "adir"], 2),
    "layout-is-a-file": (["-o", "oci:afile"], 2),
}


@pytest.mark.parametrize("bad", BAD_SECOND_OUTPUTS.values(), ids=BAD_SECOND_OUTPUTS.keys())
def test_every_output_is_checked_before_any_work(
    zeroimage: Zeroimage, registry: Registry, tmp_path: Path, bad: tuple[list[str], int], request: pytest.FixtureRequest
) -> None:
    """A later output that could be known bad from the start stops the build before the first
    output is written or anything is pushed."""
    images.tiny_program(tmp_path / "app")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a layout\n")
    before = fingerprint(tmp_path)
    args, code = bad
    repository = f"second/{request.node.callspec.id}"
    result = zeroimage(
        "build", "-o", "first.tar", "--push", f"{registry.host}/{repository}:v1", *args, "app", check=False
    )
    refused(result, code)
    assert fingerprint(tmp_path) == before  # first.tar never written
    assert requests_for(registry, repository) == []


# -- 6. outputs say what they are -----------------------------------------------------------------

NOT_FILES = {
    "a-misspelt-transport": ("oci-archiv:x.tar", "oci-archive"),
    "a-loopback-registry": ("127.0.0.1:5000/app:v1", "--push 127.0.0.1:5000/app:v1"),
    "a-public-registry": ("ghcr.io/me/app:v1", "--push ghcr.io/me/app:v1"),
}


@pytest.mark.parametrize("output,hint", NOT_FILES.values(), ids=NOT_FILES.keys())
def test_o_refuses_what_is_not_a_file_with_a_hint(zeroimage: Zeroimage, tmp_path: Path, output: str, hint: str) -> None:
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    refused(zeroimage("build", "-o", output, "app", check=False), 2, hint)
    assert fingerprint(tmp_path) == before


def test_a_file_whose_name_has_a_colon_is_written_as_named(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """``-o ./name:x.tar`` is the file ``name:x.tar``, as the hint above tells the user to write
    it: not a file ``name`` holding the tag ``x.tar``."""
    images.tiny_program(tmp_path / "app")
    zeroimage("build", "-o", "./name:x.tar", "app")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["app", "name:x.tar"]
    image = images.read_image(tmp_path / "name:x.tar", tmp_path / "read")
    assert image.config["config"]["Entrypoint"] == ["/app"]


def _offline(home: Home, *args: str) -> Result:
    """``zeroimage ARGS`` in a network namespace of its own, with no interface up: a source
    that should be opened locally, were it looked up in a registry after all, fails at once
    without any traffic leaving the machine."""
    unshare = peers.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    wrap = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--net"]
    probe = subprocess.run([*wrap, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode(errors='replace').strip()}")
    return finish(home.start(*args, wrap=wrap), timeout=120)


def _home(tmp_path: Path) -> Home:
    return Home(work=tmp_path, cache=tmp_path / ".cache", docker_config=tmp_path / ".docker")


def test_local_sources_are_opened_as_what_they_are(tmp_path: Path) -> None:
    """``--from`` and ``inspect`` take a bare path to an OCI archive, a docker-archive (told
    apart by content, whatever their names) or a layout directory, and never ask a registry."""
    home = _home(tmp_path)
    images.tiny_program(tmp_path / "app")
    layout = images.write_layout(tmp_path / "layout", [BASE_FILES])
    peers.run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest", f"oci-archive:{tmp_path / 'oci.tar'}"])
    peers.run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest", f"docker-archive:{tmp_path / 'docker.tar'}"])
    for source in ("./oci.tar", "docker.tar", "layout", str(tmp_path / "docker.tar")):
        inspected = _offline(home, "inspect", "--json", source)
        assert inspected.returncode == 0, inspected.describe()
        layers = json.loads(inspected.stdout)["images"][0]["manifest"]["layers"]
        assert len(layers) == 1, source
        built = _offline(home, "build", "--from", source, "-o", "out.tar", "app")
        assert built.returncode == 0, built.describe()
        assert len(peers.skopeo_inspect(f"oci-archive:{tmp_path / 'out.tar'}")["Layers"]) == 2, source


@pytest.mark.parametrize("command", [["build", "--from", "nothere.tar", "app"], ["inspect", "nothere.tar"]])
def test_a_missing_bare_source_names_the_local_transports(tmp_path: Path, command: list[str]) -> None:
    """A name that is no local file is looked up in a registry (offline here); the error says
    how to name a local archive instead."""
    images.tiny_program(tmp_path / "app")
    result = _offline(_home(tmp_path), *command)
    refused(result, 1, "oci-archive:", "docker-archive:")


def test_an_archive_on_a_terminal_is_refused(tmp_path: Path) -> None:
    home = _home(tmp_path)
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    controller, terminal = pty.openpty()
    try:
        for output in ("-", "docker-archive:-", "oci-archive:-"):
            result = finish(home.start("build", "-o", output, "app", stdout=terminal), timeout=60)
            refused(result, 2, "terminal")
        readable, _, _ = select.select([controller], [], [], 0)
        assert not readable, "something was written to the terminal"
    finally:
        os.close(terminal)
        os.close(controller)
    assert fingerprint(tmp_path) == before


def test_o_dash_writes_the_oci_archive_it_prints(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """``-o -``: the OCI archive on stdout, and its reference on stderr, which skopeo finds in
    what stdout carried."""
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "-o", "-", "app")
    (printed,) = [line for line in result.stderr.splitlines() if "# sha256:" in line]
    (tmp_path / "piped.tar").write_bytes(result.stdout_bytes)
    raw = peers.skopeo_inspect(f"oci-archive:{tmp_path / 'piped.tar'}:latest", raw=True)
    assert printed == f"oci-archive:-:latest  # {peers.digest_of(raw)}"


def test_archive_on_stdout_pipes_into_docker_load(dockerd: Dockerd, static_binary: Path, tmp_path: Path) -> None:
    """``zeroimage build -o docker-archive:- ./app | docker load``, as the README shows it; what
    Docker loads is the image ID zeroimage printed (on stderr: stdout is the archive), which
    ``zeroimage inspect`` of the same archive written to a file shows too."""
    home = _home(tmp_path)
    env = {**os.environ, **dockerd.env, "DOCKER_CONFIG": str(tmp_path / "docker-client")}
    build = home.start("build", "-o", "docker-archive:-", str(static_binary))
    assert build.stdout is not None
    load = subprocess.run(
        [peers.which("docker") or "docker", "load"], stdin=build.stdout, capture_output=True, text=True, env=env
    )
    build.stdout.close()
    done = finish(build, timeout=120)
    assert done.returncode == 0 and load.returncode == 0, (done.describe(), load.stderr)
    (printed,) = [line for line in done.stderr.splitlines() if "# image ID sha256:" in line]
    assert printed.startswith("docker-archive:-  # image ID sha256:")
    image_id = digest_in(printed)
    assert load.stdout.strip() == f"Loaded image ID: {image_id}"
    assert dockerd.inspect(image_id)["Id"] == image_id
    assert "Hello from a FROM-scratch image" in dockerd.run(image_id).stdout
    home.run("build", "-o", "docker-archive:d.tar", str(static_binary), check=True)
    shown = home.run("inspect", "d.tar", check=True).stdout
    assert f"image id:   {image_id}" in shown


def test_docker_daemon_output_prints_the_image_id(
    zeroimage: Zeroimage, dockerd: Dockerd, static_binary: Path, tmp_path: Path
) -> None:
    result = zeroimage("build", "-o", "docker-daemon:zi/printed:v1", str(static_binary), env=dockerd.env)
    where, _, image_id = result.stdout.strip().partition("  # image ID ")
    assert where == "docker-daemon:zi/printed:v1"
    assert dockerd.inspect("zi/printed:v1")["Id"] == image_id


@pytest.mark.parametrize("image_format", ["oci", "docker"])
def test_printed_lines_open_as_printed_in_skopeo_and_umoci(
    zeroimage: Zeroimage,
    registry: Registry,
    tmp_path: Path,
    image_format: str,
) -> None:
    """Each output prints one line. Pasted as it is after ``skopeo inspect`` in a shell, a local
    output's line opens that output (the digest follows as a shell comment: skopeo 1.9 opens no
    archive or layout by digest), and skopeo finds there the very digest printed (the image ID
    for a docker-archive); a push's line is ``REPOSITORY@sha256:…``, which skopeo opens after
    ``docker://``. umoci unpacks the OCI outputs by the tag printed. OCI archives and layouts
    hold OCI media types whatever ``--format``; a push holds the format asked for."""
    images.tiny_program(tmp_path / "app")
    repository = f"printed-{image_format}"
    outputs = ["oci-archive:x.tar:v9", "oci:lay:v9", "docker-archive:d.tar:zi/app:v9"]
    args = ["build", "--format", image_format, *(a for o in outputs for a in ("-o", o))]
    result = zeroimage(*args, "--push", f"{registry.host}/{repository}:v9", "app")
    *local, pushed = result.stdout.splitlines()
    digests = {o["reference"]: o["digest"] for o in json.loads(zeroimage(*args, "--json", "app").stdout)["outputs"]}

    def skopeo(line: str, *flags: str) -> bytes:
        shell = f"skopeo inspect --raw {' '.join(flags)} {line}"  # the line as printed, comment and all
        return subprocess.run(["sh", "-c", shell], cwd=tmp_path, check=True, capture_output=True).stdout

    assert [line.split()[0] for line in local] == outputs
    for output, line in zip(outputs[:2], local, strict=False):
        raw = skopeo(line)
        assert line == f"{output}  # {peers.digest_of(raw)}" and digests[f"{output}"] == peers.digest_of(raw)
        assert json.loads(raw)["mediaType"] == OCI_MANIFEST, line
    config = skopeo(local[2], "--config")
    assert local[2] == f"{outputs[2]}  # image ID {peers.digest_of(config)}"
    peers.umoci_unpack(tmp_path / "x.tar", "v9", tmp_path / "bundle-archive")
    peers.umoci_unpack(tmp_path / "lay", "v9", tmp_path / "bundle-layout")
    raw = skopeo(f"docker://{pushed}", "--tls-verify=false")
    assert pushed == f"{registry.host}/{repository}@{peers.digest_of(raw)}"
    assert json.loads(raw)["mediaType"] == (DOCKER_MANIFEST if image_format == "docker" else OCI_MANIFEST)


def test_json_gives_each_push_its_tag(zeroimage: Zeroimage, registry: Registry, tmp_path: Path) -> None:
    images.tiny_program(tmp_path / "app")
    tags = [f"{registry.host}/json/app:v1", f"{registry.host}/json/app:v2"]
    result = json.loads(zeroimage("build", "--json", "--push", tags[0], "--push", tags[1], "app").stdout)
    assert [o["reference"] for o in result["outputs"]] == tags
    for tag, output in zip(tags, result["outputs"], strict=True):
        assert peers.digest_of(peers.skopeo_inspect(f"docker://{tag}", raw=True)) == output["digest"]


def _created(archive: Path) -> str:
    return str(peers.skopeo_inspect(f"oci-archive:{archive}")["Created"])


def test_default_builds_are_reproducible_and_dated_by_their_inputs(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """Without SOURCE_DATE_EPOCH two builds of unchanged inputs are one image, made when its
    newest input was; SOURCE_DATE_EPOCH still wins."""
    program = images.tiny_program(tmp_path / "app")
    extra = tmp_path / "conf"
    extra.write_text("x\n")
    os.utime(program, (1_650_000_000, 1_650_000_000))
    os.utime(extra, (1_640_000_000, 1_640_000_000))
    first = digest_in(zeroimage("build", "-o", "one.tar", "app").stdout)
    second = digest_in(zeroimage("build", "--no-cache", "-o", "two.tar", "app").stdout)
    assert first == second
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    assert _created(tmp_path / "one.tar") == "2022-04-15T05:20:00Z"  # the program's mtime
    os.utime(extra, (1_660_000_000, 1_660_000_000))
    zeroimage("build", "-o", "added.tar", "--add", "conf:/etc/conf", "app")
    assert _created(tmp_path / "added.tar") == "2022-08-08T23:06:40Z"  # the newer added file's
    zeroimage("build", "-o", "epoch.tar", "--add", "conf:/etc/conf", "app", env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert _created(tmp_path / "epoch.tar") == "2023-11-14T22:13:20Z"


# -- 7. smaller mends -----------------------------------------------------------------------------


def test_check_auth_takes_the_reference_as_an_argument(zeroimage: Zeroimage, registry: Registry) -> None:
    result = zeroimage("check-auth", f"{registry.host}/auth/app")
    assert result.stdout == f"push access to {registry.host}/auth/app OK\n", result.describe()
    assert any("POST /v2/auth/app/blobs/uploads/" in line for line in requests_for(registry, "auth/app"))
    assert not any('"PUT ' in line for line in requests_for(registry, "auth/app"))  # nothing pushed
    refused(zeroimage("check-auth", check=False), 2, "check-auth REF")


def test_chown_without_add_is_warned_about(zeroimage: Zeroimage, tmp_path: Path) -> None:
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "--chown", "1000:1000", "-o", "out.tar", "app")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("zeroimage: warning:")]
    assert len(warnings) == 1 and "--chown" in warnings[0] and "--add" in warnings[0], result.stderr


def test_inspect_shows_what_is_there_as_it_is(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """No ``null`` for an image without an entrypoint, unicode as it is (never ``\\u00e9``),
    and the os.version that tells hello-world's two Windows images apart."""
    shown = zeroimage("inspect", f"oci-archive:{MULTIARCH}").stdout
    assert "null" not in shown and "entrypoint" not in shown
    windows = [line.strip() for line in shown.splitlines() if "windows/amd64" in line]
    assert len(windows) == 2 and len(set(windows)) == 2, windows
    assert all("os.version 10.0." in line for line in windows), windows
    images.tiny_program(tmp_path / "app")
    zeroimage("build", "--env", "GREETING=café", "--label", "note=été", "--cmd", "crème", "-o", "u.tar", "app")
    text = zeroimage("inspect", "u.tar").stdout
    assert '["crème"]' in text and "\\u" not in text
    described = zeroimage("inspect", "--json", "u.tar").stdout
    assert "GREETING=café" in described and '"note": "été"' in described and "\\u" not in described


def test_progress_lines_name_the_program_and_its_platform(
    zeroimage: Zeroimage, busybox: Path, busybox_arm64: Path
) -> None:
    """On a stderr that is no terminal (a CI log), each layer's line says whose it is."""
    result = zeroimage("build", "--entrypoint-path", "/app", "-o", "multi.tar", str(busybox), str(busybox_arm64))
    lines = [line for line in result.stderr.splitlines() if "compressing" in line]
    assert any(f"{busybox.name} (linux/amd64)" in line for line in lines), result.stderr
    assert any(f"{busybox_arm64.name} (linux/arm64" in line for line in lines), result.stderr


@pytest.mark.parametrize("base", ["./missing.tar", "/no/such/dir/base.tar", "../missing/layout"])
def test_a_base_path_that_does_not_exist_says_so(zeroimage: Zeroimage, tmp_path: Path, base: str) -> None:
    """A path is not an image reference: one that does not exist is named as missing (it was
    "invalid reference"), for a build and for inspect alike."""
    images.tiny_program(tmp_path / "app")
    refused(zeroimage("build", "--from", base, "-o", "out.tar", "app", check=False), 1, f"{base}: no such file")
    refused(zeroimage("inspect", base, check=False), 1, f"{base}: no such file")
    assert not (tmp_path / "out.tar").exists()


def test_a_plain_run_says_each_step_however_small(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """Without a terminal and without -q, one line per finished step, naming the program and
    its platform — small builds included (they printed nothing); with -q, none."""
    images.tiny_program(tmp_path / "app")
    said = zeroimage("build", "-o", "out.tar", "app").stderr
    assert "zeroimage: compressing app (linux/amd64) as /app: " in said, said
    assert zeroimage("build", "-q", "--no-cache", "-o", "q.tar", "app").stderr == ""
