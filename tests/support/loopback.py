"""What the test doubles that speak HTTP on loopback share (stdlib ``http.server`` only).

:class:`LoopbackHTTPServer` is a ``ThreadingHTTPServer`` whose handler threads are daemons (a
stuck client never holds up the test process), that never looks its own address up in DNS
(``HTTPServer.server_bind`` does), that says nothing of a client that went away, and that keeps
every connection it holds open, so that :meth:`~LoopbackHTTPServer.close_connections` can end
them (a trickle, a body never read, a kept-alive idle connection).

:class:`LoopbackService` is the life of a double serving on such servers: :meth:`start` serves
each on a daemon thread, a timer stops everything after ``lifetime`` seconds (None: never), and
:meth:`stop` (also on leaving a ``with`` block) sets :attr:`~LoopbackService.stopping`, stops
the servers, ends every open connection and waits for the serving threads.

:func:`request_body` reads a request's body, chunked or by ``Content-Length``, in pieces.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

#: The largest piece :func:`request_body` yields by default.
CHUNK = 64 * 1024


class LoopbackHTTPServer(ThreadingHTTPServer):
    """See the module docstring. ``host`` is ``ADDRESS:PORT``."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # without http.server's reverse DNS lookup
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def host(self) -> str:
        return f"{self.server_name}:{self.server_port}"

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self.track(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.untrack(request)

    def track(self, connection: socket.socket) -> None:
        """Count ``connection`` among the open ones (a TLS socket wrapped around one, too: the
        wrapping takes the accepted socket's descriptor over)."""
        with self._open_lock:
            self._open.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection down now, idle or in the middle of a transfer."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away: nothing to report


class LoopbackService:
    """The life of a double serving on :class:`LoopbackHTTPServer` s; see the module docstring.

    A subclass makes its servers in :meth:`listen` (called by :meth:`start`)."""

    def __init__(self, *, name: str, lifetime: float | None) -> None:
        self.lifetime = lifetime
        #: Set once :meth:`stop` begins: a handler that streams or waits without end looks at it.
        self.stopping = threading.Event()
        self._name = name
        self._servers: list[LoopbackHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self._timer: threading.Timer | None = None

    def listen(self) -> list[LoopbackHTTPServer]:
        """The servers to serve on, bound and listening."""
        raise NotImplementedError

    @property
    def servers(self) -> list[LoopbackHTTPServer]:
        """The servers while started (the first is the main one); raises before :meth:`start`."""
        if not self._servers:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._servers

    def start(self) -> Self:
        if self._servers:
            return self
        self.stopping.clear()
        self._servers = self.listen()
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if self.lifetime is not None:
            self._timer = threading.Timer(self.lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
        for server in servers:
            server.close_connections()
            server.server_close()
        threads, self._threads = self._threads, []
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def close_connections(self) -> None:
        """End every connection the servers hold open, and go on serving."""
        for server in list(self._servers):
            server.close_connections()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def request_body(handler: BaseHTTPRequestHandler, chunk: int = CHUNK) -> Iterator[bytes]:
    """The body of ``handler``'s request, decoded (``Transfer-Encoding: chunked``, else
    ``Content-Length``; none: nothing), in pieces of at most ``chunk`` bytes. A client that closes
    the connection inside the body raises ``ConnectionError``."""
    rfile = handler.rfile
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        while True:
            line = rfile.readline(65537)
            if not line:
                raise ConnectionError("the client closed the connection inside a chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            while size:
                piece = rfile.read(min(size, chunk))
                if not piece:
                    raise ConnectionError("the client closed the connection inside a chunk")
                size -= len(piece)
                yield piece
            rfile.readline(3)  # the CRLF after the chunk
    left = int(handler.headers.get("Content-Length") or 0)
    while left > 0:
        piece = rfile.read(min(left, chunk))
        if not piece:
            raise ConnectionError("the client closed the connection inside the body")
        left -= len(piece)
        yield piece
