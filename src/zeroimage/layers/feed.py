"""How a new layer's bytes reach those who take them while it is being compressed.

The compressor writes to a feed; each tap (a registry upload) reads its own follower. A
:class:`GrowingFile` is the store's file of a layer that is kept: followers read it back as it
grows, and never slow the writer. A :class:`MemoryPipe` serves a layer nobody keeps (a push
only): a bounded window of chunks in memory, so the writer waits for the slowest follower.
"""

from __future__ import annotations

import os
import threading

from zeroimage.files import RangeReader, Readable, write_all


class LayerAbandoned(Exception):
    """The layer a follower was reading will never be complete."""


class _Feed:
    """What both feeds share: a writer's end of the stream, and its state."""

    def __init__(self) -> None:
        self._state = "open"  # then "ended" or "abandoned"
        self._changed = threading.Condition()

    def flush(self) -> None:
        pass

    def end(self) -> None:
        """Every byte is written: followers read what is left, then b""."""
        self._settle("ended")

    def abandon(self) -> None:
        """The layer will never be complete: followers (and a waiting writer) raise."""
        self._settle("abandoned")

    def _settle(self, state: str) -> None:
        with self._changed:
            if self._state == "open":
                self._state = state
            self._changed.notify_all()


class GrowingFile(_Feed):
    """A file written by one thread and read, while it grows, by others.

    The writer's bytes go straight to the file ``fd`` (no buffer), so a follower — :meth:`follow`
    — can read every byte written so far through a descriptor of its own, opened on ``path``
    (not a ``dup`` of the writer's: where there is no ``pread``, a follower reads by seeking,
    and a dup would share the writer's offset). Its ``read`` waits for more until :meth:`end`
    (then returns what is left, then b"") or :meth:`abandon` (then raises
    :class:`LayerAbandoned`). Nothing is held in memory: a slow follower costs disk pages,
    never the writer's pace. Followers are made before the file may be renamed or removed."""

    def __init__(self, fd: int, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._fd = fd
        self._path = path
        self._size = 0

    def write(self, data: bytes | memoryview, /) -> int:
        write_all(self._fd, data)
        with self._changed:
            self._size += len(data)
            self._changed.notify_all()
        return len(data)

    def follow(self) -> Readable:
        """A reader of the whole file from its start, with a descriptor of its own."""
        return _FileFollower(self)

    def _available(self, offset: int) -> int:
        """Bytes written beyond ``offset``, once there are some or the file is ended."""
        with self._changed:
            while self._state == "open" and self._size <= offset:
                self._changed.wait()
            if self._state == "abandoned":
                raise LayerAbandoned
            return self._size - offset


class _FileFollower(RangeReader):
    """A range that grows with the file: each read first waits for bytes beyond the position."""

    def __init__(self, growing: GrowingFile) -> None:
        super().__init__(growing._path, 0, 0)
        self._growing = growing

    def read(self, n: int = -1) -> bytes:
        self._end = self._pos + self._growing._available(self._pos)
        return super().read(n)


class MemoryPipe(_Feed):
    """A layer's bytes handed to followers through memory, when nothing keeps the layer.

    Followers (:meth:`follow`, all made before the first write) read every chunk in order; the
    chunks all of them have read are dropped. The writer waits while the slowest follower is
    ``window`` bytes behind, so memory stays bounded (4 MiB: a wider window measured no faster,
    see bench/README.md); a follower that closes is dropped, and with none left the
    writer's bytes go nowhere. :meth:`abandon` also frees a writer that is waiting."""

    def __init__(self, window: int = 4 << 20) -> None:
        super().__init__()
        self._window = window
        self._chunks: list[bytes] = []
        self._first = 0  # the index of self._chunks[0] in the whole stream
        self._held = 0  # bytes in self._chunks
        self._followers: list[_PipeFollower] = []

    def write(self, data: bytes | memoryview, /) -> int:
        chunk = bytes(data)  # a copy only of a view (the compressor's chunks are bytes already)
        with self._changed:
            while self._followers and self._held >= self._window and self._state == "open":
                self._changed.wait()
            if self._state == "abandoned":
                raise LayerAbandoned
            if self._followers:
                self._chunks.append(chunk)
                self._held += len(chunk)
                self._changed.notify_all()
        return len(chunk)

    def follow(self) -> Readable:
        follower = _PipeFollower(self)
        with self._changed:
            self._followers.append(follower)
        return follower

    def _next(self, follower: _PipeFollower) -> bytes:
        """The follower's next chunk: waits for one; b"" at the end."""
        with self._changed:
            while self._state == "open" and follower.index >= self._first + len(self._chunks):
                self._changed.wait()
            if self._state == "abandoned":
                raise LayerAbandoned
            if follower.index >= self._first + len(self._chunks):
                return b""
            chunk = self._chunks[follower.index - self._first]
            follower.index += 1
            self._drop_read()
            return chunk

    def _leave(self, follower: _PipeFollower) -> None:
        with self._changed:
            if follower in self._followers:
                self._followers.remove(follower)
            self._drop_read()

    def _drop_read(self) -> None:
        done = min((f.index for f in self._followers), default=self._first + len(self._chunks))
        while self._first < done:
            self._held -= len(self._chunks.pop(0))
            self._first += 1
        self._changed.notify_all()


class _PipeFollower:
    def __init__(self, pipe: MemoryPipe) -> None:
        self._pipe = pipe
        self.index = 0
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        if not self._pending:
            self._pending = self._pipe._next(self)
        if n < 0 or n >= len(self._pending):
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def close(self) -> None:
        self._pipe._leave(self)
