"""What a registry hands back is checked before it becomes ours: a layer found by its diff_id in
an image elsewhere enters our manifest as its media type, digest and size only — never its
``urls`` or annotations —, only in the compression the build asks for, and only with a size a
compressor could have made of the tar it stands for."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable

import pytest

from zeroimage.errors import DigestError
from zeroimage.image import Blob
from zeroimage.layers.reuse import RemoteLayer, acceptable, prove
from zeroimage.oci import Descriptor, sha256_digest
from zeroimage.oci import mediatypes as mt

DIGEST = "sha256:" + "ab" * 32
TAR = 10 << 20  # a 10 MiB tar


def desc(media_type: str = mt.DOCKER_LAYER_GZIP, size: int = 3 << 20, **extra: object) -> Descriptor:
    return Descriptor(media_type, DIGEST, size, **extra)  # type: ignore[arg-type]


def test_only_media_type_digest_and_size_are_taken() -> None:
    found = desc(annotations={"org.opencontainers.image.title": "x", "com.example.secret": "1"}, extra={"data": "aGk="})
    taken = acceptable(found, mt.OCI_LAYER_GZIP, TAR)
    assert taken == Descriptor(mt.OCI_LAYER_GZIP, DIGEST, 3 << 20)  # the build's own (OCI) media type
    assert taken is not None and taken.to_dict() == {"mediaType": mt.OCI_LAYER_GZIP, "digest": DIGEST, "size": 3 << 20}


def test_a_layer_with_urls_is_not_reused() -> None:
    """A registry takes a manifest whose layer has urls without holding the blob: the bytes may
    be only where the urls say — another host, never this registry's, never verified here."""
    assert acceptable(desc(urls=("https://elsewhere.example/l.tgz",)), mt.OCI_LAYER_GZIP, TAR) is None


@pytest.mark.parametrize(
    ("found", "wanted"),
    [
        (mt.OCI_LAYER_ZSTD, mt.OCI_LAYER_GZIP),
        (mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD),
        (mt.OCI_LAYER, mt.OCI_LAYER_GZIP),
        (mt.OCI_FOREIGN_LAYER_GZIP, mt.OCI_LAYER_GZIP),  # a non-distributable layer is not ours to reuse
        ("application/vnd.example.other", mt.OCI_LAYER_GZIP),
    ],
)
def test_another_compression_is_not_reused(found: str, wanted: str) -> None:
    assert acceptable(desc(found), wanted, TAR) is None


@pytest.mark.parametrize(
    ("media_type", "size", "taken"),
    [
        (mt.OCI_LAYER_GZIP, TAR // 1032, True),  # deflate's best
        (mt.OCI_LAYER_GZIP, TAR // 1032 - 1, False),  # better than deflate can: a lie
        (mt.OCI_LAYER_GZIP, TAR + TAR // 64 + 65536, True),  # stored blocks and headers
        (mt.OCI_LAYER_GZIP, TAR * 2, False),
        (mt.OCI_LAYER_GZIP, 1 << 40, False),
        (mt.OCI_LAYER_ZSTD, TAR // 32768, True),
        (mt.OCI_LAYER_ZSTD, 1, False),
        (mt.OCI_LAYER, TAR, True),  # uncompressed: exactly the tar
        (mt.OCI_LAYER, TAR + 512, False),
    ],
)
def test_a_size_no_compressor_makes_is_not_reused(media_type: str, size: int, taken: bool) -> None:
    assert (acceptable(desc(media_type, size), media_type, TAR) is not None) is taken


def corrupt_gzip(data: bytes) -> bytes:
    """A gzip stream whose header is right and whose first deflate blocks are not."""
    good = gzip.compress(data, mtime=0)
    return good[:30] + bytes(b ^ 0x55 for b in good[30:200]) + good[200:]


@pytest.mark.parametrize(
    ("media_type", "compress", "why"),
    [
        (mt.OCI_LAYER_GZIP, corrupt_gzip, "not valid gzip data"),
        (mt.OCI_LAYER_ZSTD, lambda tar: gzip.compress(tar, mtime=0), "not valid zstd data"),
    ],
    ids=["gzip-with-a-corrupt-deflate-block", "zstd-that-is-gzip"],
)
def test_a_reused_layer_that_does_not_decompress_cannot_be_signed(
    media_type: str, compress: Callable[[bytes], bytes], why: str
) -> None:
    """Its digest right, its content not what its media type says: proving it says so (before:
    the decompressor's error escaped as "cannot list layer …", which no build was doing)."""
    tar = bytes(range(256)) * 400
    raw = compress(tar)
    digest = sha256_digest(raw)
    layer = RemoteLayer(Blob(Descriptor(media_type, digest, len(raw)), lambda: io.BytesIO(raw)), "r.test/app:v1")
    with pytest.raises(DigestError) as raised:
        prove(layer, sha256_digest(tar))
    message = raised.value.message
    assert message.startswith(f"layer {digest} of r.test/app:v1 does not decompress ({why} ("), message
    assert message.endswith(")): it cannot be signed"), message
