"""Issue 19: no input reaches an internal error. Each case is a hole that, before, ended in a
traceback turned "internal error" (exit 70), a hang, or an image no peer could open; each must
now end in one line and exit 1 or 2 before any work — or, where the input is legal however odd,
in an image that a real peer (skopeo, umoci, GNU tar) opens.

* Tags: ``oci:DIR:TAG`` and ``oci-archive:PATH:TAG`` follow the image-spec's grammar of
  ``org.opencontainers.image.ref.name``, which skopeo and umoci enforce: every tag zeroimage
  takes opens in both, every other is a usage error naming it. docker-archive names follow
  Docker's grammar and never carry a digest.
* Deep ``--add`` trees: walked without recursion; a tree whose paths no image can hold is
  refused in one line.
* zstd base layers: a frame asking for a window over 128 MiB is refused before it is allocated;
  a layer of several frames is read whole.
* Bases of absurd layer counts: refused when the manifest is read, before any blob is fetched.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zeroimage
from tests.conftest import Zeroimage
from tests.support import images, peers
from tests.support.attached import put_manifest, upload_blob
from tests.support.images import directory, text_file
from tests.support.outcomes import fingerprint, refused, requests_for
from tests.support.registry import Registry, start_registry

#: Peak RSS a refusal may take, in kB (a build takes about 40 MB).
MAX_RSS_KB = 150_000
BASE_FILES = [directory("etc"), text_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")]
SHA = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


# -- zstd windows --------------------------------------------------------------------------------

OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def tar_of(members: list[tuple[str, bytes | None]], end: bool = True) -> bytes:
    """A tar of directories (None) and files; without the end-of-archive blocks unless ``end``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        written = out.tell()
    return out.getvalue() if end else out.getvalue()[:written]


def zstd(data: bytes, *options: str) -> bytes:
    """``data`` compressed by the zstd command (a peer), read from a pipe: its size unknown, the
    frame declares the window asked for."""
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    return subprocess.run(["zstd", "-q", "-c", *options], input=data, capture_output=True, check=True).stdout


def layout_of(root: Path, layers: list[tuple[str, bytes, bytes]], repeat: int = 1) -> Path:
    """An OCI layout of one linux/amd64 image whose layers are ``(media type, blob, tar)``, the
    list named ``repeat`` times over (one blob may be named by many descriptors)."""
    (root / "blobs" / "sha256").mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = peers.digest_of(data)
        (root / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    descriptors = [{"mediaType": media_type, **put(blob)} for media_type, blob, _ in layers] * repeat
    diff_ids = [peers.digest_of(tar) for _, _, tar in layers] * repeat
    config = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    manifest = {
        "schemaVersion": 2,
        "mediaType": images.OCI_MANIFEST,
        "config": {"mediaType": images.OCI_CONFIG, **put(json.dumps(config).encode())},
        "layers": descriptors,
    }
    entry = {
        "mediaType": images.OCI_MANIFEST,
        **put(json.dumps(manifest, separators=(",", ":")).encode()),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return root


PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"


def test_a_zstd_frame_asking_for_a_2_gib_window_is_refused_in_bounded_memory(
    zeroimage: Zeroimage, tmp_path: Path
) -> None:
    """``zstd --long=31``: the frame declares a 2 GiB window (before: ZstdError, an internal
    error). Refused before any of it is allocated, naming the layer."""
    tar = tar_of([("etc", None), ("etc/passwd", PASSWD)])
    blob = zstd(tar, "--long=31")
    layout_of(tmp_path / "base", [(OCI_LAYER_ZSTD, blob, tar)])
    images.tiny_program(tmp_path / "app")
    result = zeroimage(
        "build", "--from", "oci:base", "--user", "app", "-o", "out.tar", "app", check=False, measure_rss=True
    )
    refused(result, 1, peers.digest_of(blob), "window larger than 128 MiB")
    assert result.peak_rss_kb is not None and result.peak_rss_kb < MAX_RSS_KB, result.peak_rss_kb
    assert not (tmp_path / "out.tar").exists()


def corrupt_deflate(tar: bytes) -> bytes:
    """A gzip stream whose header is right and whose first deflate blocks are not."""
    good = gzip.compress(tar, mtime=0)
    return good[:30] + bytes(b ^ 0x55 for b in good[30:200]) + good[200:]


@pytest.mark.parametrize(
    ("media_type", "corrupt", "expect"),
    [
        (images.OCI_LAYER_GZIP, corrupt_deflate, "not valid gzip data"),
        (OCI_LAYER_ZSTD, lambda tar: gzip.compress(tar, mtime=0), "not valid zstd data"),
    ],
    ids=["gzip-with-a-corrupt-deflate-block", "zstd-that-is-gzip"],
)
def test_a_layer_that_does_not_decompress_is_refused(
    zeroimage: Zeroimage, tmp_path: Path, media_type: str, corrupt: Callable[[bytes], bytes], expect: str
) -> None:
    """Its digest right (the archive's author made it so), its content not what its media type
    says: before, ISA-L's and zstd's own errors escaped as internal errors."""
    tar = tar_of([("etc", None), ("etc/passwd", PASSWD), *((f"f{n}", bytes(range(256)) * 40) for n in range(20))])
    blob = corrupt(tar)
    layout_of(tmp_path / "base", [(media_type, blob, tar)])
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "--from", "oci:base", "--user", "app", "-o", "out.tar", "app", check=False)
    refused(result, 1, peers.digest_of(blob), expect)
    assert not (tmp_path / "out.tar").exists()


def test_zstd_layers_within_the_bound_and_of_several_frames_are_read_whole(
    zeroimage: Zeroimage, tmp_path: Path
) -> None:
    """The positive controls: a 128 MiB window (``--long=27``, what ``--ultra -22`` writes) is
    taken, and a layer of two frames (as zstd:chunked and pzstd write them), /etc/passwd in the
    second, is read to its end."""
    images.tiny_program(tmp_path / "app")
    first, second = [("etc", None)], [("etc/passwd", PASSWD)]
    whole = tar_of(first + second)
    head = tar_of(first, end=False)
    assert whole.startswith(head)
    for name, blob in [
        ("window-128m", zstd(whole, "--long=27")),
        ("two-frames", zstd(head) + zstd(whole[len(head) :])),
    ]:
        layout_of(tmp_path / name, [(OCI_LAYER_ZSTD, blob, whole)])
        result = zeroimage("build", "--from", f"oci:{name}", "--user", "app", "-o", f"{name}.tar", "app")
        assert result.returncode == 0, result.describe()
        config = images.read_image(tmp_path / f"{name}.tar", tmp_path).config
        assert config["config"]["User"] == "1000:1000", name


# -- absurd layer counts -------------------------------------------------------------------------


def small_layer() -> tuple[str, bytes, bytes]:
    tar = tar_of([("etc", None), ("etc/passwd", PASSWD)])
    return images.OCI_LAYER_GZIP, gzip.compress(tar, mtime=0), tar


def test_a_base_of_1001_layers_is_refused_and_one_of_1000_taken(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """The bound is 1,000 layers (overlay filesystems stop near 128; Docker's overlay2 at 125).
    Before: any number was taken, each layer listed (and, from a registry, downloaded)."""
    images.tiny_program(tmp_path / "app")
    layout_of(tmp_path / "over", [small_layer()], repeat=1001)
    refused(zeroimage("build", "--from", "oci:over", "-o", "out.tar", "app", check=False), 1, "1001 layers", "1000")
    assert not (tmp_path / "out.tar").exists()
    layout_of(tmp_path / "at", [small_layer()], repeat=1000)
    zeroimage("build", "--from", "oci:at", "-o", "out.tar", "app")
    assert len(peers.skopeo_inspect(f"oci-archive:{tmp_path / 'out.tar'}")["Layers"]) == 1001


def test_a_manifest_naming_as_many_layers_as_4_mib_holds_is_refused_quickly(
    zeroimage: Zeroimage, tmp_path: Path
) -> None:
    """25,000 layers (a manifest can hold no more: 100,000 descriptors take over 8 MB, and a
    manifest over 4 MiB is refused for its size), and a config of as many diff_ids: refused
    from the manifest, in bounded memory, without a layer listed."""
    images.tiny_program(tmp_path / "app")
    layout_of(tmp_path / "many", [small_layer()], repeat=25_000)
    result = zeroimage("build", "--from", "oci:many", "-o", "out.tar", "app", check=False, measure_rss=True)
    refused(result, 1, "25000 layers")
    assert result.peak_rss_kb is not None and result.peak_rss_kb < MAX_RSS_KB, result.peak_rss_kb


def push(registry: Registry, repository: str, tag: str, layout: Path) -> None:
    """Push the image of a :func:`layout_of` layout with plain requests of the distribution API
    (each blob once, then the manifest as it is): skopeo copies a layer named 1,001 times over
    one by one, for minutes."""
    blobs = layout / "blobs" / "sha256"
    manifest = (blobs / json.loads((layout / "index.json").read_text())["manifests"][0]["digest"][7:]).read_bytes()
    named = json.loads(manifest)
    for digest in dict.fromkeys([named["config"]["digest"], *(layer["digest"] for layer in named["layers"])]):
        upload_blob(registry.url, repository, (blobs / digest[7:]).read_bytes())
    put_manifest(registry.url, repository, tag, manifest, images.OCI_MANIFEST)


def test_a_registry_base_of_too_many_layers_is_refused_before_any_blob_is_fetched(
    zeroimage: Zeroimage, registry: Registry, tmp_path: Path
) -> None:
    """What the bound saves: from a registry, each layer is a download. The registry's log
    shows the manifest read, and not one blob (the config neither)."""
    images.tiny_program(tmp_path / "app")
    repository = "hostile/layers"
    push(registry, repository, "v1", layout_of(tmp_path / "over", [small_layer()], repeat=1001))
    assert (
        len(json.loads(peers.skopeo_inspect(f"docker://{registry.host}/{repository}:v1", raw=True))["layers"]) == 1001
    )
    pushed = len(requests_for(registry, repository))
    result = zeroimage("build", "--from", f"{registry.host}/{repository}:v1", "-o", "out.tar", "app", check=False)
    refused(result, 1, "1001 layers")
    asked = requests_for(registry, repository)[pushed:]
    assert any("/manifests/v1" in line for line in asked), asked
    assert not any("/blobs/" in line for line in asked), asked


# -- deep --add trees ----------------------------------------------------------------------------


def make_deep_tree(root: Path, depth: int) -> None:
    """``root/d/d/…/d/leaf``, ``depth`` directories deep, made one level at a time through a
    directory descriptor: its whole path is longer than the system takes in one call."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"at the bottom\n")
        os.close(leaf)
    finally:
        os.close(fd)


def remove_deep_tree(root: Path) -> None:
    """Remove what :func:`make_deep_tree` made, one level at a time (``shutil.rmtree`` of
    Python 3.11 recurses once per level)."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    while True:
        try:
            fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        except FileNotFoundError:
            break
    for name in os.listdir(fds[-1]):
        os.unlink(name, dir_fd=fds[-1])
    while len(fds) > 1:
        os.close(fds.pop())
        os.rmdir("d", dir_fd=fds[-1])
    os.close(fds[0])
    root.rmdir()


@pytest.fixture
def deep_tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "deep"
    yield root
    if root.exists():
        remove_deep_tree(root)


def test_a_tree_too_deep_for_any_image_is_refused_in_one_line(
    zeroimage: Zeroimage, tmp_path: Path, deep_tree: Path
) -> None:
    """5,000 levels: deeper than Python's recursion limit and than PATH_MAX (before: an
    internal error, RecursionError in os.walk)."""
    make_deep_tree(deep_tree, 5000)
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "--add", "deep:/deep", "-o", "out.tar", "app", check=False, measure_rss=True)
    refused(result, 1, "--add deep", "too deep", "4095 bytes")
    assert len(result.stderr) < 600
    assert result.peak_rss_kb is not None and result.peak_rss_kb < MAX_RSS_KB, result.peak_rss_kb
    assert not (tmp_path / "out.tar").exists()


def test_a_tree_deeper_than_the_recursion_limit_is_added_whole(
    zeroimage: Zeroimage, tmp_path: Path, deep_tree: Path
) -> None:
    """1,200 levels (a path of 2,400 bytes: any runtime unpacks it): the image holds the leaf,
    as GNU tar lists the layer (before: an internal error)."""
    depth = 1200
    make_deep_tree(deep_tree, depth)
    images.tiny_program(tmp_path / "app")
    zeroimage("build", "--add", "deep:/deep", "-o", "out.tar", "app")
    image = images.read_image(tmp_path / "out.tar", tmp_path)
    layer = image.blob(image.manifest["layers"][0]["digest"])
    listed = subprocess.run(["tar", "-tzf", "-"], input=layer, capture_output=True, check=True).stdout.decode()
    names = [name.rstrip("/") for name in listed.splitlines()]
    leaf = "deep/" + "d/" * depth + "leaf"
    assert leaf in names
    assert len(names) == depth + 2  # deep, its depth directories, the leaf: nothing left out


def test_a_base_layer_holding_a_path_5000_deep_is_listed(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """A base's filesystem is a tree walked with stacks of its own, no recursion: a layer
    holding a directory at each of 5,000 levels (the deepest path 10 kB, in a PAX header) is
    listed, and the build goes on to read /etc/passwd from it."""
    depth = 5000
    deep = ["d/" * level + "d" for level in range(depth)]
    tar = tar_of([("etc", None), ("etc/passwd", PASSWD), *((path, None) for path in deep)])
    layout_of(tmp_path / "base", [(images.OCI_LAYER_GZIP, gzip.compress(tar, mtime=0), tar)])
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "--from", "oci:base", "--user", "app", "-o", "out.tar", "app", measure_rss=True)
    assert result.peak_rss_kb is not None and result.peak_rss_kb < MAX_RSS_KB, result.peak_rss_kb
    assert images.read_image(tmp_path / "out.tar", tmp_path).config["config"]["User"] == "1000:1000"


@pytest.mark.parametrize(
    ("path", "expect"),
    [("/" + "n" * 256, "longer than 255 bytes"), ("/a" * 2048 + "/app", "longer than 4095 bytes")],
    ids=["name-over-NAME_MAX", "path-over-PATH_MAX"],
)
def test_a_path_in_the_image_no_runtime_can_create_is_refused(
    zeroimage: Zeroimage, tmp_path: Path, path: str, expect: str
) -> None:
    """Before: written into the layer, which every runtime then fails to unpack (ENAMETOOLONG)."""
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "--entrypoint-path", path, "-o", "out.tar", "app", check=False)
    refused(result, 2, expect)
    assert len(result.stderr) < 600
    assert not (tmp_path / "out.tar").exists()


# -- tags ----------------------------------------------------------------------------------------

BAD_OCI_TAGS = {
    "dot-dot": "a..b",
    "leading-dash": "-x",
    "trailing-dot": "x.",
    "double-underscore": "a__b",
    "triple-dash": "a---b",
    "space": "a b",
    "newline": "v1\nv2",
    "terminal-escape": "a\x1b[2Jb",
    "non-ascii": "café",
    "leading-slash": "/x",
    "climbing": "../x",
    "empty-component": "a//b",
    "absurdly-long": "a" * 100_000,
}


@pytest.mark.parametrize("where", ["oci:lay", "oci-archive:x.tar"])
@pytest.mark.parametrize("tag", BAD_OCI_TAGS.values(), ids=BAD_OCI_TAGS.keys())
def test_an_oci_tag_outside_the_grammar_is_refused_before_any_work(
    zeroimage: Zeroimage, tmp_path: Path, where: str, tag: str
) -> None:
    """Before: written as it was (a newline, an escape, 100 kB into index.json), and neither
    skopeo nor umoci could open it."""
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    result = zeroimage("build", "-o", f"{where}:{tag}", "app", check=False)
    refused(result, 2, "tag")
    line = result.stderr.strip()
    assert "\x1b" not in line and len(line) < 600, line
    assert repr(tag[:100]) in line or "more than 512" in line, line
    assert fingerprint(tmp_path) == before


GOOD_OCI_TAGS = {
    "plain": "v1.2.3",
    "colon": "a:b",
    "at": "a@b",
    "a-reference": "example.com/team/app:v1",
    "plus": "1.0+build.5",
    "double-dash": "a--b",
    "mixed": "A.B_C-D",
    "longest": "t" * 512,
}


@pytest.mark.parametrize("tag", GOOD_OCI_TAGS.values(), ids=GOOD_OCI_TAGS.keys())
def test_every_oci_tag_taken_opens_in_skopeo_and_umoci(
    zeroimage: Zeroimage, tmp_path: Path, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grammar's odd corners (``:``, ``@``, ``/``, ``+``) are tags skopeo and umoci open by
    the name printed: their ``DIR:TAG`` ends the path at the first colon, as zeroimage's does."""
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "-o", f"oci:lay:{tag}", "-o", f"oci-archive:x.tar:{tag}", "app")
    printed = dict(line.split("  # ") for line in result.stdout.splitlines())
    assert list(printed) == [f"oci:lay:{tag}", f"oci-archive:x.tar:{tag}"]
    monkeypatch.chdir(tmp_path)
    for where, digest in printed.items():
        assert peers.digest_of(peers.skopeo_inspect(where, raw=True)) == digest, where
    peers.umoci_unpack(Path("lay"), tag, tmp_path / "bundle")
    assert (tmp_path / "bundle" / "rootfs" / "app").is_file()


@pytest.mark.parametrize("tag", ["a..b", "v1\nv2", "a" * 100_000])
def test_reading_by_a_tag_outside_the_grammar_is_a_usage_error(zeroimage: Zeroimage, tmp_path: Path, tag: str) -> None:
    """``--from oci:DIR:TAG`` and ``inspect`` by such a tag: refused as the output is, before
    the layout is opened (before: looked up, and told with the whole tag echoed)."""
    images.tiny_program(tmp_path / "app")
    images.write_layout(tmp_path / "L", [BASE_FILES])
    for command in (["build", "--from", f"oci:L:{tag}", "-o", "out.tar", "app"], ["inspect", f"oci:L:{tag}"]):
        result = zeroimage(*command, check=False)
        refused(result, 2, "tag")
        assert len(result.stderr) < 600
    assert not (tmp_path / "out.tar").exists()


def test_a_docker_archive_name_never_carries_a_digest(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """``docker-archive:PATH:NAME@DIGEST`` is refused, as skopeo refuses it (before: written
    as ``NAME:latest``, the digest dropped without a word)."""
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    for name in (f"app@{SHA}", f"app:v1@{SHA}"):
        refused(zeroimage("build", "-o", f"docker-archive:d.tar:{name}", "app", check=False), 2, "not a digest")
    assert fingerprint(tmp_path) == before


def test_a_docker_tag_follows_dockers_grammar(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """Docker's tag grammar (``[\\w][\\w.-]{0,127}``) takes ``1..2`` — a tag is never a path —
    and skopeo opens it; white space, escapes and 129 characters are refused."""
    images.tiny_program(tmp_path / "app")
    result = zeroimage("build", "-o", "docker-archive:d.tar:app:1..2", "app")
    where, _, image_id = result.stdout.strip().partition("  # image ID ")
    assert where == "docker-archive:d.tar:app:1..2"
    config = peers.skopeo_inspect(f"docker-archive:{tmp_path / 'd.tar'}:app:1..2", raw=True, config=True)
    assert peers.digest_of(config) == image_id
    for bad in ("app:a\x1bb", "app:a b", "app:" + "t" * 129):
        refused(zeroimage("build", "-o", f"docker-archive:e.tar:{bad}", "app", check=False), 2, "invalid reference")
    assert not (tmp_path / "e.tar").exists()


NUL_REQUESTS = {
    "oci-tag": {"outputs": ["oci:lay:a\0b"]},
    "oci-dir": {"outputs": ["oci:l\0ay"]},
    "archive": {"outputs": ["x\0.tar"]},
    "program": {"programs": ["a\0pp"]},
    "add-source": {"add": ["a\0pp:/srv/app"]},
    "add-dest": {"add": ["app:/srv/a\0pp"]},
    "digest-file": {"digest_file": "d\0f"},
    "base-layout": {"base": "oci:L\0"},
    "base-archive": {"from_archive": "b\0ase.tar"},
    "entrypoint-path": {"entrypoint_path": "/a\0pp"},
}


@pytest.mark.parametrize("request_", NUL_REQUESTS.values(), ids=NUL_REQUESTS.keys())
def test_a_nul_in_any_path_is_a_usage_error(
    tmp_path: Path, request_: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the Python API (a command line cannot carry a NUL): before, Python's own
    ``ValueError: embedded null byte`` escaped, or the name was cut at the NUL in the image."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROIMAGE_CACHE_DIR", str(tmp_path / ".cache"))
    images.tiny_program(tmp_path / "app")
    before = fingerprint(tmp_path)
    keywords: dict[str, object] = {"programs": ["app"], "outputs": ["out.tar"], **request_}
    with pytest.raises(zeroimage.UsageError, match="NUL"):
        zeroimage.build(**keywords)  # type: ignore[arg-type]
    assert fingerprint(tmp_path) == before


# -- relatives -----------------------------------------------------------------------------------


def test_a_fifo_named_as_a_base_is_refused_without_waiting_for_a_writer(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """A bare ``--from PATH`` (or ``inspect PATH``) that exists is opened as what it is: a FIFO
    is no image (before: opened to be read as a tar, waiting forever for a writer)."""
    images.tiny_program(tmp_path / "app")
    os.mkfifo(tmp_path / "fifo")
    for command in (["build", "--from", "fifo", "-o", "out.tar", "app"], ["inspect", "fifo"]):
        refused(zeroimage(*command, check=False, timeout=60), 1, "fifo", "neither a file nor a directory")
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize(
    "value", ["4294967296", "2147483648", "1:2147483648", "9" * 5000], ids=["2^32", "2^31", "gid-2^31", "5000-digits"]
)
def test_chown_takes_the_ids_a_runtime_takes(zeroimage: Zeroimage, tmp_path: Path, value: str) -> None:
    """runc takes uids and gids up to 2^31-1, as ``--user`` does (before: any number was written
    into the layer; 5,000 digits were an internal error, int() refusing them)."""
    images.tiny_program(tmp_path / "app")
    (tmp_path / "conf").write_text("x\n")
    result = zeroimage("build", "--chown", value, "--add", "conf:/etc/conf", "-o", "out.tar", "app", check=False)
    refused(result, 2, "--chown", "2147483647")
    assert len(result.stderr) < 600
    assert not (tmp_path / "out.tar").exists()
