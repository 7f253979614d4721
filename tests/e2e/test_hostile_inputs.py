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
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Zeroimage
from tests.support import images, peers
from tests.support.images import directory, text_file
from tests.support.outcomes import refused
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
