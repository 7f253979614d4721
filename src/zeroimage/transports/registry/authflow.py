"""A request's authentication as an ``httpx.Auth`` flow, bound to the registry's origin.

To the registry's own origin (scheme, host and port), a request goes with the ``Authorization``
that answers the registry's last challenge for the request's scopes (Basic, or a cached Bearer
token). A 401 of the registry's origin is a challenge: it is learnt, the token is renewed (with
the scope the challenge asks for), and the request is sent once more, unless that answer is the
one just refused (a Basic password is not sent twice); a second 401 is the caller's to report.
To any other origin a request goes without ``Authorization``, and a 401 from there is an
:class:`~zeroimage.errors.AuthError` naming that host: nothing another origin says makes us fetch
a token or send a credential.

The flow only decides; it neither sends nor reads (token requests are the
:class:`~.auth.Authenticator`'s). The client drives it itself rather than through
``httpx.Client.send(auth=...)``, because httpx reads each reply it hands a flow whole before
sending the next request, where the client reads only a bounded part of an unwanted reply. Any
driver works: a flow is also an ordinary ``httpx.Auth`` for an ``httpx.Client``.

This module imports httpx (through :mod:`zeroimage.transports.http`): the client imports it with
its first request.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from zeroimage.transports.http import httpx
from zeroimage.transports.registry.auth import parse_challenge

if TYPE_CHECKING:
    from zeroimage.transports.registry.auth import Authenticator


class RegistryAuth(httpx.Auth):
    """The authentication of one request needing ``scopes``, by ``authenticator``'s state."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, authenticator: Authenticator, scopes: tuple[str, ...] = ()) -> None:
        self.authenticator = authenticator
        self.scopes = scopes

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        authenticator = self.authenticator
        origin = authenticator.origin
        url = str(request.url)
        if not origin.is_registry(url):
            request.headers.pop("Authorization", None)
            response = yield request
            if response.status_code == 401:
                raise origin.foreign_challenge(url)
            return
        authorization = authenticator.authorization(self.scopes)
        if authorization:
            request.headers["Authorization"] = authorization
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return
        authenticator.challenge = challenge
        renewed = authenticator.authorization(self.scopes, challenge, renew=True)
        if renewed is None or renewed == authorization:
            return  # nothing (new) to answer it with: the caller reports the 401
        request.headers["Authorization"] = renewed
        yield request
