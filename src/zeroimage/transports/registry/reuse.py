"""Layers a registry already holds, found by their diff_id: how a build reuses work done on
another machine.

The images under the tags a build pushes to — and those it names with ``--cache-from`` — list
their layers' diff_ids in their configs. A new layer whose diff_id (the sha256 of its
uncompressed tar, cheap to compute from the program alone) is among them, in the compression
the build asks for, is used as it is: no compression, no upload. It may have been compressed by
another tool or another version of the compressor (same diff_id, other bytes): reusing it keeps
the image's digest stable across a fleet.

The images are asked for once, in a thread of their own, when the first layer is not in the
local cache, while that layer's diff_id is computed: a build that finds nothing (a first push)
loses little time, and has its connection to the registry warm for the upload; a build whose
layers the cache knows asks nothing. A registry that cannot say (an error other than "not found") costs the
build nothing but the reuse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from zeroimage.cancel import Cancellation, Worker
from zeroimage.errors import NotFoundError, ZeroimageError
from zeroimage.image import DocumentBudget, load_base
from zeroimage.layers.compress import LayerCancelled
from zeroimage.layers.producer import RemoteLayer
from zeroimage.oci import Platform
from zeroimage.oci import mediatypes as mt
from zeroimage.progress import Reporter
from zeroimage.reference import Reference
from zeroimage.transports.registry.client import RegistryClient
from zeroimage.transports.registry.source import RegistrySource

#: How the client of a reference is had: a push's own (warm for its upload), or None for one of
#: the source's own. Called in the asking thread, so that setting up HTTP never holds the build.
ClientOf = Callable[[], RegistryClient] | None


class RegistryLayers:
    """The layers of the images at ``references``, by platform and diff_id."""

    def __init__(
        self,
        references: Sequence[tuple[Reference, ClientOf]],
        insecure_registries: tuple[str, ...],
        reporter: Reporter,
        budget: DocumentBudget,
    ) -> None:
        self._references = dict(references)
        self._insecure_registries = insecure_registries
        self._budget = budget
        self._sources: list[RegistrySource] = []
        self._reporter = reporter
        self._found: list[RegistrySource] = []
        self._by_platform: dict[tuple[str, str], dict[str, RemoteLayer]] = {}
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._answered = threading.Event()

    def _ask(self) -> None:
        try:
            for ref, client in self._references.items():
                try:
                    source = RegistrySource(
                        ref, self._insecure_registries, client() if client else None, budget=self._budget, pull="always"
                    )
                    self._sources.append(source)
                    source.root()
                except NotFoundError:
                    continue  # a tag pushed for the first time
                except Exception as exc:  # noqa: BLE001 - reuse is an optimisation: the push says what is wrong
                    self._reporter.info(f"cannot reuse layers of {ref}: {getattr(exc, 'message', exc)}")
                    continue
                self._found.append(source)
        finally:
            self._answered.set()

    def layers(self, platform: Platform, media_type: str, cancel: Cancellation) -> Mapping[str, RemoteLayer]:
        with self._lock:
            if self._worker is None:  # asked once, by the first layer the cache does not know
                self._worker = Worker(self._ask, "registry-layers")
                self._worker.start()
        while not self._worker.done:  # a registry that never answers must not hold a cancelled layer
            if cancel.is_set():
                raise LayerCancelled
            self._answered.wait(0.1)
        key = (str(platform), mt.to_oci(media_type))
        with self._lock:
            if key in self._by_platform:
                return self._by_platform[key]
            found: dict[str, RemoteLayer] = {}
            for source in self._found:
                try:
                    image = load_base(source, platform)
                except ZeroimageError as exc:
                    self._reporter.info(f"cannot reuse layers of {source.reference} for {platform}: {exc.message}")
                    continue
                for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
                    if mt.to_oci(desc.media_type) == key[1]:
                        found.setdefault(diff_id, RemoteLayer(source.blob(desc), str(source.reference)))
            self._by_platform[key] = found
            return found

    def close(self) -> None:
        """Close the clients this made; a question still unanswered is left to its thread (the
        build is over: whatever it finds, nobody needs)."""
        if self._worker is None or self._worker.done:
            for source in self._sources:
                source.close()
