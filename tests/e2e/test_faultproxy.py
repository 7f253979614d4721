"""Prove the fault-injecting proxy (tests/support/faultproxy.py) works, with real peers only.

skopeo and plain HTTP clients talk to the real CNCF registry through the proxy; no zeroimage code.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from tests.support import peers
from tests.support.faultproxy import FaultProxy, flaky_key
from tests.support.registry import Registry, seed, start_registry

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "data"
MULTIARCH = DATA / "hello-world-multiarch.tar"
ARM64 = DATA / "hello-world-linux-arm64.tar"

# urllib without any proxy from the environment: traffic stays on loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry without auth holding ``x:1`` (the multi-arch hello-world) and ``arm:1``."""
    with start_registry(tmp_path_factory.mktemp("plain")) as reg:
        seed(reg, MULTIARCH, "x:1")
        seed(reg, ARM64, "arm:1", all_platforms=False)
        yield reg


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An htpasswd registry holding ``x:1`` (the arm64 hello-world)."""
    with start_registry(tmp_path_factory.mktemp("guarded"), auth="htpasswd") as reg:
        seed(reg, ARM64, "x:1", all_platforms=False)
        yield reg


@pytest.fixture
def proxy(plain: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(plain.url) as p:
        yield p
        assert p.errors == []


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return peers.run(["skopeo", *args], check=check, timeout=60)


def get(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw_manifest(registry_host: str, ref: str) -> bytes:
    return peers.run_bytes(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry_host}/{ref}"]
    ).stdout


def platform_digest(index: bytes, arch: str) -> str:
    for desc in json.loads(index)["manifests"]:
        if desc.get("platform", {}).get("architecture") == arch and desc["platform"].get("os") == "linux":
            return str(desc["digest"])
    raise AssertionError(f"no linux/{arch} in index")


def first_layer(registry: Registry, repo: str, ref: str) -> tuple[str, int]:
    manifest = json.loads(raw_manifest(registry.host, f"{repo}:{ref}"))
    layer = manifest["layers"][0]
    return str(layer["digest"]), int(layer["size"])


# ------------------------------------------------------------------------------------------ pass


def test_pass_mode_skopeo_pushes_and_inspects_through_the_proxy(tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg") as reg, FaultProxy(reg.url) as p:
        skopeo("copy", "--all", "--quiet", "--dest-tls-verify=false", f"oci-archive:{MULTIARCH}", p.ref("x:1"))
        inspected = json.loads(skopeo("inspect", "--tls-verify=false", p.ref("x:1")).stdout)
        assert inspected["Architecture"] == "amd64"
        assert raw_manifest(p.host, "x:1") == raw_manifest(reg.host, "x:1")

        # Every upload URL the registry handed out was rewritten, so all PATCH/PUTs came through us.
        uploads_via_proxy = [r for r in p.requests if r.method in ("PATCH", "PUT") and "/blobs/uploads/" in r.path]
        uploads_upstream = [line for line in reg.access_log() if '"PATCH /v2/' in line or '"PUT /v2/x/blobs/up' in line]
        assert uploads_via_proxy and len(uploads_via_proxy) == len(uploads_upstream)
        locations = [r.response_headers["Location"] for r in p.requests if "Location" in r.response_headers]
        assert locations and all(loc.startswith(p.url) or loc.startswith("/") for loc in locations)
        assert all(reg.host not in loc for loc in locations)
        assert all(r.fault is None and r.status is not None and r.status < 500 for r in p.requests)
        assert p.errors == []


def test_request_bodies_are_streamed_chunked_or_with_length(proxy: FaultProxy, plain: Registry) -> None:
    blob = bytes(range(256)) * 1200  # 300 KiB, more than one 64 KiB piece
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    conn = http.client.HTTPConnection(proxy.host, timeout=10)
    conn.request("POST", "/v2/streamed/blobs/uploads/")
    response = conn.getresponse()
    response.read()
    assert response.status == 202
    location = response.headers["Location"]
    assert location.startswith(proxy.url)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(blob), 100_000):
            yield blob[i : i + 100_000]

    conn.request("PATCH", location.removeprefix(proxy.url), body=pieces(), encode_chunked=True)
    response = conn.getresponse()
    response.read()
    assert response.status == 202, response.status
    patch = proxy.requests[-1]
    assert patch.headers["transfer-encoding"] == "chunked" and patch.bytes_in == len(blob)
    location = response.headers["Location"]
    sep = "&" if "?" in location else "?"
    conn.request("PUT", f"{location.removeprefix(proxy.url)}{sep}digest={digest}", body=b"")
    response = conn.getresponse()
    response.read()
    assert response.status == 201
    conn.close()
    status, headers, body = get(f"{proxy.url}/v2/streamed/blobs/{digest}")
    assert status == 200 and body == blob and headers["Docker-Content-Digest"] == digest


# ------------------------------------------------------------------------------------------ flaky


def test_flaky_fails_the_first_try_of_each_request_then_passes(proxy: FaultProxy, plain: Registry) -> None:
    proxy.mode = "flaky"
    proxy.flaky_filter = r"^GET /v2/.+/manifests/"
    index = raw_manifest(plain.host, "x:1")

    # 1st fault kind: 503 + Retry-After: 0. skopeo (no --retry-times) fails, the retry passes.
    first = skopeo("inspect", "--raw", "--tls-verify=false", proxy.ref("x:1"), check=False)
    assert first.returncode != 0 and "503" in first.stderr, first.stderr
    (failed,) = [r for r in proxy.requests if r.fault]
    assert failed.fault == "flaky-503" and failed.response_headers["Retry-After"] == "0"
    assert raw_manifest(proxy.host, "x:1") == index

    # 2nd fault kind: real status line and headers, half the body, then the connection closes.
    by_digest = f"x@{platform_digest(index, 'arm64')}"
    cut = skopeo("inspect", "--raw", "--tls-verify=false", proxy.ref(by_digest), check=False)
    assert cut.returncode != 0 and "EOF" in cut.stderr, cut.stderr
    faulted = [r for r in proxy.requests if r.fault == "flaky-cut-body"]
    assert len(faulted) == 1
    length = int(faulted[0].response_headers["Content-Length"])
    assert faulted[0].status == 200 and faulted[0].bytes_out == length // 2
    assert raw_manifest(proxy.host, by_digest) == raw_manifest(plain.host, by_digest)
    assert proxy.fault_count("flaky") == 2 and proxy.faults == 2

    # urllib sees the same: a truncated read first, the whole body on the retry.
    proxy.reset_flaky()
    proxy.flaky_kinds = ("cut",)
    with pytest.raises(http.client.IncompleteRead):
        get(f"{proxy.url}/v2/x/manifests/1", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    status, _, body = get(
        f"{proxy.url}/v2/x/manifests/1", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
    )
    assert status == 200 and body == index


def test_flaky_cut_without_a_body_closes_before_replying(proxy: FaultProxy, plain: Registry) -> None:
    proxy.mode = "flaky"
    proxy.flaky_kinds = ("cut",)
    digest, size = first_layer(plain, "arm", "1")
    conn = http.client.HTTPConnection(proxy.host, timeout=10)
    conn.request("HEAD", f"/v2/arm/blobs/{digest}")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()
    assert proxy.requests[-1].fault == "flaky-cut-before-reply" and proxy.requests[-1].status is None
    status, headers, _ = get(f"{proxy.url}/v2/arm/blobs/{digest}", method="HEAD")
    assert status == 200 and int(headers["Content-Length"]) == size

    # Uploads never get the "cut" kind (no half-done side effects): a 503, and a retry passes.
    status, headers, _ = get(f"{proxy.url}/v2/arm/blobs/uploads/", method="POST", data=b"")
    assert status == 503 and headers["Retry-After"] == "0"
    status, _, _ = get(f"{proxy.url}/v2/arm/blobs/uploads/", method="POST", data=b"")
    assert status == 202


def test_flaky_key_ignores_upload_sessions_and_state() -> None:
    a = flaky_key("PUT", "/v2/r/blobs/uploads/uuid-1?_state=abc&digest=sha256%3A11")
    b = flaky_key("PUT", "/v2/r/blobs/uploads/uuid-2?_state=xyz&digest=sha256%3A11")
    c = flaky_key("PUT", "/v2/r/blobs/uploads/uuid-2?_state=xyz&digest=sha256%3A22")
    assert a == b != c
    assert flaky_key("GET", "/v2/r/manifests/1") != flaky_key("HEAD", "/v2/r/manifests/1")


# ------------------------------------------------------------------------------------------ redirects


def test_redirect_blobs_to_another_host_that_never_sees_authorization(guarded: Registry, tmp_path: Path) -> None:
    with FaultProxy(guarded.url, mode="redirect-blobs") as p:
        assert p.redirect_host.startswith("127.0.0.2:")
        creds = f"{guarded.username}:{guarded.password}"
        skopeo(
            "copy", "--quiet", "--src-tls-verify=false", "--src-creds", creds, p.ref("x:1"), f"oci:{tmp_path / 'out'}:x"
        )
        assert p.errors == []

        redirected = [r for r in p.main_requests if r.fault == "redirect"]
        served = p.redirect_requests
        assert redirected and all(r.status == 307 for r in redirected)
        assert all(r.headers["Authorization"].startswith("Basic ") for r in redirected)
        assert all(r.response_headers["Location"].startswith(f"http://{p.redirect_host}/") for r in redirected)
        assert served and all(r.method == "GET" and r.status == 200 for r in served)
        assert not [r for r in served if "Authorization" in r.headers]
        assert {r.path.split("?")[0] for r in served} == {r.path for r in redirected}

    # The blobs skopeo wrote are intact (it verifies digests too).
    blobs = list((tmp_path / "out" / "blobs" / "sha256").iterdir())
    assert len(blobs) >= 3
    assert all(hashlib.sha256(b.read_bytes()).hexdigest() == b.name for b in blobs)


def test_redirect_listener_refuses_unsigned_urls(guarded: Registry) -> None:
    with FaultProxy(guarded.url, mode="redirect-blobs") as p:
        digest = "sha256:" + "0" * 64
        status, _, _ = get(f"http://{p.redirect_host}/v2/x/blobs/{digest}?X-Faultproxy-Signature=forged")
        assert status == 403
        status, headers, _ = get(f"{p.url}/v2/x/blobs/{digest}")  # no credentials: the real challenge
        assert status == 401 and "Basic" in headers["WWW-Authenticate"]


def test_redirect_loop_makes_skopeo_give_up(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.mode = "redirect-loop"
    result = skopeo(
        "copy", "--quiet", "--src-tls-verify=false", proxy.ref("arm:1"), f"oci:{tmp_path / 'o'}:x", check=False
    )
    assert result.returncode != 0 and "redirect" in result.stderr, result.stderr
    loops = [r for r in proxy.requests if r.fault == "redirect-loop"]
    assert len(loops) >= 10 and len({r.path for r in loops}) == 1
    assert loops[0].response_headers["Location"] == proxy.url + loops[0].path


# ------------------------------------------------------------------------------------------ uploads


def test_require_chunked_refuses_a_monolithic_put(proxy: FaultProxy) -> None:
    proxy.mode = "require-chunked"
    blob = b"monolithic or not\n" * 1000
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, headers, _ = get(f"{proxy.url}/v2/mono/blobs/uploads/", method="POST", data=b"")
    assert status == 202 and headers["OCI-Chunk-Min-Length"] == "1048576"
    location = headers["Location"]
    assert location.startswith(proxy.url)
    sep = "&" if "?" in location else "?"

    status, headers, body = get(f"{location}{sep}digest={digest}", method="PUT", data=blob)
    assert status == 416
    assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    assert proxy.requests[-1].fault == "refuse-monolithic"
    assert headers["Location"] == location  # the session is still open
    assert proxy.requests[-1].upstream_status is None  # the upstream never saw the body

    # The same session then takes a PATCH and the empty final PUT.
    status, headers, _ = get(location, method="PATCH", data=blob, headers={"Content-Type": "application/octet-stream"})
    assert status == 202
    location = headers["Location"]
    status, _, _ = get(f"{location}{sep}digest={digest}", method="PUT", data=b"")
    assert status == 201
    status, _, body = get(f"{proxy.url}/v2/mono/blobs/{digest}")
    assert status == 200 and body == blob


def test_require_chunked_makes_skopeo_push_fail(tmp_path: Path) -> None:
    # skopeo (containers/image) streams each blob in one PATCH and finishes with an empty PUT: it passes.
    with start_registry(tmp_path / "reg") as reg, FaultProxy(reg.url, mode="require-chunked") as p:
        skopeo("copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{ARM64}", p.ref("a:1"))
        assert p.fault_count("refuse") == 0 and p.fault_count("chunk-min-length") > 0


# ------------------------------------------------------------------------------------------ bodies


def test_big_manifest_is_5_mib_of_valid_json_and_skopeo_refuses_it(proxy: FaultProxy) -> None:
    proxy.mode = "big-manifest"
    status, headers, body = get(
        f"{proxy.url}/v2/arm/manifests/1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert status == 200 and len(body) == 5 * 1024 * 1024 == int(headers["Content-Length"])
    assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert json.loads(body)["schemaVersion"] == 2
    result = skopeo("inspect", "--raw", "--tls-verify=false", proxy.ref("arm:1"), check=False)
    assert result.returncode != 0 and "exceed" in result.stderr, result.stderr


def test_wrong_digest_flips_one_byte(proxy: FaultProxy, plain: Registry, tmp_path: Path) -> None:
    digest, size = first_layer(plain, "arm", "1")
    _, _, good = get(f"{plain.url}/v2/arm/blobs/{digest}")
    proxy.mode = "wrong-digest"
    status, _, bad = get(f"{proxy.url}/v2/arm/blobs/{digest}")
    assert status == 200 and len(bad) == len(good) == size
    assert [i for i in range(size) if bad[i] != good[i]] == [size // 2]
    result = skopeo(
        "copy", "--quiet", "--src-tls-verify=false", proxy.ref("arm:1"), f"oci:{tmp_path / 'o'}:x", check=False
    )
    assert result.returncode != 0 and "digest" in result.stderr.lower(), result.stderr


# ------------------------------------------------------------------------------------------ outages


def test_fail_next_and_down(proxy: FaultProxy) -> None:
    proxy.fail_next(2, status=500)
    assert get(f"{proxy.url}/v2/")[0] == 500
    assert get(f"{proxy.url}/v2/")[0] == 500
    assert get(f"{proxy.url}/v2/")[0] == 200
    assert proxy.fault_count("fail-next-500") == 2

    idle = http.client.HTTPConnection(proxy.host, timeout=10)
    idle.request("GET", "/v2/")
    idle.getresponse().read()  # a kept-alive connection, idle now
    idle_sock = idle.sock
    assert idle_sock is not None

    proxy.mode = "down"
    idle_sock.settimeout(5)
    assert idle_sock.recv(1) == b""  # the proxy closed it at once
    idle.close()
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        get(f"{proxy.url}/v2/")
    assert proxy.requests[-1].fault == "down"

    proxy.mode = "pass"
    assert get(f"{proxy.url}/v2/")[0] == 200


def test_upstream_outage_is_a_502(tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg") as reg, FaultProxy(reg.url) as p:
        reg.stop()
        status, _, body = get(f"{p.url}/v2/")
        assert status == 502 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        reg.start()
        assert get(f"{p.url}/v2/")[0] == 200
