"""Fleets (issue 15): work done once, on any runner, is not done again — the registry as the
shared cache, the local cache by content, and many runners at once.

Every test runs the real CLI against the real CNCF registry and asserts what the registry's
access log shows a run asked for, what ``--json`` says of each layer, the bytes of what was
written, and that skopeo, umoci and runc accept and run the result.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Zeroimage
from tests.support import cli, images, peers
from tests.support.fleet import (
    Recompressed,
    bad_blobs,
    file_in_layer,
    mark,
    program_copy,
    pull,
    recompressed,
    requests_since,
    statuses_since,
)
from tests.support.outcomes import digest_in, fingerprint, refused
from tests.support.registry import Registry, seed, start_registry

#: Every build of a fleet fixes the time it writes, as reproducible CI does.
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
HELLO = "Hello from a FROM-scratch image built by zeroimage!"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module; each test uses repositories of its own."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def layers_of(result: cli.Result) -> list[dict[str, object]]:
    """The new layers ``--json`` describes (one platform)."""
    (platform,) = json.loads(result.stdout)["platforms"]
    layers: list[dict[str, object]] = platform["layers"]
    return layers


def query(request: str) -> dict[str, list[str]]:
    """The query of a logged request line (``METHOD /path?query HTTP/1.1``), decoded."""
    return parse_qs(urlsplit(request.split()[1]).query)


def manifest_at(registry: Registry, repo_tag: str) -> tuple[str, dict[str, Any]]:
    """The digest and manifest the registry serves for ``repo_tag``, read by skopeo."""
    raw = peers.skopeo_inspect(registry.ref(repo_tag), raw=True)
    manifest: dict[str, Any] = json.loads(raw)
    return peers.digest_of(raw), manifest


# -- reuse through the registry -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gzip9(tmp_path_factory: pytest.TempPathFactory, static_binary: Path) -> Recompressed:
    """The image of ``static_binary`` as zeroimage builds it, its layer recompressed by
    ``gzip -9``: what another tool (or another version of zeroimage) would have pushed."""
    root = tmp_path_factory.mktemp("gzip9")
    archive = root / "made.tar"
    cli.Home.under(root / "builder").run("build", "-o", str(archive), str(static_binary), env=EPOCH, check=True)
    return recompressed(archive, root / "layout")


def test_a_layer_another_tool_compressed_is_reused_by_diff_id_without_upload(
    registry: Registry, gzip9: Recompressed, static_binary: Path, tmp_path: Path
) -> None:
    seed(registry, f"oci:{gzip9.layout}:{gzip9.tag}", "reuse/app:v1")
    start = mark(registry)
    fresh = cli.Home.under(tmp_path / "runner")
    proc = fresh.run(
        "build", "--json", "-v", "--push", f"{registry.host}/reuse/app:v1", str(static_binary), env=EPOCH, check=True
    )
    sent = requests_since(registry, start)
    assert not [r for r in sent if r.startswith(("POST", "PATCH")) or "/blobs/uploads/" in r], sent
    (layer,) = layers_of(proc)
    assert (layer["origin"], layer["from"], layer["digest"]) == (
        "registry",
        f"{registry.host}/reuse/app:v1",
        gzip9.layer,
    )
    assert layer["diffID"] == gzip9.diff_id
    assert f"from {registry.host}/reuse/app:v1" in proc.stderr  # -v says where the layer came from
    assert not list((fresh.cache / "blobs" / "sha256").iterdir())  # nothing compressed, nothing kept
    digest, manifest = manifest_at(registry, "reuse/app:v1")
    assert json.loads(proc.stdout)["digest"] == digest
    assert [entry["digest"] for entry in manifest["layers"]] == [gzip9.layer]
    assert manifest["config"]["digest"] == gzip9.config
    result = peers.run_image(pull(registry, "reuse/app:v1", tmp_path / "pulled.tar"))
    assert HELLO in result.stdout
    # The same runner, its cache kept, pushing to a registry that lacks that blob: the layer is
    # compressed here (the other tool's bytes cannot be made again), never a false "changed".
    with start_registry(tmp_path / "other-registry") as other:
        again = fresh.run("build", "--json", "--push", f"{other.host}/app:v1", str(static_binary), env=EPOCH)
        assert again.returncode == 0, again.describe()
        (made,) = layers_of(again)
        assert made["origin"] == "made" and made["diffID"] == gzip9.diff_id and made["digest"] != gzip9.layer


def relabelled(gzip9: Recompressed, root: Path, **changes: Any) -> str:
    """A copy of ``gzip9``'s layout whose one layer descriptor has ``changes`` (urls,
    annotations, mediaType): what an image pushed by someone else may say of a layer."""
    layout = root / "layout"
    shutil.copytree(gzip9.layout, layout)
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads(images.blob(layout, entry["digest"]))
    manifest["layers"] = [{**manifest["layers"][0], **changes}]
    raw = json.dumps(manifest).encode()
    digest = peers.digest_of(raw)
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(raw)
    index["manifests"] = [{**entry, "digest": digest, "size": len(raw)}]
    (layout / "index.json").write_text(json.dumps(index))
    return f"oci:{layout}:{gzip9.tag}"


@pytest.mark.parametrize(
    ("changes", "reused"),
    [
        ({"annotations": {"com.example.planted": "yes"}}, True),  # reused, its annotations left behind
        ({"urls": ["https://elsewhere.example/layer.tgz"]}, False),  # its bytes may be only there
        ({"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd"}, False),  # not the compression asked
    ],
    ids=["annotations", "urls", "other-compression"],
)
def test_what_another_image_says_of_a_layer_is_checked_before_it_is_reused(
    registry: Registry,
    gzip9: Recompressed,
    static_binary: Path,
    tmp_path: Path,
    changes: dict[str, Any],
    reused: bool,
) -> None:
    """A layer found by its diff_id enters our manifest as media type, digest and size only —
    never another image's annotations or urls —, and only in the compression the build asks
    for: anything else is made here."""
    repository = f"handback/{next(iter(changes)).lower()}"
    seed(registry, relabelled(gzip9, tmp_path, **changes), f"{repository}:v1")
    proc = cli.Home.under(tmp_path / "runner").run(
        "build", "--json", "--push", f"{registry.host}/{repository}:v1", str(static_binary), env=EPOCH, check=True
    )
    (layer,) = layers_of(proc)
    assert layer["origin"] == ("registry" if reused else "made"), layer
    _, manifest = manifest_at(registry, f"{repository}:v1")
    (pushed,) = manifest["layers"]
    assert set(pushed) == {"mediaType", "digest", "size"}, pushed
    assert pushed["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert (pushed["digest"] == gzip9.layer) is reused
    result = peers.run_image(pull(registry, f"{repository}:v1", tmp_path / "pulled.tar"))
    assert HELLO in result.stdout


def test_cache_from_mounts_a_layer_into_another_repository(
    registry: Registry, gzip9: Recompressed, static_binary: Path, tmp_path: Path
) -> None:
    seed(registry, f"oci:{gzip9.layout}:{gzip9.tag}", "fleet/cache:main")
    start = mark(registry)
    proc = cli.Home.under(tmp_path / "runner").run(
        "build",
        "--json",
        "--push",
        f"{registry.host}/fleet/svc:v1",
        "--cache-from",
        f"{registry.host}/fleet/cache:main",
        str(static_binary),
        env=EPOCH,
        check=True,
    )
    (layer,) = layers_of(proc)
    assert (layer["origin"], layer["from"], layer["digest"]) == (
        "registry",
        f"{registry.host}/fleet/cache:main",
        gzip9.layer,
    )
    answered = statuses_since(registry, start)
    mounts = [(query(r), status) for r, status in answered if r.startswith("POST /v2/fleet/svc/blobs/uploads/?")]
    assert mounts == [({"mount": [gzip9.layer], "from": ["fleet/cache"]}, 201)], answered
    hexdigest = gzip9.layer.split(":")[1]
    assert not [r for r, _ in answered if r.startswith("PUT /v2/fleet/svc/blobs/") and hexdigest in r], answered
    assert not [r for r, _ in answered if r.startswith("PATCH")], answered  # the config is small: one PUT
    digest, manifest = manifest_at(registry, "fleet/svc:v1")
    assert json.loads(proc.stdout)["digest"] == digest
    assert [entry["digest"] for entry in manifest["layers"]] == [gzip9.layer]


# -- bases kept in the store; --pull ------------------------------------------------------------


def base_layout(root: Path, release: str) -> images.Image:
    """A two-layer base: one layer every release shares, one of its own (512 kB of noise, so
    that a download is a download), written apart from zeroimage's code."""
    shared = [images.directory("etc"), images.text_file("etc/os-release", "ID=fleet-test\n")]
    own = [
        images.directory("srv"),
        images.text_file("srv/release", release),
        images.Member("srv/noise", data=os.urandom(512 * 1024)),
    ]
    layout = images.write_layout(root, [shared, own])
    return images.read_image(layout, root.parent)


def blob_gets(requests: list[str], repository: str) -> list[str]:
    """The digests of the blobs ``requests`` downloaded from ``repository``."""
    prefix = f"GET /v2/{repository}/blobs/"
    return [r.split()[1].rsplit("/", 1)[1] for r in requests if r.startswith(prefix)]


def test_a_second_build_from_a_registry_base_downloads_nothing_and_follows_a_moved_tag(
    registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    v1 = base_layout(tmp_path / "v1", "one\n")
    seed(registry, f"oci:{v1.layout}:latest", "kept/base:stable")
    base = f"{registry.host}/kept/base:stable"
    home = cli.Home.under(tmp_path / "runner")
    outputs = [home.work / f"{n}.tar" for n in ("first", "second", "moved")]
    build = ("build", "--from", base, str(static_binary))

    start = mark(registry)
    home.run(*build, "-o", str(outputs[0]), env=EPOCH, check=True)
    v1_blobs = [v1.manifest["config"]["digest"], *(layer["digest"] for layer in v1.manifest["layers"])]
    assert sorted(blob_gets(requests_since(registry, start), "kept/base")) == sorted(v1_blobs)  # each once

    start = mark(registry)
    home.run(*build, "-o", str(outputs[1]), env=EPOCH, check=True)
    assert requests_since(registry, start) == ["HEAD /v2/kept/base/manifests/stable HTTP/1.1"]  # --pull=missing
    assert outputs[1].read_bytes() == outputs[0].read_bytes()

    v2 = base_layout(tmp_path / "v2", "two\n")
    seed(registry, f"oci:{v2.layout}:latest", "kept/base:stable")
    start = mark(registry)
    home.run(*build, "-o", str(outputs[2]), env=EPOCH, check=True)
    shared, own = (layer["digest"] for layer in v2.manifest["layers"])
    assert shared == v1.manifest["layers"][0]["digest"]  # the layer both releases share: kept, not fetched
    assert sorted(blob_gets(requests_since(registry, start), "kept/base")) == sorted(
        [v2.manifest["config"]["digest"], own]
    )
    moved = images.read_image(outputs[2], tmp_path)
    assert [layer["digest"] for layer in moved.manifest["layers"][:2]] == [shared, own]
    assert file_in_layer(moved.blob(own), "srv/release") == b"two\n"
    assert bad_blobs(peers.extract_archive(outputs[2], tmp_path / "moved")) == []


def test_pull_never_builds_offline_from_the_cache_and_names_what_it_lacks(static_binary: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "registry") as registry:
        base_image = base_layout(tmp_path / "base", "offline\n")
        seed(registry, f"oci:{base_image.layout}:latest", "base:v1")
        base = f"{registry.host}/base:v1"
        home = cli.Home.under(tmp_path / "runner")
        online, offline = home.work / "online.tar", home.work / "offline.tar"
        home.run("build", "--from", base, "-o", str(online), str(static_binary), env=EPOCH, check=True)
        registry.stop()
        never = ("build", "--pull=never", "--from", base, str(static_binary))

        home.run(*never, "-o", str(offline), env=EPOCH, check=True)
        assert offline.read_bytes() == online.read_bytes()
        result = peers.run_image(offline)
        assert HELLO in result.stdout

        fresh = cli.Home.under(tmp_path / "fresh")
        before = fingerprint(fresh.work)
        proc = fresh.run(*never, "-o", str(fresh.work / "out.tar"), env=EPOCH)
        refused(proc, 1, base, "--pull=never")
        assert fingerprint(fresh.work) == before

        noise = base_image.manifest["layers"][1]["digest"]
        (home.cache / "blobs" / "sha256" / noise.split(":")[1]).unlink()
        lacking = home.work / "lacking.tar"
        before = fingerprint(home.work)
        proc = home.run(*never, "-o", str(lacking), env=EPOCH)
        refused(proc, 1, noise, "--pull=never")
        assert fingerprint(home.work) == before


# -- many runners at once ---------------------------------------------------------------------------


def test_four_runners_push_the_same_program_to_one_tag_at_once(
    registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    program = program_copy(static_binary, tmp_path / "hello", os.urandom(8 << 20))
    homes = [cli.Home.under(tmp_path / f"runner{n}") for n in range(4)]
    target = f"{registry.host}/fleet/same:v1"
    started = [home.start("build", "--push", target, str(program), env=EPOCH) for home in homes]
    results = [cli.finish(proc) for proc in started]
    for result in results:
        assert result.returncode == 0, result.describe()
    printed = {result.stdout for result in results}
    assert len(printed) == 1, printed
    (line,) = printed.pop().splitlines()
    digest, _ = manifest_at(registry, "fleet/same:v1")
    assert line == f"{registry.host}/fleet/same@{digest}"
    pulled = pull(registry, "fleet/same:v1", tmp_path / "pulled.tar")
    assert bad_blobs(peers.extract_archive(pulled, tmp_path / "pulled")) == []
    assert HELLO in peers.run_image(pulled).stdout


def program_in(archive: Path, tmp: Path) -> bytes:
    """The program (``/hello``) in the top layer of the image in ``archive``, after checking
    that every blob of the archive is what its name says."""
    layout = peers.extract_archive(archive, tmp / f"{archive.name}-layout")
    assert bad_blobs(layout) == [], archive
    image = images.read_image(layout, tmp)
    return file_in_layer(image.blob(image.manifest["layers"][-1]["digest"]), "hello")


def test_builds_sharing_one_cache_at_once_all_succeed_and_leave_no_wrong_blob(
    registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    # Two programs of the same name and size, other bytes: the shape of one is the shape of the other.
    a = program_copy(static_binary, tmp_path / "a" / "hello", os.urandom(2 << 20))
    b = program_copy(static_binary, tmp_path / "b" / "hello", os.urandom(2 << 20))
    home = cli.Home.under(tmp_path / "shared")
    out = home.work
    jobs: dict[str, tuple[Path, tuple[str, ...]]] = {
        "a1": (a, ("-o", str(out / "a1.tar"))),
        "a2": (a, ("-o", str(out / "a2.tar"))),
        "b1": (b, ("-o", str(out / "b1.tar"))),
        "a-push": (a, ("--push", f"{registry.host}/shared/a:v1")),
        "b-push": (b, ("--push", f"{registry.host}/shared/b:v1")),
        "b-both": (b, ("-o", str(out / "b2.tar"), "--push", f"{registry.host}/shared/b2:v1")),
    }
    started = {name: home.start("build", *args, str(program), env=EPOCH) for name, (program, args) in jobs.items()}
    results = {name: cli.finish(proc) for name, proc in started.items()}
    for result in results.values():
        assert result.returncode == 0, result.describe()
    digests = {name: {digest_in(line) for line in r.stdout.splitlines()} for name, r in results.items()}
    assert digests["a1"] == digests["a2"] == digests["a-push"] and len(digests["a1"]) == 1
    assert digests["b1"] == digests["b-push"] == digests["b-both"] and len(digests["b1"]) == 1
    assert digests["a1"] != digests["b1"]
    assert (out / "a1.tar").read_bytes() == (out / "a2.tar").read_bytes()
    expected = {"a1.tar": a, "a2.tar": a, "b1.tar": b, "b2.tar": b}
    for repo, program in (("shared/a", a), ("shared/b", b), ("shared/b2", b)):
        name = f"{repo.replace('/', '-')}.tar"
        pull(registry, f"{repo}:v1", tmp_path / name)
        expected[name] = program
    for name, program in expected.items():
        archive = out / name if (out / name).exists() else tmp_path / name
        peers.skopeo_inspect(f"oci-archive:{archive}")
        assert program_in(archive, tmp_path) == program.read_bytes(), name
    assert bad_blobs(home.cache) == []


# -- reuse on one machine --------------------------------------------------------------------------


def test_a_touched_or_copied_program_is_found_in_the_cache_by_content(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    program = program_copy(static_binary, tmp_path / "src" / "hello", os.urandom(3 << 20))
    first = zeroimage("build", "-v", "-o", "first.tar", str(program), env=EPOCH)
    assert "compressing" in first.stderr  # a 4 MB layer made now says so
    peers.run(["touch", str(program)])
    second = zeroimage("build", "-v", "-o", "second.tar", str(program), env=EPOCH)
    assert "same content as before (cache)" in second.stderr, second.describe()
    assert "compressing" not in second.stderr, second.describe()
    assert (tmp_path / "second.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()

    checkout = tmp_path / "checkout" / "hello"
    checkout.parent.mkdir()
    peers.run(["cp", str(program), str(checkout)])  # another inode, another time, the same bytes
    third = zeroimage("build", "--json", "-v", "-o", "third.tar", str(checkout), env=EPOCH)
    assert [layer["origin"] for layer in layers_of(third)] == ["cache"]
    assert "same content as before (cache)" in third.stderr, third.describe()
    assert (tmp_path / "third.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()

    # Same name, size and mode, other bytes: the content, not the shape, decides.
    changed = program_copy(static_binary, tmp_path / "other" / "hello", os.urandom(3 << 20))
    fourth = zeroimage("build", "--json", "-o", "fourth.tar", str(changed), env=EPOCH)
    assert [layer["origin"] for layer in layers_of(fourth)] == ["made"]
    assert program_in(tmp_path / "fourth.tar", tmp_path) == changed.read_bytes()
