"""Making layers in tests as a build does: through a LayerProducer over a store."""

from __future__ import annotations

from collections.abc import Sequence

from zeroimage.image import LayerTap
from zeroimage.layers.compress import BuiltLayer, LayerOptions
from zeroimage.layers.entries import Entry
from zeroimage.layers.producer import LayerProducer
from zeroimage.progress import NullReporter
from zeroimage.store import BlobStore


def make_layer(
    store: BlobStore,
    entries: Sequence[Entry],
    options: LayerOptions | None = None,
    taps: Sequence[LayerTap] = (),
    keep: bool = True,
) -> tuple[BuiltLayer, bool]:
    """The layer of ``entries`` and whether it came from the cache."""
    producer = LayerProducer(store, options or LayerOptions(), NullReporter(), lambda: list(taps), keep)
    made = producer.make(entries, "test layer")
    return made.built, made.origin == "cache"
