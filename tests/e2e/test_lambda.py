"""Issue 16, second part: ``zeroimage build --target lambda`` makes and checks an image for AWS
Lambda, and ``zeroimage inspect --target lambda`` says what Lambda would refuse of any image.

Lambda tells what it refuses only at deployment, after the push; these tests hold zeroimage to
telling it before. Each asserts the outcome a user sees, judged apart from zeroimage's code where
a peer can: the layers listed with ``tarfile`` (every parent present, the modes widened), the
image unpacked by umoci and run by runc as Lambda's kind of user (uid 993, neither root nor an
owner of any file), the manifest type as skopeo reads it from a registry, and for refusals one
error line, every file as it was and nothing pushed (the registry's access log).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MULTIARCH, Zeroimage
from tests.support import images, peers
from tests.support.cli import Result
from tests.support.images import directory, text_file
from tests.support.lambda_images import (
    HOST_LIBS,
    LIBC,
    RUNTIME_API_CLIENT,
    compile_c,
    host_libc_base,
    layer_members,
    orphans,
    zeros_base,
    zstd_copy,
)
from tests.support.outcomes import fingerprint, refused, requests_for
from tests.support.programs import static_amd64_header
from tests.support.registry import Registry, seed, start_registry
from zeroimage import inspect as inspect_api

HELLO_C = Path(__file__).parents[2] / "examples" / "hello" / "hello.c"
#: Lambda's kind of user, as zeroimage checks for it and runc runs the image.
FUNCTION_USER = "993:990"
GZIP_LAYERS = {images.OCI_LAYER_GZIP, "application/vnd.docker.image.rootfs.diff.tar.gzip"}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
NOTICE = "zeroimage: for Lambda's unprivileged user, made readable by all"
RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"
#: Lambda's limit, all layers together, uncompressed (AWS counts it in GiB).
LIMIT = 10 << 30


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module; each test pushes to repositories of its own."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For calls of the API in this process: the cache and Docker config of this test alone."""
    monkeypatch.setenv("ZEROIMAGE_CACHE_DIR", str(tmp_path / ".cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / ".docker"))


def uploads(registry: Registry, repository: str) -> list[str]:
    """The access-log lines that stored something in ``repository``: a blob or a manifest
    committed (an upload begun and cancelled leaves nothing, and is not one)."""
    return [line for line in requests_for(registry, repository) if '"PUT ' in line]


def notices(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(NOTICE)]


def warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("zeroimage: warning: ")]


def members_by_name(image: images.Image) -> dict[str, tarfile.TarInfo]:
    """Every member of every layer of ``image``, by name (the topmost wins), each layer checked
    first to be gzip and to hold an entry for every parent of its members, before them."""
    found: dict[str, tarfile.TarInfo] = {}
    for index, layer in enumerate(image.manifest["layers"]):
        assert layer["mediaType"] in GZIP_LAYERS, layer
        data = image.blob(layer["digest"])
        assert data[:2] == b"\x1f\x8b", f"layer {index} is not gzip"
        members = layer_members(data)
        assert orphans(members) == [], f"layer {index} lacks parents: Lambda refuses it (MissingParentDirectory)"
        found.update({member.name: member for member in members})
    return found


def lambda_problems(zeroimage: Zeroimage, source: str, *options: str) -> tuple[Result, list[str]]:
    """``zeroimage inspect --target lambda --json SOURCE``: the run and the problems it lists."""
    result = zeroimage("inspect", "--target", "lambda", "--json", *options, source, check=False)
    assert result.returncode in (0, 1), result.describe()
    problems: list[str] = json.loads(result.stdout)["lambda"]["problems"]
    assert result.returncode == (1 if problems else 0), result.describe()
    return result, problems


# -- 1. refusals ---------------------------------------------------------------------------------


def refused_before_any_work(
    zeroimage: Zeroimage, registry: Registry, tmp_path: Path, repository: str, args: list[str], *words: str
) -> None:
    """A usage error (exit 2) in one line holding ``words``, known from the flags and the
    programs' headers alone: every file as it was, not one request to the registry."""
    before = fingerprint(tmp_path)
    push = ["--push", f"{registry.host}/{repository}:v1", "-o", "out.tar"]
    refused(zeroimage("build", "--target", "lambda", *push, *args, check=False), 2, "--target lambda", *words)
    assert fingerprint(tmp_path) == before
    assert requests_for(registry, repository) == []


def test_two_programs_are_refused(
    zeroimage: Zeroimage, registry: Registry, tmp_path: Path, busybox_arm64: Path
) -> None:
    """x86_64 and arm64 are two Lambda functions: one image per architecture."""
    images.tiny_program(tmp_path / "app")
    shutil.copy(busybox_arm64, tmp_path / "app-arm64")
    args = ["--entrypoint-path", "/app", "app", "app-arm64"]
    refused_before_any_work(zeroimage, registry, tmp_path, "refused/two", args, "2 programs")


def test_a_platform_lambda_does_not_run_is_refused(zeroimage: Zeroimage, registry: Registry, tmp_path: Path) -> None:
    """An ARMv7 program (linked by the cross compiler, its ELF header and attributes real)."""
    compile_c(HELLO_C.read_text(), tmp_path / "app", compiler="arm-linux-gnueabihf-gcc")
    refused_before_any_work(zeroimage, registry, tmp_path, "refused/armv7", ["app"], "linux/arm/v7")


def test_zstd_layers_are_refused(zeroimage: Zeroimage, registry: Registry, tmp_path: Path) -> None:
    images.tiny_program(tmp_path / "app")
    args = ["--compression", "zstd", "app"]
    refused_before_any_work(zeroimage, registry, tmp_path, "refused/zstd", args, "gzip", "zstd")


def test_a_base_with_zstd_layers_is_refused(zeroimage: Zeroimage, registry: Registry, tmp_path: Path) -> None:
    """A base skopeo recompressed as zstd: its layers cannot change, so the build fails (exit 1)
    naming them, writes nothing and pushes no image; inspect says the same of the base."""
    base = images.write_layout(tmp_path / "gzip-base", [[directory("etc"), text_file("etc/motd", "hi\n")]])
    zstd_copy(base, tmp_path / "base")
    shutil.rmtree(base)
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    repository = "refused/zstd-base"
    push = ["--push", f"{registry.host}/{repository}:v1", "-o", "out.tar"]
    result = zeroimage("build", "--target", "lambda", "--from", "oci:base:latest", *push, "app", check=False)
    refused(result, 1, "oci:base:latest", "zstd", "gzip")
    assert fingerprint(tmp_path) == before
    assert not [line for line in requests_for(registry, repository) if "/manifests/" in line and '"PUT ' in line]
    _, problems = lambda_problems(zeroimage, "oci:base:latest")
    assert any("zstd" in problem and "gzip" in problem for problem in problems), problems


# -- 2. what is accepted ---------------------------------------------------------------------------


def test_an_amd64_program_is_widened_and_runs_as_lambdas_user(
    zeroimage: Zeroimage, busybox: Path, tmp_path: Path
) -> None:
    """A 0700 program, a 0600 file and a 0700 directory tree of 0600 files: in the image the
    program is 0755 and the rest readable by all (one notice line names each change), every
    layer gzip with every parent; the host's files keep their modes; and runc, running the image
    as uid 993, runs the program and reads what was added."""
    app = tmp_path / "busybox"
    shutil.copy(busybox, app)
    app.chmod(0o700)
    (tmp_path / "conf").write_text("key = value\n")
    (tmp_path / "conf").chmod(0o600)
    (tmp_path / "site").mkdir(mode=0o700)
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (tmp_path / "site" / "index.html").chmod(0o600)
    result = zeroimage(
        "build",
        "--target",
        "lambda",
        "--entrypoint-path",
        "/usr/local/bin/busybox",
        "--add",
        "conf:/etc/app/conf",
        "--add",
        "site:/srv/site",
        "-o",
        "fn.tar",
        "busybox",
    )
    (notice,) = notices(result)
    for change in (
        "/usr/local/bin/busybox 0700→0755",
        "/etc/app/conf 0600→0644",
        "/srv/site 0700→0755",
        "/srv/site/index.html 0600→0644",
    ):
        assert change in notice, (change, result.stderr)
    host_modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("busybox", "conf", "site")}
    assert host_modes == {"busybox": 0o700, "conf": 0o600, "site": 0o700}
    (entry,) = peers.read_index(peers.extract_archive(tmp_path / "fn.tar", tmp_path / "layout"))["manifests"]
    assert entry["mediaType"] == images.OCI_MANIFEST
    image = images.read_image(tmp_path / "layout", tmp_path)
    modes = {name: member.mode for name, member in members_by_name(image).items()}
    expected = {"usr/local/bin/busybox": 0o755, "etc/app/conf": 0o644, "srv/site": 0o755, "srv/site/index.html": 0o644}
    assert {name: modes[name] for name in expected} == expected
    for args, output in (
        (["id", "-u"], "993\n"),
        (["cat", "/etc/app/conf"], "key = value\n"),
        (["cat", "/srv/site/index.html"], "<h1>hi</h1>\n"),
    ):
        run = peers.run_image(tmp_path / "fn.tar", user=FUNCTION_USER, args=["/usr/local/bin/busybox", *args])
        assert run.stdout == output, run


@pytest.mark.parametrize("fmt,manifest_type", [("oci", images.OCI_MANIFEST), ("docker", DOCKER_MANIFEST)])
def test_one_manifest_whatever_the_format(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path, fmt: str, manifest_type: str
) -> None:
    """On a base that is an index of eleven images, in either format: what is pushed is one
    image manifest of gzip layers (skopeo's reading of the registry), never an index, and so is
    what is written to an archive."""
    repository = f"lambda/{fmt}"
    zeroimage(
        "build",
        "--target",
        "lambda",
        "--format",
        fmt,
        "--from-archive",
        str(MULTIARCH),
        "--push",
        f"{registry.host}/{repository}:v1",
        "-o",
        "fn.tar",
        str(static_binary),
    )
    manifest = json.loads(peers.skopeo_inspect(registry.ref(f"{repository}:v1"), raw=True))
    assert manifest["mediaType"] == manifest_type
    assert {layer["mediaType"] for layer in manifest["layers"]} <= GZIP_LAYERS, manifest
    config = peers.skopeo_inspect(registry.ref(f"{repository}:v1"), config=True)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    (entry,) = peers.read_index(peers.extract_archive(tmp_path / "fn.tar", tmp_path / "layout"))["manifests"]
    assert entry["mediaType"] == images.OCI_MANIFEST


def test_an_arm64_program_is_accepted(zeroimage: Zeroimage, busybox_arm64: Path, tmp_path: Path) -> None:
    """Lambda's arm64: one linux/arm64 manifest, the 0700 program 0755 in a layer with every parent."""
    app = tmp_path / "app"
    shutil.copy(busybox_arm64, app)
    app.chmod(0o700)
    result = zeroimage("build", "--target", "lambda", "--entrypoint-path", "/opt/fn/app", "-o", "fn.tar", "app")
    (notice,) = notices(result)
    assert "/opt/fn/app 0700→0755" in notice, result.stderr
    (entry,) = peers.read_index(peers.extract_archive(tmp_path / "fn.tar", tmp_path / "layout"))["manifests"]
    assert entry["mediaType"] == images.OCI_MANIFEST
    image = images.read_image(tmp_path / "layout", tmp_path)
    assert (image.config["os"], image.config["architecture"]) == ("linux", "arm64")
    members = members_by_name(image)
    assert members["opt/fn/app"].mode == 0o755
    assert {"opt", "opt/fn"} <= set(members)


# -- 3. warnings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program,base,warned",
    [
        ("silent", "scratch", True),
        ("runtime-api-client", "scratch", False),
        ("silent", "runtime-interface-client", False),
    ],
)
def test_a_program_that_cannot_answer_invocations_is_warned_about(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path, program: str, base: str, warned: bool
) -> None:
    """A program that never mentions AWS_LAMBDA_RUNTIME_API on a base without a runtime
    interface client (/lambda-entrypoint.sh, as AWS's lambda/provided bases have) gets a
    warning, and with --strict fails (exit 1) writing nothing; a program that reads the
    variable, or a base with the client, gets neither."""
    if program == "silent":
        shutil.copy(static_binary, tmp_path / "fn")
    else:
        compile_c(RUNTIME_API_CLIENT, tmp_path / "fn")
    from_base: list[str] = []
    if base == "runtime-interface-client":
        client = text_file("lambda-entrypoint.sh", '#!/bin/sh\nexec "$@"\n', mode=0o755)
        images.write_archive(tmp_path / "base.tar", [[client]])
        from_base = ["--from", "oci-archive:base.tar"]
    build = ["build", "--target", "lambda", *from_base]
    result = zeroimage(*build, "-o", "fn.tar", "fn")
    told = [w for w in warnings(result) if RUNTIME_API in w]
    assert len(told) == (1 if warned else 0), result.stderr
    assert all("fn" in w and "/lambda-entrypoint.sh" in w for w in told), told
    before = fingerprint(tmp_path)
    strict = zeroimage(*build, "--strict", "-o", "strict.tar", "fn", check=False)
    if warned:
        refused(strict, 1, RUNTIME_API, "/lambda-entrypoint.sh")
        assert fingerprint(tmp_path) == before
    else:
        assert strict.returncode == 0 and warnings(strict) == [], strict.describe()


@pytest.mark.parametrize("libc_mode", [0o600, 0o644], ids=["libc-0600", "libc-0644"])
def test_a_library_lambdas_user_cannot_read_is_warned_about(
    zeroimage: Zeroimage, tmp_path: Path, libc_mode: int
) -> None:
    """A dynamically linked program on a base whose C library is root's and 0600: a warning
    naming the library and its mode, an error with --strict; and it is true — runc, running the
    image as uid 993, cannot start the program, though root can. With the library 0644: no
    such warning, and uid 993 runs it."""
    compile_c(HELLO_C.read_text(), tmp_path / "fn", static=False)
    host_libc_base(tmp_path / "base.tar", libc_mode)
    build = ["build", "--target", "lambda", "--from", "oci-archive:base.tar"]
    result = zeroimage(*build, "-o", "fn.tar", "fn")
    libc = f"/{HOST_LIBS}/{LIBC}"
    unreadable = [w for w in warnings(result) if libc in w]
    run = peers.run_image(tmp_path / "fn.tar", user=FUNCTION_USER, check=False)
    if libc_mode == 0o644:
        assert unreadable == [], result.stderr
        assert run.returncode == 0 and "Hello from" in run.stdout, run
        return
    assert len(unreadable) == 1 and "0600" in unreadable[0], result.stderr
    assert run.returncode != 0 and LIBC in run.stderr, run
    assert "Hello from" in peers.run_image(tmp_path / "fn.tar", user="0:0").stdout
    before = fingerprint(tmp_path)
    refused(zeroimage(*build, "--strict", "-o", "strict.tar", "fn", check=False), 1, libc, "0600")
    assert fingerprint(tmp_path) == before


def test_a_base_directory_lambdas_user_cannot_enter_is_warned_about(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    """The program under a base's /opt of mode 0700: the parent keeps the base's mode, so
    Lambda's user cannot reach the program, widened as it is. The build says so (judged as uid
    993, not as root), --strict fails, inspect reports it, and runc as uid 993 cannot start it."""
    images.write_archive(tmp_path / "base.tar", [[directory("opt", 0o700)]])
    shutil.copy(static_binary, tmp_path / "fn")
    build = ["build", "--target", "lambda", "--from", "oci-archive:base.tar", "--entrypoint-path", "/opt/fn/fn"]
    result = zeroimage(*build, "-o", "fn.tar", "fn")
    (warning,) = [w for w in warnings(result) if "/opt/fn/fn" in w]
    assert "993" in warning and "/opt (mode 0700" in warning, warning
    run = peers.run_image(tmp_path / "fn.tar", user=FUNCTION_USER, check=False)
    assert run.returncode != 0 and "Hello from" not in run.stdout, run
    _, problems = lambda_problems(zeroimage, "fn.tar")
    assert [p for p in problems if "/opt (mode 0700" in p] == problems and len(problems) == 1, problems
    before = fingerprint(tmp_path)
    refused(zeroimage(*build, "--strict", "-o", "strict.tar", "fn", check=False), 1, "/opt (mode 0700")
    assert fingerprint(tmp_path) == before


# -- 4. Lambda's 10 GiB --------------------------------------------------------------------------

#: Headroom under the limit the "under" base leaves: more than a tiny program's layer, less
#: than the big program's.
HEADROOM = 2 << 20
#: How many layers the big bases name (one blob, listed once, counted each time).
LAYERS = 40


@pytest.fixture(scope="module")
def big_bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two bases of one layer of zeros named ``LAYERS`` (or one more) times: ``under`` is
    ``HEADROOM`` or a little less under Lambda's 10 GiB, all layers together; ``over`` is 1/40
    over it. Each is made, and listed by a build, in well under a second."""
    root = tmp_path_factory.mktemp("big-bases")
    per_layer = (LIMIT - HEADROOM) // LAYERS
    under = LAYERS * zeros_base(root / "under", (per_layer - 3 * 512) // 512 * 512, LAYERS)
    assert LIMIT - HEADROOM - LAYERS * 512 <= under <= LIMIT - HEADROOM
    over = (LAYERS + 1) * zeros_base(root / "over", LIMIT // LAYERS, LAYERS + 1)
    assert over > LIMIT
    return {"under": root / "under", "over": root / "over"}


def test_an_image_over_10_gib_is_refused_before_any_upload(
    zeroimage: Zeroimage, registry: Registry, big_bases: dict[str, Path], tmp_path: Path
) -> None:
    """Base layers of 10.25 GiB together: exit 1 in one line naming the limit, no archive
    written, nothing stored in the registry (not even the program's layer)."""
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    repository = "size/over"
    result = zeroimage(
        "build",
        "--target",
        "lambda",
        "--from",
        f"oci:{big_bases['over']}:latest",
        "--push",
        f"{registry.host}/{repository}:v1",
        "-o",
        "fn.tar",
        "app",
        check=False,
    )
    refused(result, 1, "10 GiB")
    assert fingerprint(tmp_path) == before
    assert uploads(registry, repository) == []


def test_the_new_layers_count_toward_the_limit(
    zeroimage: Zeroimage, big_bases: dict[str, Path], tmp_path: Path
) -> None:
    """On a base just under 10 GiB, a tiny program fits and is written; a 4 MiB one does not:
    refused, nothing written."""
    images.tiny_program(tmp_path / "small")
    (tmp_path / "big").write_bytes(static_amd64_header() + bytes(4 << 20))
    base = ["--from", f"oci:{big_bases['under']}:latest"]
    zeroimage("build", "--target", "lambda", *base, "-o", "small.tar", "small")
    assert (tmp_path / "small.tar").is_file()
    before = fingerprint(tmp_path)
    refused(zeroimage("build", "--target", "lambda", *base, "-o", "big.tar", "big", check=False), 1, "10 GiB")
    assert fingerprint(tmp_path) == before


def test_inspect_measures_the_size(zeroimage: Zeroimage, big_bases: dict[str, Path]) -> None:
    _, over = lambda_problems(zeroimage, f"oci:{big_bases['over']}:latest")
    assert len([p for p in over if "is 10.3 GiB uncompressed" in p and "at most 10 GiB" in p]) == 1, over
    _, under = lambda_problems(zeroimage, f"oci:{big_bases['under']}:latest")
    assert not [p for p in under if "GiB" in p], under


# -- 5. inspect --target lambda ------------------------------------------------------------------


def test_inspect_finds_a_layer_without_parents(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path, private_cache: None
) -> None:
    """``umoci insert`` of /usr/local/bin/app writes that one entry and no parent (seen here
    with tarfile); pushed by skopeo, the image is reported by inspect — text, JSON and the
    Python API alike — as Lambda's MissingParentDirectory, and nothing else (exit 1)."""
    shutil.copy(static_binary, tmp_path / "app")
    layout = peers.umoci_build(
        tmp_path / "umoci", {"/usr/local/bin/app": tmp_path / "app"}, entrypoint=["/usr/local/bin/app"]
    )
    image = images.read_image(layout, tmp_path)
    assert orphans(layer_members(image.blob(image.manifest["layers"][0]["digest"]))) == ["usr/local/bin/app"]
    seed(registry, f"oci:{layout}:latest", "umoci/app:v1")
    source = f"{registry.host}/umoci/app:v1"
    insecure = ["--insecure-registry", registry.host]
    text = zeroimage("inspect", "--target", "lambda", *insecure, source, check=False)
    refused(text, 1, "Lambda")
    assert "MissingParentDirectory" in text.stdout and "/usr/local/bin/app" in text.stdout, text.stdout
    result, problems = lambda_problems(zeroimage, source, *insecure)
    refused(result, 1)
    (problem,) = problems
    assert "MissingParentDirectory" in problem and "/usr/local/bin/app" in problem
    digest = image.manifest["layers"][0]["digest"]
    assert digest in problem
    api = inspect_api(source, insecure_registry=[registry.host], target="lambda")
    assert api.target == "lambda" and list(api.problems) == problems
    assert api.to_json()["lambda"] == {"problems": problems}


def test_inspect_names_an_index_and_the_platforms_lambda_does_not_run(zeroimage: Zeroimage) -> None:
    """Docker Hub's hello-world: an index (Lambda wants one manifest) of eleven images, of which
    Lambda runs only linux/amd64 and linux/arm64; each other platform is named."""
    text = zeroimage("inspect", "--target", "lambda", str(MULTIARCH), check=False)
    refused(text, 1)
    assert "image index" in text.stdout
    _, problems = lambda_problems(zeroimage, str(MULTIARCH))
    assert "image index" in problems[0]
    for platform in ("arm/v5", "arm/v7", "386", "mips64le", "ppc64le", "riscv64", "s390x"):
        assert len([p for p in problems if f"linux/{platform} image" in p]) == 1, (platform, problems)
    assert len([p for p in problems if "windows/amd64 image" in p]) == 2, problems
    assert not [p for p in problems if p.startswith(("the linux/amd64 image", "the linux/arm64"))], problems


def test_inspect_passes_a_lambda_image_and_not_a_0700_program(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path, private_cache: None
) -> None:
    """The same 0700 program built twice: with --target lambda, inspect finds nothing (exit 0,
    in text, JSON and the API); without, its mode keeps Lambda's user from running it."""
    shutil.copy(static_binary, tmp_path / "fn")
    (tmp_path / "fn").chmod(0o700)
    zeroimage("build", "--target", "lambda", "-o", "lambda.tar", "fn")
    zeroimage("build", "-o", "plain.tar", "fn")
    text = zeroimage("inspect", "--target", "lambda", "lambda.tar")
    assert "AWS Lambda: nothing it would refuse" in text.stdout
    assert lambda_problems(zeroimage, "lambda.tar")[1] == []
    assert inspect_api(str(tmp_path / "lambda.tar"), target="lambda").problems == ()
    _, problems = lambda_problems(zeroimage, "plain.tar")
    (problem,) = problems
    assert "/fn (mode 0700, owner 0:0) cannot be executed by user 993:990" in problem
    assert os.stat(tmp_path / "fn").st_mode & 0o777 == 0o700
