"""The low-speed limit on real loopback sockets: a peer that trickles, that never reads, that never
finishes a TLS handshake fails within about one window; a steady one does not; an idle kept-alive
connection starts its next exchange with a full window; and httpx's pool really uses it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import httpcore
import httpx
import pytest

from zeroimage.transports.registry.client import LowSpeedLimit
from zeroimage.transports.registry.speed import CheckedStream, Stalled, StalledWrite, is_stall
from zeroimage.transports.registry.transport import LowSpeedTransport

LIMIT = LowSpeedLimit(1024, 1)  # under 1 KiB/s for 1 s fails


@contextlib.contextmanager
def peer(behave: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A loopback listener whose first connection is handed to ``behave``; its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection, contextlib.suppress(OSError):
            behave(connection, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def connect(port: int) -> CheckedStream:
    return CheckedStream(httpcore.SyncBackend().connect_tcp("127.0.0.1", port, timeout=5), LIMIT)


def trickle(connection: socket.socket, stop: threading.Event) -> None:
    while not stop.wait(0.3):
        connection.sendall(b"x")


def test_a_peer_that_trickles_fails_the_read_within_a_window() -> None:
    with peer(trickle) as port:
        stream = connect(port)
        started = time.monotonic()
        with pytest.raises(Stalled):
            while True:
                stream.read(65536)
        assert time.monotonic() - started < 2.5
        stream.close()


def test_a_peer_that_never_reads_fails_the_write_within_a_window() -> None:
    with peer(lambda connection, stop: stop.wait()) as port:
        stream = connect(port)
        started = time.monotonic()
        with pytest.raises(StalledWrite):
            stream.write(bytes(64 << 20))  # far more than the socket buffers hold
        assert time.monotonic() - started < 3
        stream.close()


def test_a_steady_peer_above_the_limit_is_read_whole() -> None:
    def steady(connection: socket.socket, stop: threading.Event) -> None:
        for _ in range(25):  # 10 KiB every 0.1 s for 2.5 s: 100 KiB/s, more than two windows
            connection.sendall(bytes(10240))
            time.sleep(0.1)

    with peer(steady) as port:
        stream = connect(port)
        received = 0
        while chunk := stream.read(65536):
            received += len(chunk)
        assert received == 25 * 10240
        stream.close()


def test_an_idle_connection_starts_its_next_exchange_with_a_full_window() -> None:
    def answer_twice(connection: socket.socket, stop: threading.Event) -> None:
        for _ in range(2):
            connection.recv(100)
            time.sleep(0.2)  # thinking, within the window
            connection.sendall(b"reply")

    with peer(answer_twice) as port:
        stream = connect(port)
        stream.write(b"first")
        assert stream.read(100) == b"reply"
        time.sleep(1.5)  # kept alive and idle for longer than a window
        stream.write(b"second")
        assert stream.read(100) == b"reply"
        stream.close()


def test_a_tls_handshake_that_never_finishes_fails_within_a_window() -> None:
    with peer(lambda connection, stop: stop.wait()) as port:
        stream = connect(port)
        started = time.monotonic()
        with pytest.raises(Stalled):
            stream.start_tls(ssl.create_default_context(), "localhost", timeout=None)
        assert time.monotonic() - started < 3


def test_httpx_connections_are_checked() -> None:
    """The transport httpx gets really makes its connections through the checked backend."""

    def slow_headers(connection: socket.socket, stop: threading.Event) -> None:
        connection.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if stop.wait(0.3):
                return
            connection.sendall(bytes([byte]))

    transport = LowSpeedTransport(LIMIT, ssl.create_default_context(), httpx.Limits())
    with peer(slow_headers) as port, httpx.Client(transport=transport, timeout=None) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as failure:
            http.get(f"http://127.0.0.1:{port}/v2/")
        assert is_stall(failure.value)
        assert time.monotonic() - started < 2.5
