"""Speaking to a Docker daemon over its API — a ping and an image load — as to a peer that may
misbehave: every reply is read within bounds of memory and time, and only a reply that says
what Docker says counts as success.

Memory. A reply that is not the load's answer (a ping, an error) is kept up to
:data:`MAX_REPLY_BODY` (64 KiB); the rest is never read (a ping's answer longer than that is not
Docker's ``OK``, and fails). The load's answer (``POST /images/load``, a stream of JSON messages,
one a line) is read a line at a time, each byte copied once: a line longer than
:data:`MAX_LOAD_LINE` (64 KiB) or an answer longer than :data:`MAX_LOAD_REPLY` (4 MiB) is a
failure. Docker's answer for one image is a few lines (``quiet=1``: ``{"stream":"Loaded image:
app:v1\\n"}``), its progress for a large image some kilobytes.

Time. Connecting, the TLS handshake and sending (the request and the archive) obey the low-speed
limit of registry transfers (``ZEROIMAGE_LOW_SPEED_LIMIT``, 1 KiB/s over 30 s by default): a daemon
that stops reading fails the build within about a window. Once the archive is sent, Docker unpacks
it before it answers, silently, for as long as the image takes: its whole answer must arrive within
:func:`load_timeout` (5 minutes plus 2 per GiB of archive; ``ZEROIMAGE_DOCKER_LOAD_TIMEOUT=SECONDS``
sets another bound). A ping's answer must arrive within one window of the low-speed limit.

Success. A load succeeds only when the daemon answered 200 with JSON messages, none of them an
error (``error``/``errorDetail``), and said it loaded the image sent: ``Loaded image: NAME:TAG``
(or ``Loaded image ID: sha256:…``, the image's ID). Podman's Docker-compatible API names the
image its own way (``Loaded image: localhost/app:v1``, several names joined by commas): the
caller gives the spellings that mean the same image. Anything else — another status, a line that
is not a JSON object, an answer that ends without saying so — fails with one line naming the
daemon and, where the daemon said why, a bounded one-line excerpt of what it said (kept as it is:
escaping it for a terminal is the CLI's work).

The HTTP is httpcore's (a connection pool of one connection, never reused), its network streams
wrapped (:class:`_Exchange`) to carry the two time bounds.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, TypeVar

import httpcore

from zeroimage import cancel
from zeroimage.errors import NetworkError, OutputError, TLSError, UsageError
from zeroimage.files import CHUNK
from zeroimage.progress import Reporter
from zeroimage.transports.docker_host import DockerEndpoint
from zeroimage.transports.registry.client import LOW_SPEED_VARIABLE, MAX_REPLY_BODY, USER_AGENT, LowSpeedLimit
from zeroimage.transports.registry.faults import cause_chain, tls_verify_failure
from zeroimage.transports.registry.speed import CheckedBackend, CheckedStream, is_stall
from zeroimage.untrusted import whole_number

#: The longest line of the load's answer (a JSON message) taken.
MAX_LOAD_LINE = 64 * 1024
#: The longest answer to a load taken.
MAX_LOAD_REPLY = 4 << 20
#: The most of the daemon's own words (an error's message) one error line carries.
MAX_EXCERPT = 300
LOAD_TIMEOUT_VARIABLE = "ZEROIMAGE_DOCKER_LOAD_TIMEOUT"
#: Seconds Docker may take to answer a load, plus :data:`LOAD_SECONDS_PER_GIB` per GiB of archive.
LOAD_SECONDS = 300
LOAD_SECONDS_PER_GIB = 120
#: The longest bound :data:`LOAD_TIMEOUT_VARIABLE` sets (nine digits: some 31 years).
MAX_LOAD_TIMEOUT = 999_999_999

_HTTP_TO_HTTPS = "Client sent an HTTP request to an HTTPS server"
_E = TypeVar("_E", bound=BaseException)


def load_timeout(size: int, env: Mapping[str, str]) -> float:
    """Seconds the daemon may take, once it has an archive of ``size`` bytes, to finish its answer."""
    return _answer_bound(size, _load_timeout_setting(env))


def _load_timeout_setting(env: Mapping[str, str]) -> int | None:
    """:data:`LOAD_TIMEOUT_VARIABLE`'s seconds (None when it is not set); UsageError unless it is
    a whole number from 1 to :data:`MAX_LOAD_TIMEOUT`."""
    text = env.get(LOAD_TIMEOUT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        seconds = whole_number(text, LOAD_TIMEOUT_VARIABLE, MAX_LOAD_TIMEOUT)
    except UsageError:
        seconds = 0
    if seconds < 1:
        raise UsageError(f"{LOAD_TIMEOUT_VARIABLE} must be a whole number of seconds (at least 1), not {text[:40]!r}")
    return seconds


def _answer_bound(size: int, setting: int | None) -> float:
    return LOAD_SECONDS + LOAD_SECONDS_PER_GIB * size / (1 << 30) if setting is None else float(setting)


def excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """The first line of what a peer said, at most ``limit`` characters, "…" where cut; the
    characters themselves are kept as they are."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    cut = len(first) > limit or len(lines) > 1
    return first[:limit] + ("…" if cut else "")


# -- the answer to a load ---------------------------------------------------------------------------


class LoadAnswer:
    """Reads the daemon's answer to ``POST /images/load`` as it arrives (:meth:`feed`), within
    bounds, and decides (:meth:`finish`) whether the daemon said it loaded ``name`` (or the
    image ``image_id``). Raises OutputError at the first thing that is not Docker's."""

    def __init__(self, where: str, name: str, image_id: str, spellings: Iterable[str] = ()) -> None:
        self.where = where
        self.name = name
        self.image_id = image_id
        #: Every name that means the image sent: ``name`` and the ``spellings`` a daemon may use.
        self.names = frozenset({name, *spellings})
        self.loaded = False
        self.others: list[str] = []  # what else it said it loaded (a few)
        self._line = bytearray()  # the line being received
        self._text: list[str] = []  # the "stream" text not yet ended by a newline, in pieces
        self._text_size = 0
        self._total = 0

    def _fail(self, why: str) -> OutputError:
        return OutputError(f"Docker daemon at {self.where}: {why}")

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the answer (any cut: a line may span many pieces). Each byte is
        copied once, however many lines a piece holds."""
        self._total += len(data)
        if self._total > MAX_LOAD_REPLY:
            raise self._fail(f"its answer to the load runs past {MAX_LOAD_REPLY} bytes, which Docker never sends")
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            stop = len(data) if end < 0 else end + 1
            if len(self._line) + stop - start > MAX_LOAD_LINE + 1:  # (+1: the newline itself)
                raise self._fail(f"its answer to the load has a line longer than {MAX_LOAD_LINE} bytes")
            self._line += data[start:stop]
            start = stop
            if end >= 0:
                line, self._line = bytes(self._line), bytearray()
                self._message(line)

    def finish(self) -> None:
        """The answer ended: OutputError unless the daemon said it loaded the image."""
        if self._line.strip():
            self._message(bytes(self._line))
            self._line = bytearray()
        if self._text:
            self._stream_line("".join(self._text))
            self._text, self._text_size = [], 0
        if self.loaded:
            return
        if self.others:
            said = ", ".join(excerpt(name, 100) for name in self.others)
            raise self._fail(f"it said it loaded {said}, not {self.name}")
        raise self._fail(f'its answer to the load ended without "Loaded image: {self.name}": the image was not loaded')

    def _message(self, line: bytes) -> None:
        stripped = line.strip()
        if not stripped:
            return
        try:
            message: Any = json.loads(stripped)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            text = excerpt(stripped.decode("utf-8", "replace"), 100)
            raise self._fail(f"its answer to the load is not Docker's JSON messages: {text}")
        detail, error = message.get("errorDetail"), message.get("error")
        if detail is not None or error:
            said = detail.get("message") if isinstance(detail, dict) else None
            if not (isinstance(said, str) and said.strip()):
                said = error if isinstance(error, str) and error.strip() else "(it gave no message)"
            raise self._fail(f"it failed to load the image: {excerpt(said)}")
        stream = message.get("stream")
        if isinstance(stream, str):
            self._stream(stream)
        # Anything else is progress ("status", "progressDetail", "id", "aux"): nothing to decide.

    def _stream(self, text: str) -> None:
        """The text of a ``stream`` message: the lines it ends are judged, the rest kept."""
        *ended, rest = text.split("\n")
        if ended:
            ended[0] = "".join([*self._text, ended[0]])
            self._text, self._text_size = [], 0
            for line in ended:
                self._stream_line(line)
        if rest:
            self._text.append(rest)
            self._text_size += len(rest)
            if self._text_size > MAX_LOAD_LINE:
                raise self._fail(f"its answer to the load has a line longer than {MAX_LOAD_LINE} bytes")

    def _stream_line(self, text: str) -> None:
        line = text.strip()
        said, _, what = line.partition(": ")
        ours = what == self.image_id if said == "Loaded image ID" else bool(self.names & set(what.split(",")))
        if said in ("Loaded image", "Loaded image ID") and ours:  # (Podman joins its names with ",")
            self.loaded = True
        elif said.startswith("Loaded image") and len(self.others) < 3:
            self.others.append(what)


# -- the network: two time bounds -------------------------------------------------------------------


class _Silent(httpcore.ReadTimeout):
    """The answer did not arrive (whole) within its bound."""


class _Exchange(CheckedStream):
    """One connection, for one request: connecting, the TLS handshake and sending obey the
    low-speed limit as every checked connection does (:class:`~.speed.CheckedStream`); the
    answer does not, for Docker unpacks the image silently before it answers: it must arrive
    whole within the ``read`` timeout of the request, counted from the first read."""

    def __init__(self, inner: httpcore.NetworkStream, limit: LowSpeedLimit) -> None:
        super().__init__(inner, limit)
        self._answer_by: float | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        now = time.monotonic()
        if self._answer_by is None:
            self._answer_by = now + (timeout if timeout is not None else self._limit.seconds)
        wait = self._answer_by - now
        if wait <= 0:
            raise _Silent("no answer in time")
        try:
            return self._inner.read(max_bytes, wait)
        except httpcore.ReadTimeout:
            raise _Silent("no answer in time") from None


# -- the client -------------------------------------------------------------------------------------


class DockerClient:
    """One daemon (:class:`~.docker_host.DockerEndpoint`); see the module for the bounds.

    Its TLS material is loaded when it is made: a missing or broken file fails then."""

    def __init__(self, endpoint: DockerEndpoint, env: Mapping[str, str]) -> None:
        self.endpoint = endpoint
        self.where = str(endpoint)
        self.low_speed = LowSpeedLimit.from_environment(env)
        self._load_timeout = _load_timeout_setting(env)  # a malformed bound fails now, before the build
        self._ssl = endpoint.tls.ssl_context() if endpoint.tls is not None else None

    def _connections(self) -> httpcore.ConnectionPool:
        return httpcore.ConnectionPool(
            ssl_context=self._ssl,
            max_connections=1,
            max_keepalive_connections=0,
            uds=self.endpoint.socket,
            network_backend=CheckedBackend(self.low_speed, _Exchange),
        )

    def _headers(self, extra: Mapping[str, str] | None = None) -> list[tuple[bytes, bytes]]:
        host = "docker" if self.endpoint.socket else f"{self.endpoint.hostname}:{self.endpoint.port}"
        headers = {"Host": host, "User-Agent": USER_AGENT, **(extra or {})}
        return [(k.encode(), v.encode()) for k, v in headers.items()]

    def _timeouts(self, answer: float) -> dict[str, Any]:
        seconds = float(self.low_speed.seconds)
        return {"timeout": {"connect": seconds, "read": answer, "write": None, "pool": seconds}}

    def ping(self) -> None:
        """``GET /_ping``: NetworkError (or TLSError) when no daemon answers as Docker does."""
        try:
            with (
                self._connections() as pool,
                pool.stream(
                    "GET",
                    f"{self.endpoint.url}/_ping",
                    headers=self._headers(),
                    extensions=self._timeouts(self.low_speed.seconds),
                ) as response,
            ):
                if response.status != 200:
                    raise self._refusal(NetworkError, "does not answer as Docker does", response)
                if len(_read_at_most(response, MAX_REPLY_BODY + 1)) > MAX_REPLY_BODY:
                    raise NetworkError(
                        f"Docker daemon at {self.where} does not answer as Docker does: "
                        f"its answer to /_ping runs past {MAX_REPLY_BODY} bytes"
                    )
        except httpcore.TimeoutException as exc:
            raise self._transport_error(exc, f"did not answer within {self.low_speed.seconds} s") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise self._transport_error(exc) from None

    def load(
        self,
        archive: IO[bytes],
        size: int,
        name: str,
        image_id: str,
        reporter: Reporter,
        spellings: Iterable[str] = (),
    ) -> None:
        """``POST /images/load`` of a docker-archive (``size`` bytes from ``archive``'s current
        position); returns once the daemon said it loaded ``name`` (or one of its ``spellings``,
        or the image ``image_id``: see the module)."""
        answer_within = _answer_bound(size, self._load_timeout)
        answer = LoadAnswer(self.where, name, image_id, spellings)
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        cancel.check()  # a load commits the output: never after an interrupt
        with reporter.task(f"loading into Docker at {self.where}", size) as task:
            try:
                with (
                    self._connections() as pool,
                    pool.stream(
                        "POST",
                        f"{self.endpoint.url}/images/load?quiet=1",
                        headers=self._headers(headers),
                        content=_chunks(archive, task.advance),
                        extensions=self._timeouts(answer_within),
                    ) as response,
                ):
                    if response.status != 200:
                        raise self._refusal(OutputError, "refused the image", response)
                    for chunk in response.iter_stream():
                        answer.feed(chunk)
                answer.finish()
            except _Silent:
                raise NetworkError(
                    f"Docker daemon at {self.where} did not finish answering within {answer_within:.0f} s "
                    f"of receiving the image ({LOAD_TIMEOUT_VARIABLE}=SECONDS changes the bound)"
                ) from None
            except httpcore.TimeoutException as exc:
                raise self._transport_error(exc) from None
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
                raise self._transport_error(exc, "broke off the load") from None

    # -- errors ------------------------------------------------------------------------------------

    def _refusal(
        self, kind: type[OutputError] | type[NetworkError], what: str, response: httpcore.Response
    ) -> OutputError | NetworkError:
        """The error (of ``kind``) for a reply other than 200, with the daemon's message (JSON
        ``message``); a NetworkError, with what to do, when it says it speaks HTTPS."""
        body = _read_at_most(response, MAX_REPLY_BODY)
        text = body.decode("utf-8", "replace")
        try:
            said = json.loads(body).get("message")
        except Exception:  # noqa: BLE001 - anything a peer sends: its text then
            said = None
        message = excerpt(said if isinstance(said, str) else text)
        line = f"Docker daemon at {self.where} {what}: HTTP {response.status}" + (f": {message}" if message else "")
        if response.status == 400 and _HTTP_TO_HTTPS in text:
            return NetworkError(f"{line} (set DOCKER_TLS_VERIFY=1, and DOCKER_CERT_PATH to its certificates)")
        return kind(line)

    def _transport_error(self, exc: Exception, what: str = "") -> NetworkError:
        tls = self.endpoint.tls
        if is_stall(exc):  # (first: a handshake cut off at the window's end fails in the ssl module too)
            return NetworkError(
                f"Docker daemon at {self.where}: the transfer stalled ({self.low_speed}; "
                f"{LOW_SPEED_VARIABLE}=BYTES/SECONDS changes the limit)"
            )
        verify = tls_verify_failure(exc)
        if verify is not None and tls is not None:
            trusted = f"the CA {tls.ca}" if tls.ca else "the system's CAs"
            return TLSError(
                f"TLS verification of the Docker daemon at {self.where} failed: "
                f"{verify.verify_message or verify.reason} (trusting {trusted}, from {tls.origin})"
            )
        failure = _cause(exc, ssl.SSLError)
        if failure is not None and tls is not None:
            reason = (failure.reason or str(failure)).replace("_", " ").lower()
            hint = ""
            if "certificate required" in reason or "handshake failure" in reason or "bad certificate" in reason:
                hint = (
                    f"; it wants a client certificate: {tls.origin} has no cert.pem and key.pem"
                    if tls.cert is None
                    else f"; it did not accept the client certificate {tls.cert}"
                )
            elif "wrong version number" in reason or "record layer" in reason or "eof" in reason:
                hint = "; does it speak TLS on that port?"
            return TLSError(f"TLS with the Docker daemon at {self.where} failed: {reason}{hint}")
        if _cause(exc, PermissionError) is not None:
            return NetworkError(
                f"cannot connect to the Docker daemon at {self.where}: permission denied "
                "(is this user allowed to use Docker? its socket belongs to the docker group)"
            )
        if what:
            return NetworkError(f"Docker daemon at {self.where} {what} ({_describe(exc)})")
        return NetworkError(
            f"no Docker daemon answers at {self.where} ({_describe(exc)}); start Docker, or set DOCKER_HOST"
        )


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first of ``exc`` and what caused it that is a ``kind``."""
    return next((item for item in cause_chain(exc) if isinstance(item, kind)), None)


def _describe(exc: BaseException) -> str:
    for item in (exc.__cause__, exc.__context__, exc):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return excerpt(str(exc) or type(exc).__name__, 120)


def _read_at_most(response: httpcore.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of a reply's body; the rest is never read."""
    kept = bytearray()
    for chunk in response.iter_stream():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)


def _chunks(archive: IO[bytes], advance: Any) -> Iterator[bytes]:
    while chunk := archive.read(CHUNK):
        yield chunk
        advance(len(chunk))


__all__ = ["DockerClient", "LoadAnswer", "excerpt", "load_timeout"]
