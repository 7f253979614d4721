"""The OCI value types: parsing keeps what it does not model; bad documents give InputError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroimage.errors import DigestError, InputError, ZeroimageError
from zeroimage.oci import Descriptor, ImageConfig, Index, Manifest, Platform, parse_document, validate_digest
from zeroimage.oci import mediatypes as mt

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


def test_digest_validation_refuses_traversal_and_bad_lengths() -> None:
    assert validate_digest(D1) == D1
    for bad in ["sha256:../../etc/passwd", "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 32, "", None, 5]:
        with pytest.raises(DigestError):
            validate_digest(bad)


def test_manifest_round_trip_keeps_unknown_fields() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10, "x-extra": [1]},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 5, "urls": ["https://x/y"]}],
        "annotations": {"a": "b"},
        "x-unknown": {"kept": True},
    }
    manifest = parse_document(json.dumps(doc).encode(), "m")
    assert isinstance(manifest, Manifest)
    again = json.loads(manifest.to_bytes())
    assert again == doc


def test_index_without_media_type_is_recognised_by_shape() -> None:
    doc = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": D1,
                "size": 1,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            }
        ],
    }
    index = parse_document(json.dumps(doc).encode(), "i")
    assert isinstance(index, Index)
    assert index.manifests[0].platform == Platform("linux", "arm64", "v8")


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 1, "fsLayers": []}',
        json.dumps(
            {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {"digest": "sha256:../x", "size": 1}}
        ).encode(),
        json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {"digest": D1, "size": -1}}).encode(),
        json.dumps({"schemaVersion": 2, "manifests": "nope"}).encode(),
        b"{" * 100000,
    ],
)
def test_bad_documents_are_input_errors(doc: bytes) -> None:
    with pytest.raises(InputError):
        parse_document(doc, "doc")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_parses_or_raises_our_error(value: object) -> None:
    for wrapped in (
        value,
        {"schemaVersion": 2, "manifests": value},
        {"schemaVersion": 2, "config": value, "layers": value},
    ):
        with contextlib.suppress(ZeroimageError):
            assert isinstance(parse_document(json.dumps(wrapped).encode(), "doc"), Manifest | Index)


def test_config_changes_keep_unknown_fields_and_os_version() -> None:
    base = {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.20348.1",
        "config": {"Cmd": ["cmd"], "Env": ["A=1"], "X-Custom": 1},
        "rootfs": {"type": "layers", "diff_ids": [D1]},
        "history": [{"created_by": "base"}],
        "unknown_top": {"k": "v"},
    }
    config = ImageConfig.from_bytes(json.dumps(base).encode())
    changed = (
        config.with_platform(Platform("windows", "amd64"))
        .with_layer(D2, "2024-01-01T00:00:00Z", "zeroimage")
        .with_entrypoint(["/app"])
        .with_created("2024-01-01T00:00:00Z")
    )
    data = json.loads(changed.to_bytes())
    assert data["unknown_top"] == {"k": "v"}
    assert data["os.version"] == "10.0.20348.1"
    assert data["config"] == {"Env": ["A=1"], "X-Custom": 1, "Entrypoint": ["/app"]}
    assert data["rootfs"] == {"type": "layers", "diff_ids": [D1, D2]}
    assert len(data["history"]) == 2
    assert json.loads(config.to_bytes()) == base  # the original is untouched


def test_scratch_config_has_rootfs_type_layers() -> None:
    data = json.loads(ImageConfig.scratch(Platform("linux", "arm", "v7")).to_bytes())
    assert data["rootfs"] == {"type": "layers", "diff_ids": []}
    assert (data["os"], data["architecture"], data["variant"]) == ("linux", "arm", "v7")


def test_descriptor_refuses_bad_fields() -> None:
    with pytest.raises(InputError):
        Descriptor.from_dict({"mediaType": 1, "digest": D1, "size": 1})
    with pytest.raises(InputError):
        Descriptor.from_dict({"digest": D1, "size": True})
    assert Descriptor.from_dict({"digest": D1, "size": 3}).to_dict() == {"digest": D1, "size": 3}
