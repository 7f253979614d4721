"""A Docker daemon double that misbehaves on purpose, and a plain listener that records bytes.

:class:`HostileDaemon` (stdlib ``http.server``, on ``127.0.0.1``, plain HTTP: point
``DOCKER_HOST=tcp://127.0.0.1:PORT`` at it) answers ``GET /_ping`` as Docker does, takes the
archive of ``POST /images/load`` whole (it counts the bytes and sets :attr:`HostileDaemon.uploaded`
once they are all in), and then answers in the way ``mode`` chooses:

``honest``                ``{"stream":"Loaded image: NAME\\n"}``, as Docker 20.10 does (``quiet=1``)
``endless-ping``          ``GET /_ping`` answers 200 with a body without end
``endless-reply``         200, then JSON progress messages without end
``endless-line``          200, then one line (a JSON string that never closes) without end
``huge-error``            500 with a JSON ``message`` that never ends
``not-json``              200, then ``Loaded image: NAME`` as plain text, not a JSON message
``error-after-progress``  200, progress messages, then ``errorDetail``/``error`` of two lines
``never-loaded``          200, progress messages, and the end: nothing loaded
``other-image``           200, ``{"stream":"Loaded image: other:v1\\n"}``
``silent``                takes the archive and never answers
``never-reads``           reads the load's headers, then neither its archive nor anything else

A body "without end" stops at :data:`HUGE` bytes (so that a client that keeps everything fails
a memory bound, not the machine), or when the double stops. The double lives at most
``lifetime`` seconds; stopping it ends every connection it holds.

:class:`PlainListener` accepts TCP connections on ``127.0.0.1`` and keeps every byte each one
sends (up to 1 MiB), answering nothing and closing each after ``hold`` seconds: a test points a
client that was asked for TLS at it and checks that no plain-HTTP byte arrived.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from tests.support.loopback import LoopbackHTTPServer, LoopbackService, request_body

MODES = (
    "honest",
    "endless-ping",
    "endless-reply",
    "endless-line",
    "huge-error",
    "not-json",
    "error-after-progress",
    "never-loaded",
    "other-image",
    "silent",
    "never-reads",
)
#: Where a body "without end" stops: far past any bound of the client, far below the machine's.
HUGE = 256 << 20
PROGRESS = b'{"status":"Loading layer","progressDetail":{"current":524288,"total":1048576},"id":"0123456789ab"}\r\n'
#: The error ``error-after-progress`` sends: two lines, as a daemon's text may have.
ERROR_TEXT = "write /var/lib/docker/tmp/docker-import-1/layer.tar: no space left on device\nsecond line"


class _Server(LoopbackHTTPServer):
    def __init__(self, owner: HostileDaemon) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        try:
            self.server.owner._handle(self)
        except (OSError, ValueError):
            self.close_connection = True

    do_POST = do_HEAD = do_GET

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, status: int, pieces: list[bytes], endless: bytes = b"") -> None:
        """A chunked reply of ``pieces``, then ``endless`` again and again up to HUGE bytes."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        if endless:
            chunk = b"%x\r\n%s\r\n" % (len(endless), endless)
            sent = 0
            while sent < HUGE and not self.server.owner.stopping.is_set():
                self.wfile.write(chunk)
                sent += len(endless)
            return
        self.wfile.write(b"0\r\n\r\n")


class HostileDaemon(LoopbackService):
    """See the module docstring. ``name`` is what an honest load says it loaded."""

    def __init__(self, mode: str = "honest", *, name: str = "app:v1", lifetime: float = 120.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        super().__init__(name="hostile-daemon", lifetime=lifetime)
        self.mode = mode
        self.name = name
        self.requests: list[str] = []  # "METHOD PATH", in order
        self.port = 0
        self.received = 0  # bytes of archive taken
        self.uploaded = threading.Event()
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """``tcp://127.0.0.1:PORT``, for ``DOCKER_HOST``."""
        assert self.port, "the double has not been started"
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def listen(self) -> list[LoopbackHTTPServer]:
        server = _Server(self)
        self.port = server.server_port
        return [server]

    # -- the daemon --------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(f"{handler.command} {handler.path}")
        if handler.command == "GET" and path == "/_ping":
            if self.mode == "endless-ping":
                handler.stream(200, [], endless=b"OK" * 32768)
            else:
                handler.reply(200, b"OK", "text/plain; charset=utf-8")
            return
        if handler.command != "POST" or path != "/images/load":
            handler.reply(404, b'{"message":"page not found"}\n')
            return
        if self.mode == "never-reads":
            handler.close_connection = True
            self.stopping.wait()
            return
        self._take_archive(handler)
        self._answer_load(handler)

    def _take_archive(self, handler: _Handler) -> None:
        for piece in request_body(handler):
            with self._lock:
                self.received += len(piece)
        self.uploaded.set()

    def _answer_load(self, handler: _Handler) -> None:
        loaded = b'{"stream":"Loaded image: %s\\n"}\r\n' % self.name.encode()
        mode = self.mode
        if mode in ("honest", "endless-ping"):
            handler.stream(200, [loaded])
        elif mode == "endless-reply":
            handler.stream(200, [], endless=PROGRESS * 600)
        elif mode == "endless-line":
            handler.stream(200, [b'{"stream":"'], endless=b"a" * 65536)
        elif mode == "huge-error":
            handler.stream(500, [b'{"message":"'], endless=b"x" * 65536)
        elif mode == "not-json":
            handler.stream(200, [b"Loaded image: %s\n" % self.name.encode()])
        elif mode == "error-after-progress":
            error = ERROR_TEXT.replace("\n", "\\n").encode()
            handler.stream(200, [PROGRESS * 3, b'{"errorDetail":{"message":"%s"},"error":"%s"}\r\n' % (error, error)])
        elif mode == "never-loaded":
            handler.stream(200, [PROGRESS * 3])
        elif mode == "other-image":
            handler.stream(200, [b'{"stream":"Loaded image: other:v1\\n"}\r\n'])
        else:  # silent
            handler.close_connection = True
            self.stopping.wait()


class PlainListener:
    """See the module docstring: ``received`` holds what each connection sent, in order."""

    def __init__(self, hold: float = 5.0, lifetime: float = 120.0) -> None:
        self.hold = hold
        self.lifetime = lifetime
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.05)
        self.port = int(self._socket.getsockname()[1])
        self._threads: list[threading.Thread] = []

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> PlainListener:
        thread = threading.Thread(target=self._accept, name="plain-listener", daemon=True)
        thread.start()
        self._threads.append(thread)
        timer = threading.Timer(self.lifetime, self._stopping.set)
        timer.daemon = True
        timer.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._record, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _record(self, connection: socket.socket) -> None:
        with self._lock:
            index = len(self.received)
            self.received.append(b"")
        with connection:
            connection.settimeout(self.hold)
            kept = b""
            with contextlib.suppress(OSError):
                while len(kept) < 1 << 20 and (data := connection.recv(65536)):
                    kept += data
                    with self._lock:
                        self.received[index] = kept

    def stop(self) -> None:
        self._stopping.set()
        self._socket.close()
        for thread in self._threads:
            thread.join(timeout=self.hold + 5)

    def __enter__(self) -> PlainListener:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
