"""The bottom layer of the registry client: requests out and replies in, over checked connections.

:class:`LowSpeedTransport` is an ``httpx.BaseTransport`` built on httpcore's public interfaces
only, as httpx's own transport is: it owns an ``httpcore.ConnectionPool`` whose network backend is
the low-speed limit's (:class:`~.speed.CheckedBackend`), turns an ``httpx.Request`` into an
``httpcore.Request`` and the reply back (its body streamed, as sent), and reports httpcore's
faults as the httpx exceptions of the same meaning, the original kept as their cause (which is how
a stall, or a certificate that did not verify, is recognised above). It reaches into neither
library, so it holds across their versions.

:class:`ReplayableBody` is a request body made afresh each time it is sent: an upload sent again
after a fault or a challenge reads its blob again rather than failing on a spent iterator.

This module imports httpx (through :mod:`zeroimage.transports.http`, which keeps httpx's command
line out) and httpcore: the client imports it only when it makes its connections.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import httpcore

from zeroimage.transports.http import httpx
from zeroimage.transports.registry.options import LowSpeedLimit
from zeroimage.transports.registry.speed import CheckedBackend

#: httpcore's faults and the httpx exception each is reported as (the first match wins).
_FAULTS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    """Report httpcore's faults as httpx's, caused by the original."""
    try:
        yield
    except Exception as exc:
        for fault, reported in _FAULTS:
            if isinstance(exc, fault):
                raise reported(str(exc) or type(exc).__name__, request=request) from exc
        raise


class ReplyStream(httpx.SyncByteStream):
    """A reply's body as httpcore streams it, its faults reported as httpx's."""

    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _as_httpx(self._request):
                close()


class ReplayableBody(httpx.SyncByteStream):
    """A request body made by ``make`` afresh each time the request is sent."""

    def __init__(self, make: Callable[[], Iterable[bytes]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[bytes]:
        yield from self._make()


class LowSpeedTransport(httpx.BaseTransport):
    """httpx requests over a pool of connections checked against ``limit``, trusting ``ssl_context``."""

    def __init__(self, limit: LowSpeedLimit, ssl_context: ssl.SSLContext, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits()
        self._connections = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(limit),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        outgoing = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx(request):
            reply = self._connections.handle_request(outgoing)
        assert isinstance(reply.stream, Iterable)  # a synchronous pool streams synchronously
        return httpx.Response(
            status_code=reply.status,
            headers=reply.headers,
            stream=ReplyStream(reply.stream, request),
            extensions=reply.extensions,
        )

    def close(self) -> None:
        self._connections.close()
