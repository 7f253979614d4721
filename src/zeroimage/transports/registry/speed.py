"""The low-speed limit (:class:`~.options.LowSpeedLimit`), enforced on the connection itself.

The check sits beneath HTTP, on the socket: it sees request headers and bodies, response headers
and bodies and TLS handshakes alike, so a server cannot hold a build by trickling any part of an
exchange (a byte every two seconds of headers, of a body or of a handshake), nor by never reading
what it is sent.

How it counts: each exchange (a request and its reply on one connection) starts a window of
``seconds`` in which ``bytes_per_second * seconds`` bytes must pass, either way; once they have, a
new window starts. Every socket operation waits at most until the end of the current window, so
a peer that sends nothing at all fails at its end too. Each ``send`` is credited as it returns
(httpcore's own write loop, run here), so a slow but steady reader is credited as it reads.

This module imports httpcore, which is slow to import: the client imports it only when it opens
its connections, so that a build starts compressing first. :class:`~.transport.LowSpeedTransport`
gives httpx connections made this way, through httpcore's public interfaces only.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpcore

if TYPE_CHECKING:
    from zeroimage.transports.registry.options import LowSpeedLimit


class Stalled(httpcore.ReadTimeout):
    """Below the low-speed limit for a whole window (httpx reports it as a ReadTimeout)."""


class StalledWrite(httpcore.WriteTimeout):
    """Below the low-speed limit for a whole window while sending (an httpx WriteTimeout)."""


def is_stall(exc: BaseException) -> bool:
    """True when ``exc``, or what caused it, is the low-speed limit's failure."""
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            return False
        if isinstance(current, Stalled | StalledWrite):
            return True
        current = current.__cause__ or current.__context__
    return False


#: Wraps one connection in a check of the low-speed limit.
Checked = Callable[[httpcore.NetworkStream, "LowSpeedLimit"], httpcore.NetworkStream]


class CheckedBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, each of its streams checked against ``limit`` by
    ``checked`` (a :class:`CheckedStream`, unless a caller brings a check of its own)."""

    def __init__(self, limit: LowSpeedLimit, checked: Checked | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self._limit = limit
        self._checked: Checked = checked or CheckedStream

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return self._checked(self._inner.connect_tcp(host, port, timeout, local_address, socket_options), self._limit)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        return self._checked(self._inner.connect_unix_socket(path, timeout, socket_options), self._limit)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class CheckedStream(httpcore.NetworkStream):
    """A connection that fails with :class:`Stalled` when it moves too little for a window."""

    def __init__(self, inner: httpcore.NetworkStream, limit: LowSpeedLimit) -> None:
        self._inner = inner
        self._limit = limit
        self._sending = False
        self._deadline = 0.0
        self._owed = 0  # bytes still to move before the deadline
        self._piece = max(1024, min(64 * 1024, limit.window_bytes // 4))
        self._new_window()

    def _new_window(self) -> None:
        self._deadline = time.monotonic() + self._limit.seconds
        self._owed = self._limit.window_bytes

    def _moved(self, count: int) -> None:
        self._owed -= count
        if self._owed <= 0:
            self._new_window()

    def _wait(self, timeout: float | None) -> tuple[float, bool]:
        """How long the next operation may wait, and whether that bound is the window's."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise Stalled(f"transfer {self._limit}")
        if timeout is not None and timeout < left:
            return timeout, False
        return left, True

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._sending = False
        wait, ours = self._wait(timeout)
        try:
            data = self._inner.read(max_bytes, wait)
        except httpcore.ReadTimeout:
            if ours:
                raise Stalled(f"transfer {self._limit}") from None
            raise
        self._moved(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not self._sending:  # a new request on this connection: a new window
            self._sending = True
            self._new_window()
        sock = self._inner.get_extra_info("socket")
        if not isinstance(sock, socket.socket):  # not httpcore's plain or TLS socket stream
            for start in range(0, len(buffer), self._piece):
                self._write_piece(buffer[start : start + self._piece], timeout)
            return
        # httpcore's own loop (SyncStream.write), each send credited as it returns.
        view = memoryview(buffer)
        while view:
            wait, ours = self._wait(timeout)
            try:
                sock.settimeout(wait)
                sent = sock.send(view)
            except TimeoutError:
                if ours:
                    raise StalledWrite(f"transfer {self._limit}") from None
                raise httpcore.WriteTimeout("timed out") from None
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc
            view = view[sent:]
            self._moved(sent)

    def _write_piece(self, piece: bytes, timeout: float | None) -> None:
        wait, ours = self._wait(timeout)
        try:
            self._inner.write(piece, wait)
        except httpcore.WriteTimeout:
            if ours:
                raise StalledWrite(f"transfer {self._limit}") from None
            raise
        self._moved(len(piece))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # The handshake reads and writes inside the ssl module, past read() and write(): a timer
        # shuts the socket down if the handshake is not done within one window.
        # (By descriptor: wrapping detaches the socket object from it.)
        raw = self._inner.get_extra_info("socket")
        fd, family = (raw.fileno(), raw.family) if isinstance(raw, socket.socket) else (-1, socket.AF_INET)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            if fd >= 0:
                with contextlib.suppress(OSError), socket.fromfd(fd, family, socket.SOCK_STREAM) as same:
                    same.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self._limit.seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            return type(self)(self._inner.start_tls(ssl_context, server_hostname, timeout), self._limit)
        except (httpcore.ConnectError, httpcore.ConnectTimeout):
            if expired.is_set():
                raise Stalled(f"TLS handshake {self._limit}") from None
            raise
        finally:
            timer.cancel()

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
