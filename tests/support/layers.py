"""Making layers in tests as a build does: through a LayerProducer over a store."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from zeroimage.image import BuiltLayer, LayerTap
from zeroimage.layers.compress import LayerOptions
from zeroimage.layers.entries import Entry
from zeroimage.layers.producer import SETTLE_NS, LayerProducer
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


def settle(path: Path) -> Path:
    """``path``, once left alone long enough for a build to record its identity: a test of the
    fast path would otherwise depend on how quickly it ran after writing the file."""
    st = os.stat(path)
    wait = max(st.st_ctime_ns, st.st_mtime_ns) + SETTLE_NS - time.time_ns()
    if wait > 0:
        time.sleep(wait / 1e9 + 0.01)
    return path
