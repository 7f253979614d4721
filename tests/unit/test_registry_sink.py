"""RegistrySink against httpx.MockTransport: one sink for every reference of a registry (one
upload, mounts into the other repositories, a result per reference), the layer streamed while
it is made, an unchanged image only tagged, and discard cancelling what is open."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.mock_registry import Registry, client
from zeroimage.errors import RegistryError
from zeroimage.files import Readable
from zeroimage.image import Blob, ImageGraph, MountSource
from zeroimage.oci import Descriptor, Manifest, sha256_digest
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import NullReporter
from zeroimage.reference import parse_reference
from zeroimage.transports.registry import RegistrySink
from zeroimage.transports.registry.upload import MANIFEST_BLOB_RETRIES, UploadSession

LAYER = b"the layer's compressed bytes" * 100
CONFIG = b'{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}'


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        out = self.data[self.pos : None if n < 0 else self.pos + n]
        self.pos += len(out)
        return out

    def close(self) -> None:
        pass


def graph(origin: MountSource | None = None) -> ImageGraph:
    """An image of one config and one layer."""
    layer = Descriptor(mt.OCI_LAYER_GZIP, sha256_digest(LAYER), len(LAYER))
    config = Descriptor(mt.OCI_CONFIG, sha256_digest(CONFIG), len(CONFIG))
    raw = Manifest(config=config, layers=(layer,)).to_bytes()
    root = Descriptor(mt.OCI_MANIFEST, sha256_digest(raw), len(raw))
    blob = Blob(layer, lambda: Reader(LAYER), origin=origin)
    return ImageGraph(root, {root.digest: raw, config.digest: CONFIG}, {layer.digest: blob}, (layer.digest,))


def sink_of(registry: Registry, *references: str) -> RegistrySink:
    return RegistrySink(
        [parse_reference(r) for r in references], client=client("registry.test", handler=registry, credential=None)
    )


def manifests_put(registry: Registry) -> list[str]:
    return [r.url.path for r in registry.sent(method="PUT") if "/manifests/" in r.url.path]


def test_one_sink_pushes_once_and_mounts_into_the_other_repositories() -> None:
    registry = Registry()
    image = graph()
    sink = sink_of(registry, "registry.test/app:v1", "registry.test/app:latest", "registry.test/mirror:v1")
    results = sink.write(image, NullReporter())
    references = ["registry.test/app:v1", "registry.test/app:latest", "registry.test/mirror:v1"]
    assert [r.reference for r in results] == references
    assert {r.digest for r in results} == {image.root.digest}
    assert [r.blobs for r in results] == [
        {"uploaded": 2, "mounted": 0, "existing": 0},
        {"uploaded": 0, "mounted": 0, "existing": 0},  # the repository has it all by then: a tag only
        {"uploaded": 0, "mounted": 2, "existing": 0},
    ]
    uploads = [r.url.path for r in registry.sent(method="PUT") if "/uploads/" in r.url.path]
    assert len(uploads) == 2 and all(path.startswith("/v2/app/") for path in uploads)
    mounts = [r.url.params["from"] for r in registry.sent(method="POST") if "mount" in r.url.params]
    assert mounts == ["app", "app"]
    assert manifests_put(registry) == ["/v2/app/manifests/v1", "/v2/app/manifests/latest", "/v2/mirror/manifests/v1"]


def test_a_base_layer_of_another_repository_of_the_registry_is_mounted_from_there() -> None:
    registry = Registry()
    registry.blobs[sha256_digest(LAYER)] = LAYER
    registry.links.add(("base", sha256_digest(LAYER)))
    image = graph(origin=MountSource("registry.test", "base"))
    (result,) = sink_of(registry, "registry.test/app:v1").write(image, NullReporter())
    assert result.blobs == {"uploaded": 1, "mounted": 1, "existing": 0}
    assert [r.url.params["from"] for r in registry.sent(method="POST") if "mount" in r.url.params] == ["base"]


def test_the_layer_streamed_while_it_was_made_is_not_uploaded_again() -> None:
    registry = Registry()
    image = graph()
    sink = sink_of(registry, "registry.test/app:v1", "registry.test/mirror:v1")
    tap = sink.layer_tap(NullReporter())
    follower: Readable = Reader(LAYER)
    tap.start(follower)
    tap.finish(image.blobs[sha256_digest(LAYER)].descriptor)
    app, mirror = sink.write(image, NullReporter())
    assert app.blobs == {"uploaded": 2, "mounted": 0, "existing": 0}
    assert mirror.blobs == {"uploaded": 0, "mounted": 2, "existing": 0}
    (patch,) = registry.sent(method="PATCH")  # the stream: one PATCH, to the first repository
    assert patch.url.path.startswith("/v2/app/") and patch.content == LAYER
    assert registry.blobs[sha256_digest(LAYER)] == LAYER
    layer_puts = [r for r in registry.sent(method="PUT") if r.content == LAYER]
    assert layer_puts == []  # committed with an empty PUT, never sent twice


def test_an_image_the_registry_holds_already_is_only_tagged() -> None:
    registry = Registry()
    image = graph()
    sink_of(registry, "registry.test/app:v1").write(image, NullReporter())
    stored = dict(registry.blobs)
    registry.requests.clear()
    again, other = sink_of(registry, "registry.test/app:v1", "registry.test/app:v2").write(image, NullReporter())
    assert again.blobs == other.blobs == {"uploaded": 0, "mounted": 0, "existing": 0}
    assert manifests_put(registry) == ["/v2/app/manifests/v2"]
    assert [r for r in registry.requests if "/blobs/" in r.url.path] == [] and registry.blobs == stored


def test_discard_cancels_the_open_upload_sessions_and_a_tap_cancels_its_own() -> None:
    registry = Registry()
    sink = sink_of(registry, "registry.test/app:v1")
    tap = sink.layer_tap(NullReporter())
    tap.start(Reader(LAYER))
    tap.abort()  # the layer failed: no digest will come
    assert not tap.wait()  # type: ignore[attr-defined]
    (streamed,) = registry.sent(method="PATCH")
    assert [r.url.path for r in registry.sent(method="DELETE")] == [streamed.url.path]
    open_one = UploadSession.start(sink.client, "app", sink._sessions)  # as an upload in flight would
    sink.discard()
    deleted = [r.url.path for r in registry.sent(method="DELETE")]
    assert deleted == [streamed.url.path, open_one.location]
    assert registry.sent(method="PUT") == []  # nothing committed, no manifest


def test_one_sink_is_one_registry() -> None:
    with pytest.raises(ValueError, match="one registry per RegistrySink"):
        RegistrySink([parse_reference("a.test/x:1"), parse_reference("b.test/x:1")])
    with pytest.raises(ValueError, match="needs a reference"):
        RegistrySink([])


def blob_unknown_for(times: int) -> Callable[[httpx.Request], httpx.Response | None]:
    """Answer the first ``times`` manifest PUTs as the CNCF registry does while another writer
    commits a blob the manifest names."""
    left = [times]

    def answer(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PUT" or "/manifests/" not in request.url.path or left[0] == 0:
            return None
        left[0] -= 1
        errors = [
            {"code": "DIGEST_INVALID", "message": "provided digest did not match uploaded content"},
            {"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry"},
        ]
        return httpx.Response(400, json={"errors": errors})

    return answer


def pushing_while_blob_unknown(times: int) -> tuple[Registry, RegistrySink, list[float]]:
    """A sink to a registry that calls a blob of the manifest unknown ``times`` times, and the
    pauses the sink's client takes."""
    registry = Registry(override=blob_unknown_for(times))
    sleeps: list[float] = []
    client_ = client("registry.test", handler=registry, sleeps=sleeps, credential=None)
    return registry, RegistrySink([parse_reference("registry.test/app:v1")], client=client_), sleeps


def test_a_manifest_whose_blob_another_writer_is_committing_is_put_again() -> None:
    registry, sink, sleeps = pushing_while_blob_unknown(2)
    (result,) = sink.write(graph(), NullReporter())
    assert result.digest == graph().root.digest
    assert manifests_put(registry) == ["/v2/app/manifests/v1"] * 3 and len(sleeps) == 2
    assert registry.manifests[("app", "v1")] == graph().documents[graph().root.digest]


def test_a_blob_the_registry_keeps_calling_unknown_fails_the_push_after_a_few_tries() -> None:
    registry, sink, sleeps = pushing_while_blob_unknown(100)
    with pytest.raises(RegistryError, match="pushing manifest v1 failed with HTTP 400 .*MANIFEST_BLOB_UNKNOWN"):
        sink.write(graph(), NullReporter())
    assert len(manifests_put(registry)) == MANIFEST_BLOB_RETRIES + 1 and sum(sleeps) < 5
