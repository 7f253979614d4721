"""The client's bottom layer on real loopback sockets: LowSpeedTransport carries requests and
replies (query, headers, a chunked body sent again on a retry, a streamed reply), reports
httpcore's faults as httpx's, keeps a connection alive across a retried reply; the client over it
falls back from TLS to plain HTTP for a loopback registry. And no private name of httpx or
httpcore is used anywhere in zeroimage."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import pytest

import zeroimage
from zeroimage.transports.registry.client import ClientOptions, LowSpeedLimit, RegistryClient
from zeroimage.transports.registry.credentials import CredentialStore
from zeroimage.transports.registry.transport import LowSpeedTransport, ReplayableBody


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.failures = 0  # 503s still to answer to a PUT

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _any(self) -> None:
        body = self._body()
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        if self.path == "/v2/":
            self._answer(200, b"{}")
        elif self.command == "PUT" and self.server.failures:
            self.server.failures -= 1
            self._answer(503, b'{"errors": [{"code": "UNAVAILABLE"}]}')
        else:
            self._answer(201, b"stored " + body[:16], {"X-Echo": self.headers.get("X-Test", "")})

    do_GET = do_PUT = do_POST = do_HEAD = _any


@pytest.fixture
def server() -> Iterator[Server]:
    made = Server()
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        made.shutdown()
        made.server_close()
        thread.join(5)


def transport() -> LowSpeedTransport:
    return LowSpeedTransport(LowSpeedLimit(1024, 5), ssl.create_default_context(), httpx.Limits())


def test_requests_and_replies_cross_the_transport_as_sent(server: Server) -> None:
    with httpx.Client(transport=transport()) as http:
        url = f"http://127.0.0.1:{server.port}/v2/a/blobs/uploads/1?digest=sha256%3Aab&x=1"
        with http.stream("PUT", url, headers={"X-Test": "yes"}, content=b"0123456789") as response:
            assert response.status_code == 201
            assert response.headers["x-echo"] == "yes"
            assert b"".join(response.iter_raw()) == b"stored 0123456789"
    method, path, headers, body = server.seen[-1]
    assert (method, path, body) == ("PUT", "/v2/a/blobs/uploads/1?digest=sha256%3Aab&x=1", b"0123456789")
    assert headers["X-Test"] == "yes"


def test_a_replayable_body_is_made_afresh_for_each_send(server: Server) -> None:
    made = 0

    def pieces() -> Iterator[bytes]:
        nonlocal made
        made += 1
        yield b"layer-"
        yield b"bytes"

    request = httpx.Request(
        "PUT",
        f"http://127.0.0.1:{server.port}/v2/a/x",
        headers={"Host": f"127.0.0.1:{server.port}", "Transfer-Encoding": "chunked"},
        stream=ReplayableBody(pieces),
    )
    with httpx.Client(transport=transport()) as http:
        for _ in range(2):
            http.send(request).close()
    assert made == 2
    assert [body for _, _, _, body in server.seen] == [b"layer-bytes", b"layer-bytes"]


def test_a_connection_refused_is_httpx_connect_error_caused_by_httpcore() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with httpx.Client(transport=transport()) as http, pytest.raises(httpx.ConnectError) as refused:
        http.get(f"http://127.0.0.1:{port}/v2/")
    assert isinstance(refused.value.__cause__, httpcore.ConnectError)
    assert refused.value.request.url.port == port


def client_of(server: Server) -> RegistryClient:
    host = f"127.0.0.1:{server.port}"
    return RegistryClient(host, host, ClientOptions(), CredentialStore(env={}), sleep=lambda seconds: None)


def test_the_client_over_the_real_transport(server: Server) -> None:
    """HTTPS first, then plain HTTP for a loopback registry that does not speak TLS; a PUT whose
    body is made by a function, answered 503 twice, is sent again whole on the connection the
    503s left open (their short bodies read, not dropped with the connection)."""
    client = client_of(server)
    server.failures = 2
    try:
        reply = client.request("PUT", "/v2/a/blobs/uploads/1", body=lambda: iter([b"abc", b"def"]))
    finally:
        client.close()
    assert client.origin.scheme == "http"
    assert reply.status == 201 and reply.body == b"stored abcdef"
    puts = [(headers, body) for method, _, headers, body in server.seen if method == "PUT"]
    assert [body for _, body in puts] == [b"abcdef"] * 3
    assert all(headers["Host"] == client.host and headers["Transfer-Encoding"] == "chunked" for headers, _ in puts)
    # One connection for the TLS attempt (refused), one for every plain-HTTP request after it.
    assert server.connections == 2


def test_no_private_name_of_httpx_or_httpcore_is_used() -> None:
    """zeroimage uses httpx and httpcore through their public interfaces only. One reference is
    allowed: transports/http.py keeps httpx's command-line module from loading by standing in for
    it in sys.modules (it reads and sets nothing of httpx's; were the module renamed, the stand-in
    would go unused and imports would take ~60 ms longer, nothing else)."""
    private = re.compile(r"\._pool\b|\bhttpx\._|\bhttpcore\._|from httpx\._|from httpcore\._|import httpx\._")
    allowed = {("transports/http.py", "httpx._main")}
    root = Path(zeroimage.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in private.finditer(line):
                where = path.relative_to(root).as_posix()
                if not any(where == file and text in line for file, text in allowed) or "._pool" in match.group():
                    found.append(f"{where}:{number}: {line.strip()}")
    assert found == []
    for used in ("transport._pool = pool", "from httpx._models import Request", "httpcore._backends.sync"):
        assert private.search(used), used  # what the check is for


def test_a_client_with_its_real_transport_never_loads_httpxs_command_line() -> None:
    """Whichever module of the client imports httpx first goes through transports/http.py, which
    keeps httpx's command line (rich's console, pygments: ~60 ms of an unchanged re-push) out."""
    code = (
        "import sys\n"
        "from zeroimage.transports.registry.client import RegistryClient\n"
        "client = RegistryClient('127.0.0.1:1', '127.0.0.1:1')\n"
        "client.auth.flow(())\n"
        "assert 'httpx' in sys.modules and 'httpcore' in sys.modules\n"
        "main = sys.modules.get('httpx._main')\n"
        "print(getattr(main, '__file__', None) is not None, 'pygments' in sys.modules, 'rich.syntax' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False", "False"]  # the stand-in only
