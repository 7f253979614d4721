"""What a transport fault means, and the one line it is reported with.

A certificate that does not verify is a :class:`~zeroimage.errors.TLSError` naming the host and
how to trust its CA; a server that answers TLS with plain HTTP is told apart (the client may then
try plain HTTP, where allowed); a refused connection, an unknown host, a timeout and a reply cut
short each get their own words.

A stall (a transfer under the low-speed limit for a whole window, :mod:`.speed`) is not such a
transient fault: one client retries a stalled transfer once only (:class:`StallBudget`), and
after a second stall every request of that client fails at once, so a registry that trickles
fails a build in about two windows.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from zeroimage.errors import NetworkError, TLSError
from zeroimage.transports.http import httpx
from zeroimage.transports.registry.options import LOW_SPEED_VARIABLE, LowSpeedLimit

#: Stalled transfers one client retries: a stall is not a transient fault.
STALL_RETRIES = 1


class TransferStalled(NetworkError):
    """A transfer stayed under the low-speed limit for a whole window. ``final`` when this
    client has used up its retries of stalls: whoever retries transfers must not retry it."""

    def __init__(self, message: str, final: bool) -> None:
        super().__init__(message)
        self.final = final


def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, at most ten deep."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        yield current
        current = current.__cause__ or current.__context__
        seen += 1


def tls_verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for item in cause_chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            return item
    return None


def tls_error(exc: BaseException, url: str) -> TLSError | None:
    """The error for a certificate of ``url``'s host that did not verify; None for other faults."""
    failure = tls_verify_failure(exc)
    if failure is None:
        return None
    host = urlsplit(url).netloc
    return TLSError(
        f"TLS verification failed for {host}: {failure.verify_message or failure.reason}. "
        f"Trust its CA with SSL_CERT_FILE=ca.pem or by copying it to /etc/docker/certs.d/{host}/ca.crt"
    )


def not_tls(exc: BaseException) -> bool:
    """True when the server answered, but not with TLS (a plain-HTTP registry)."""
    for item in cause_chain(exc):
        if isinstance(item, ssl.SSLError) and not isinstance(item, ssl.SSLCertVerificationError):
            return True
    text = str(exc).lower()
    return "wrong version number" in text or "record layer failure" in text or "packet length too long" in text


def is_stall(exc: BaseException) -> bool:
    """True when ``exc``, or what caused it, is the low-speed limit's failure."""
    from zeroimage.transports.registry.speed import is_stall as stalled  # imports httpcore: on a fault only

    return stalled(exc)


def describe(exc: httpx.TransportError) -> str:
    """A few words for a transport fault that is not a stall."""
    for item in cause_chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, TimeoutError | httpx.TimeoutException):
            return "timed out"
    text = str(exc) or type(exc).__name__
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name" in text:
        return "unknown host"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed mid-reply"
    return text[:160]


class StallBudget:
    """The stalls of one client: the first :data:`STALL_RETRIES` may be retried, the next is
    final and ends every request the client makes after it. Thread-safe."""

    def __init__(self, limit: LowSpeedLimit, retries: int = STALL_RETRIES) -> None:
        self.limit = limit
        self.retries = retries
        self._count = 0
        self._lock = threading.Lock()
        self.final: TransferStalled | None = None

    def stalled(self, doing: str) -> TransferStalled:
        """The error for a stall met ``doing`` something, counted against the budget."""
        with self._lock:
            self._count += 1
            stalled = TransferStalled(
                f"{doing}: the transfer stalled ({self.limit}; {LOW_SPEED_VARIABLE}=BYTES/SECONDS changes the limit)",
                final=self._count > self.retries,
            )
            if stalled.final and self.final is None:
                self.final = stalled
        return stalled
