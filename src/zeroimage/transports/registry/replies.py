"""Registry replies read within bounds, and what a registry's error reply says.

Bounded memory: a reply body is read into memory only up to a bound — :data:`MAX_REPLY_BODY` for
replies whose body is at most an error message (a ping, an upload step, a manifest PUT: the rest is
dropped unread); token replies have their own bound (:mod:`.auth`), documents theirs (:func:`read_bounded`).
Bodies are read as sent, never decoded (the client asks for ``Accept-Encoding: identity``): a
compressed reply cannot expand in memory, and digests are taken of the bytes the registry sent.

A registry's error body is ``{"errors": [{"code": ..., "message": ..., "detail": ...}]}`` (the
distribution spec); :func:`status_error` turns an error reply (or one of a status the caller did
not expect) into the :class:`RegistryError` that carries its status, its codes and the repository,
as go-containerregistry's ``transport.Error`` does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zeroimage.errors import AuthError, NotFoundError, RegistryError
from zeroimage.transports.http import httpx

if TYPE_CHECKING:
    from zeroimage.transports.registry.client import RegistryClient

#: What is kept of a reply whose body is at most an error message; the rest is never read.
MAX_REPLY_BODY = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """A reply with its body read: at most :data:`MAX_REPLY_BODY` bytes of it (the rest is dropped)."""

    status: int
    headers: httpx.Headers
    body: bytes


def content_type(response: httpx.Response) -> str:
    """The media type a reply declares (``Content-Type`` without its parameters, lowercased)."""
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def read_at_most(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a streamed reply's body as sent, and whether that was all of it."""
    try:
        data = response.content  # a reply a transport gave whole (made from bytes in memory)
    except httpx.ResponseNotRead:
        pass
    else:
        return data[:limit], len(data) <= limit
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


def read_bounded(client: RegistryClient, response: httpx.Response, limit: int, what: str) -> bytes | None:
    """The body of ``response`` as sent, or None when it is larger than ``limit`` (as declared, or
    as found: then it is left unread beyond the bound); the response is closed. A transport fault
    is the client's :meth:`~.client.RegistryClient.transfer_error` (a stall counts against its stalls)."""
    declared = response.headers.get("content-length", "")
    try:
        if declared.isdigit() and int(declared) > limit:
            return None
        data, whole = read_at_most(response, limit)
    except httpx.TransportError as exc:
        raise client.transfer_error(exc, response.url.netloc.decode(), what) from None
    finally:
        response.close()
    return data if whole else None


def release(response: httpx.Response) -> None:
    """Close a reply whose body is not wanted. A short body is read first, so that the kept-alive
    connection serves the next request (a retry, the answer to a challenge, a redirect's target)
    instead of costing a new TCP and TLS handshake; a longer one is left, and its connection with it."""
    with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
        read_at_most(response, MAX_REPLY_BODY)
    response.close()


def reply_of(response: httpx.Response) -> Reply:
    """The reply, with a bounded part of its body; the response is closed."""
    try:
        body, _ = read_at_most(response, MAX_REPLY_BODY)
    except httpx.TransportError:
        body = b""  # only ever an error message: the status and headers say what matters
    finally:
        response.close()
    return Reply(response.status_code, response.headers, body)


def registry_errors(body: bytes) -> list[dict[str, Any]]:
    """The errors of a registry's JSON error body (``{"errors": [{"code", "message"}]}``); none
    when it is anything else."""
    try:
        errors = json.loads(body).get("errors") or []
    except Exception:  # noqa: BLE001 - anything a server sends: no errors then
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def codes_of(body: bytes) -> tuple[str, ...]:
    """The error codes of a registry's error body, in the order sent, each once."""
    return tuple(dict.fromkeys(str(e.get("code"))[:64] for e in registry_errors(body) if e.get("code")))


def error_codes(reply: Reply) -> set[str]:
    """The error codes (``MANIFEST_BLOB_UNKNOWN``, …) a registry's reply gives (see :func:`codes_of`)."""
    return set(codes_of(reply.body))


def registry_message(body: bytes) -> str:
    """The registry's own error text (code: message), short, from its JSON error body."""
    errors = registry_errors(body)[:2]
    parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
    return "; ".join(p for p in parts if p)[:200]


def status_error(
    registry: str, reply: Reply, what: str, repository: str = "", expected: Collection[int] = ()
) -> RegistryError | None:
    """The error a reply to a request for ``what`` means: that of an error reply (400 and above),
    or with ``expected``, that of any status not in it; None otherwise."""
    status = reply.status
    if status in expected or (status < 400 and not expected):
        return None
    detail = registry_message(reply.body)
    suffix = f" ({detail})" if detail else ""
    fields: dict[str, Any] = {"status": status, "codes": codes_of(reply.body), "repository": repository}
    if status < 400:
        return RegistryError(f"{registry}: {what}: unexpected HTTP {status}{suffix}", **fields)
    if status == 401:
        return AuthError(
            f"{registry}: unauthorized for {repository or what}{suffix}; run `zeroimage login {registry}`", **fields
        )
    if status == 403:
        return AuthError(f"{registry}: access to {repository or what} denied{suffix}", **fields)
    if status == 404:
        return NotFoundError(f"{registry}: {what} not found{suffix}", **fields)
    return RegistryError(f"{registry}: {what} failed with HTTP {status}{suffix}", **fields)
