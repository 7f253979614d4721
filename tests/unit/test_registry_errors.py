"""RegistryError carries what the registry said — the status, its error codes, the repository —
as go-containerregistry's transport.Error does, besides the one line users read (unchanged)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.mock_registry import client
from zeroimage.errors import AuthError, NotFoundError, RegistryError, ZeroimageError
from zeroimage.transports.registry.client import Reply, error_codes
from zeroimage.transports.registry.upload import UploadSession


def reply(status: int, body: bytes) -> Reply:
    return Reply(status, httpx.Headers({"Content-Type": "application/json"}), body)


@pytest.mark.parametrize(
    ("status", "body", "kind", "message", "codes"),
    [
        (
            400,
            b'{"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": {}}]}',
            RegistryError,
            "registry.test: pushing manifest v1 failed with HTTP 400 (MANIFEST_BLOB_UNKNOWN: blob unknown to registry)",
            ("MANIFEST_BLOB_UNKNOWN",),
        ),
        (
            404,
            b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}',
            NotFoundError,
            "registry.test: pushing manifest v1 not found (MANIFEST_UNKNOWN: manifest unknown)",
            ("MANIFEST_UNKNOWN",),
        ),
        (
            401,
            b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}',
            AuthError,
            "registry.test: unauthorized for team/app (UNAUTHORIZED: authentication required); "
            "run `zeroimage login registry.test`",
            ("UNAUTHORIZED",),
        ),
        (
            403,
            b'{"errors": [{"code": "DENIED", "message": "no"}, {"code": "TOOMANY"}, {"code": "DENIED"}]}',
            AuthError,
            "registry.test: access to team/app denied (DENIED: no; TOOMANY)",
            ("DENIED", "TOOMANY"),
        ),
        (
            502,
            b"<html>Bad Gateway</html>",
            RegistryError,
            "registry.test: pushing manifest v1 failed with HTTP 502",
            (),
        ),
    ],
    ids=["400", "404", "401", "403", "502-not-json"],
)
def test_raise_for_status_fills_the_fields(
    status: int, body: bytes, kind: type[RegistryError], message: str, codes: tuple[str, ...]
) -> None:
    with pytest.raises(kind) as raised:
        client("registry.test").raise_for_status(reply(status, body), "pushing manifest v1", "team/app")
    error = raised.value
    assert type(error) is kind and str(error) == message
    assert (error.status, error.codes, error.repository) == (status, codes, "team/app")
    assert error.exit_code == 1


def test_no_error_below_400() -> None:
    client("registry.test").raise_for_status(reply(202, b""), "uploading")


def test_a_status_other_than_the_expected_one_is_an_error_with_its_fields() -> None:
    made = client("registry.test")
    made.raise_for_status(reply(202, b""), "starting an upload", "team/app", expected=(202,))
    with pytest.raises(RegistryError) as raised:
        made.raise_for_status(reply(200, b""), "starting an upload", "team/app", expected=(202,))
    assert str(raised.value) == "registry.test: starting an upload: unexpected HTTP 200"
    assert (raised.value.status, raised.value.codes, raised.value.repository) == (200, (), "team/app")


@pytest.mark.parametrize("status", [200, 204])
def test_an_upload_answered_with_an_unexpected_status_says_so_with_the_status(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.url.path == "/v2/" else status)

    with pytest.raises(RegistryError) as raised:
        UploadSession.start(client("registry.test", handler=handler), "team/app")
    assert str(raised.value) == f"registry.test: starting an upload: unexpected HTTP {status}"
    assert (raised.value.status, raised.value.repository) == (status, "team/app")


def test_an_error_from_a_request_carries_the_registrys_codes() -> None:
    """Through the client: a manifest PUT the registry refuses, as the CNCF registry does when a
    blob is missing from the repository."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(400, json={"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown"}]})

    made = client("registry.test", handler=handler)
    answer = made.request("PUT", "/v2/team/app/manifests/v1", body=b"{}")
    assert error_codes(answer) == {"MANIFEST_BLOB_UNKNOWN"}
    with pytest.raises(RegistryError) as raised:
        made.raise_for_status(answer, "pushing manifest v1", "team/app")
    assert raised.value.codes == ("MANIFEST_BLOB_UNKNOWN",) and raised.value.status == 400


def test_fields_default_to_nothing_known() -> None:
    error = RegistryError("registry.test sent a redirect without a location")
    assert (error.status, error.codes, error.repository) == (None, (), "")
    assert isinstance(error, ZeroimageError) and error.exit_code == 1
