"""Prove the test harness (tests/support) works.

Registry set-ups are exercised with skopeo, the token server with plain HTTP clients and the
registry, and image running with an image built by umoci and run by runc: real peers only, no
zeroimage code. The runtimes that issue 13's tests use (containerd, dockerd, podman) are shown
to run a FROM-scratch image that zeroimage built, the simplest image it makes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from tests.conftest import Zeroimage
from tests.support import peers
from tests.support.containerd import Containerd
from tests.support.daemon import Daemon, PeerUnavailable, private_folder
from tests.support.dockerd import Dockerd
from tests.support.outcomes import digest_in
from tests.support.podman import Podman
from tests.support.registry import AuthMode, Registry, RegistryError, seed, start_registry
from tests.support.tokenserver import decode_jwt_unverified

DATA = Path(__file__).resolve().parents[1] / "data"
MULTIARCH = DATA / "hello-world-multiarch.tar"
ARM64 = DATA / "hello-world-linux-arm64.tar"
REPO = "library/hello-world:latest"

SETUPS: list[tuple[AuthMode, bool]] = [
    ("none", False),
    ("htpasswd", False),
    ("token", False),
    ("none", True),
    ("htpasswd", True),
    ("token", True),
]


def _archive_index(archive: Path) -> dict[str, object]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        value: dict[str, object] = json.load(member)
        return value


def _top_digest(archive: Path) -> str:
    manifests = _archive_index(archive)["manifests"]
    assert isinstance(manifests, list) and len(manifests) == 1
    digest: str = manifests[0]["digest"]
    return digest


def _http(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Message, bytes]:
    """(status, headers, body) of a request; headers are case-insensitive."""
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _context(registry: Registry) -> ssl.SSLContext | None:
    return registry.ssl_context() if registry.tls else None


# ------------------------------------------------------------------------------------------ registry


@pytest.mark.e2e
@pytest.mark.parametrize(("auth", "tls"), SETUPS, ids=[f"{a}{'+tls' if t else ''}" for a, t in SETUPS])
def test_seed_and_read_back(tmp_path: Path, auth: AuthMode, tls: bool) -> None:
    with start_registry(tmp_path / "registry", auth=auth, tls=tls) as registry:
        assert registry.host.startswith("127.0.0.1:")
        assert registry.url == f"{'https' if tls else 'http'}://{registry.host}"
        assert (registry.ca_cert is not None) == tls

        seed(registry, f"oci-archive:{MULTIARCH}", REPO)

        # skopeo pushes the nested index of the archive as the tag; its bytes come back unchanged.
        raw = peers.skopeo_inspect(registry.ref(REPO), raw=True, extra=registry.skopeo_args())
        assert peers.digest_of(raw) == _top_digest(MULTIARCH)
        index = json.loads(raw)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert len(index["manifests"]) == 11

        arm = peers.skopeo_inspect(
            registry.ref(REPO),
            extra=[*registry.skopeo_args(), "--override-os", "linux", "--override-arch", "arm64"],
        )
        assert (arm["Os"], arm["Architecture"]) == ("linux", "arm64")

        log = registry.log_text()
        assert '"PUT /v2/library/hello-world/manifests/latest HTTP/1.1" 201' in log
        assert any('"GET /v2/library/hello-world/manifests/latest' in line for line in registry.access_log())

        status, headers, _ = _http(f"{registry.url}/v2/", context=_context(registry))
        if auth == "none":
            assert status == 200
        else:
            assert status == 401
            challenge = headers["WWW-Authenticate"]
            assert challenge.startswith("Basic " if auth == "htpasswd" else "Bearer ")

        if tls:
            # The certificate is for DNS:localhost and IP:127.0.0.1, signed by the private CA only.
            host_port = registry.host.split(":")[1]
            assert _http(f"https://localhost:{host_port}/v2/", context=registry.ssl_context())[0] in (
                200,
                401,
            )
            untrusted = peers.run(["skopeo", "inspect", "--raw", registry.ref(REPO)], check=False)
            assert untrusted.returncode != 0
            assert "certificate" in untrusted.stderr


@pytest.mark.e2e
def test_htpasswd_rejects_bad_credentials(tmp_path: Path) -> None:
    with start_registry(tmp_path / "registry", auth="htpasswd") as registry:
        assert (tmp_path / "registry" / "htpasswd").read_text().startswith("alice:$2y$")  # bcrypt
        seed(registry, MULTIARCH, REPO)

        wrong = peers.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                "alice:wrong",
                registry.ref(REPO),
            ],
            check=False,
        )
        assert wrong.returncode != 0
        assert "unauthorized: authentication required" in wrong.stderr
        anonymous = peers.run(["skopeo", "inspect", "--raw", "--tls-verify=false", registry.ref(REPO)], check=False)
        assert anonymous.returncode != 0 and "unauthorized: authentication required" in anonymous.stderr

        assert _http(f"{registry.url}/v2/", headers=_basic("alice", "wrong"))[0] == 401
        assert _http(f"{registry.url}/v2/", headers=_basic("mallory", "s3cret-pass"))[0] == 401
        assert _http(f"{registry.url}/v2/", headers=_basic("alice", "s3cret-pass"))[0] == 200
        assert '"GET /v2/ HTTP/1.1" 401' in registry.log_text()


@pytest.mark.e2e
def test_token_mode_rejects_anonymous_push(tmp_path: Path) -> None:
    with start_registry(tmp_path / "registry", auth="token") as registry:
        tokens = registry.token_server
        assert tokens is not None
        seed(registry, MULTIARCH, REPO)

        tokens.clear_requests()
        push = peers.run(
            [
                "skopeo",
                "copy",
                "--all",
                "--dest-tls-verify=false",
                f"oci-archive:{ARM64}",
                registry.ref("anon:x"),
            ],
            check=False,
        )
        assert push.returncode != 0
        assert tokens.requests, "skopeo never asked the token server"
        assert all(not r.has_authorization and r.subject == "" for r in tokens.requests)
        for r in tokens.requests:
            assert all(a["actions"] == ["pull"] for a in r.granted), r.granted
        assert any("repository:anon:pull,push" in r.scopes for r in tokens.requests)
        log = registry.log_text()
        assert '"POST /v2/anon/blobs/uploads/ HTTP/1.1" 401' in log
        assert '"PUT /v2/anon/manifests/x' not in log

        # ...while anonymous pull is granted, and wrong credentials are refused by the token server.
        pulled = peers.skopeo_inspect(registry.ref(REPO), raw=True)
        assert peers.digest_of(pulled) == _top_digest(MULTIARCH)
        wrong = peers.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "alice:nope", registry.ref(REPO)],
            check=False,
        )
        assert wrong.returncode != 0
        assert tokens.requests[-1].status == 401 and tokens.requests[-1].has_authorization


@pytest.mark.e2e
def test_token_server_protocol(tmp_path: Path) -> None:
    with start_registry(tmp_path / "registry", auth="token") as registry:
        tokens = registry.token_server
        assert tokens is not None
        seed(registry, MULTIARCH, "hello:latest")

        # The registry challenges with the token server's realm.
        status, headers, _ = _http(f"{registry.url}/v2/hello/tags/list")
        assert status == 401
        challenge = headers["WWW-Authenticate"]
        assert f'realm="{tokens.realm}"' in challenge and 'scope="repository:hello:pull"' in challenge

        query = urllib.parse.urlencode(
            [
                ("service", tokens.service),
                ("scope", "repository:hello:pull,push"),
                ("scope", "repository:b:pull"),
            ]
        )
        status, _, body = _http(f"{tokens.realm}?{query}", headers=_basic("alice", "s3cret-pass"))
        assert status == 200
        answer = json.loads(body)
        assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300 and answer["issued_at"]
        claims = tokens.verify(answer["token"])
        header, _ = decode_jwt_unverified(answer["token"])
        assert header["alg"] == "RS256" and header["x5c"] == [base64.b64encode(tokens.signer.cert_der).decode()]
        assert claims["iss"] == tokens.issuer and claims["aud"] == tokens.service and claims["sub"] == "alice"
        assert claims["access"] == [
            {"type": "repository", "name": "hello", "actions": ["pull", "push"]},
            {"type": "repository", "name": "b", "actions": ["pull"]},
        ]
        assert isinstance(claims["exp"], int) and claims["exp"] > time.time()

        # The registry accepts the token.
        status, _, body = _http(
            f"{registry.url}/v2/hello/tags/list", headers={"Authorization": f"Bearer {answer['token']}"}
        )
        assert status == 200 and json.loads(body) == {"name": "hello", "tags": ["latest"]}

        # Anonymous: pull only. Wrong password: 401.
        _, _, body = _http(f"{tokens.realm}?{query}")
        assert decode_jwt_unverified(json.loads(body)["token"])[1]["access"] == [
            {"type": "repository", "name": "hello", "actions": ["pull"]},
            {"type": "repository", "name": "b", "actions": ["pull"]},
        ]
        assert _http(f"{tokens.realm}?{query}", headers=_basic("alice", "bad"))[0] == 401

        # OAuth2: password grant (offline) -> refresh token -> refresh grant.
        form = {"grant_type": "password", "username": "alice", "password": "s3cret-pass", "client_id": "t"}
        form |= {"access_type": "offline", "service": tokens.service, "scope": "repository:hello:pull"}
        status, _, body = _http(tokens.realm, data=urllib.parse.urlencode(form).encode())
        assert status == 200 and json.loads(body)["refresh_token"] == tokens.refresh_token
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "client_id": "t"}
        form |= {"service": tokens.service, "scope": "repository:hello:pull repository:hello:push"}
        status, _, body = _http(tokens.realm, data=urllib.parse.urlencode(form).encode())
        refreshed = json.loads(body)
        assert status == 200 and decode_jwt_unverified(refreshed["access_token"])[1]["sub"] == "alice"
        assert tokens.requests[-1].granted == [{"type": "repository", "name": "hello", "actions": ["pull", "push"]}]
        form["refresh_token"] = "not-the-token"
        assert _http(tokens.realm, data=urllib.parse.urlencode(form).encode())[0] == 401

        methods = [(r.method, r.has_authorization, r.status) for r in tokens.requests]
        assert ("GET", True, 200) in methods and ("GET", False, 200) in methods and ("POST", False, 401) in methods

        # Policy is configurable per test.
        tokens.anonymous_actions = frozenset()
        _, _, body = _http(f"{tokens.realm}?{query}")
        assert decode_jwt_unverified(json.loads(body)["token"])[1]["access"] == []


@pytest.mark.e2e
def test_restart_keeps_port_and_data(tmp_path: Path) -> None:
    with start_registry(tmp_path / "registry", auth="htpasswd", tls=True) as registry:
        seed(registry, MULTIARCH, REPO)
        before = peers.skopeo_inspect(registry.ref(REPO), raw=True, extra=registry.skopeo_args())
        port = registry.port

        registry.stop()
        assert not registry.running
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

        registry.start()
        assert registry.port == port
        after = peers.skopeo_inspect(registry.ref(REPO), raw=True, extra=registry.skopeo_args())
        assert after == before

        registry.stop(graceful=False)  # a crash (SIGKILL) loses nothing either
        registry.start()
        assert peers.skopeo_inspect(registry.ref(REPO), raw=True, extra=registry.skopeo_args()) == before

        # If the port is taken while it is down, start() fails with the log tail in the message.
        registry.stop()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # our own old connections linger
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with pytest.raises(RegistryError, match="address already in use"):
                registry.start(timeout=5)

    # A second registry can serve the first one's storage.
    with start_registry(tmp_path / "second", storage=registry.storage) as second:
        assert peers.skopeo_inspect(second.ref(REPO), raw=True) == before


# ------------------------------------------------------------------------------------------ images


@pytest.mark.e2e
def test_validate_archives(tmp_path: Path) -> None:
    peers.oci_validate_archive(ARM64, tmp_path)
    peers.oci_validate_archive(ARM64, tmp_path, ref=_top_digest(ARM64))
    with pytest.raises(AssertionError, match="each ref must contain two parts|not match"):
        peers.oci_validate_archive(ARM64, tmp_path, ref="name=latest")  # skopeo archives have no ref.name
    # The Windows images of the multi-arch index have foreign layers whose blobs are not in the archive.
    with pytest.raises(AssertionError, match="dad81795ce10"):
        peers.oci_validate_archive(MULTIARCH, tmp_path)


@pytest.fixture
def busybox_archive(tmp_path: Path) -> Path:
    peers.require("umoci", "busybox")
    busybox = Path(peers.which("busybox") or "")
    assert busybox.read_bytes()[:4] == b"\x7fELF"
    layout = peers.umoci_build(
        tmp_path / "layout",
        {"/bin/busybox": busybox},
        entrypoint=["/bin/busybox"],
        cmd=["echo", "hello-from-busybox"],
        env={"PATH": "/bin", "GREETING": "hi"},
        workdir="/",
    )
    return peers.pack_layout(layout, tmp_path / "busybox.tar")


@pytest.mark.e2e
def test_run_busybox_image(tmp_path: Path, busybox_archive: Path) -> None:
    peers.require("runc")
    peers.oci_validate_archive(busybox_archive, tmp_path, ref="latest")

    result = peers.run_image(busybox_archive)
    assert result.stdout == "hello-from-busybox\n" and result.returncode == 0

    result = peers.run_image(
        busybox_archive,
        args=[
            "/bin/busybox",
            "sh",
            "-c",
            'id -u; id -g; pwd; echo "$GREETING $EXTRA"; echo oops >&2; exit 3',
        ],
        env={"EXTRA": "there"},
        cwd="/bin",
        user="1000:1001",
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout.splitlines() == ["1000", "1001", "/bin", "hi there"]
    assert result.stderr == "oops\n"
    with pytest.raises(AssertionError, match="exit code: 7"):
        peers.run_image(busybox_archive, args=["/bin/busybox", "sh", "-c", "exit 7"])

    # A bundle keeps working across runs; runc leaves no container behind.
    bundle = peers.umoci_unpack(busybox_archive, "latest", tmp_path / "bundle")
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    assert peers.runc_run(bundle, args=["/bin/busybox", "cat", "/proc/1/cmdline"]).stdout.startswith("/bin/busybox")
    assert peers.runc_run(bundle).stdout == "hello-from-busybox\n"


@pytest.mark.e2e
def test_run_platform_from_index(tmp_path: Path, busybox_archive: Path) -> None:
    """umoci cannot unpack from an index; run_image(platform=...) picks the platform's manifest."""
    peers.require("runc")
    layout = peers.extract_archive(busybox_archive, tmp_path / "multi")
    arm = peers.extract_archive(ARM64, tmp_path / "arm")
    for blob in (arm / "blobs" / "sha256").iterdir():
        shutil.copy(blob, layout / "blobs" / "sha256" / blob.name)
    amd64 = dict(peers.read_index(layout)["manifests"][0])
    amd64.pop("annotations")
    arm64 = peers.read_index(arm)["manifests"][0]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {**arm64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {**amd64, "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }
    ).encode()
    digest = hashlib.sha256(index).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(index)
    top = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": f"sha256:{digest}",
        "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    archive = peers.pack_layout(layout, tmp_path / "multi.tar")
    peers.oci_validate_archive(archive, tmp_path, ref="latest")

    with pytest.raises(AssertionError, match="ambiguous"):
        peers.umoci_unpack(archive, "latest", tmp_path / "plain-bundle")
    assert peers.run_image(archive, platform="linux/amd64").stdout == "hello-from-busybox\n"
    bundle = peers.umoci_unpack(archive, "latest", tmp_path / "arm-bundle", platform="linux/arm64/v8")
    assert (bundle / "rootfs" / "hello").is_file()


@pytest.mark.e2e
def test_arm64_busybox(request: pytest.FixtureRequest) -> None:
    peers.require("qemu-aarch64-static")
    binary = peers.arm64_busybox(request.config.cache.mkdir("arm64-busybox"))
    if binary is None:
        pytest.skip("busybox-static:arm64 not obtainable from the Debian mirror")
    assert peers.run(["qemu-aarch64-static", str(binary), "echo", "hi-arm64"]).stdout == "hi-arm64\n"


# ------------------------------------------------------------------------------------------ runtimes

HELLO = "Hello from a FROM-scratch image built by zeroimage!\nI am /hello, pid 1, working in /.\n"


def test_a_daemon_that_cannot_start_is_unavailable_with_its_log() -> None:
    """What makes the runtime fixtures skip: a daemon that exits, or never answers, is stopped
    and reported with its log's tail; nothing of it is left."""
    exits = Daemon("exits", ["sh", "-c", "echo no luck here; exit 3"], private_folder("exits"), lambda: False)
    with pytest.raises(PeerUnavailable, match=r"(?s)exits exited with code 3 while starting.*no luck here"):
        exits.start(timeout=10)
    exits.close()
    assert not exits.root.exists()
    hangs = Daemon("hangs", ["sleep", "600"], private_folder("hangs"), lambda: False)
    started = time.monotonic()
    with pytest.raises(PeerUnavailable, match="hangs was not ready after 0.5 s"):
        hangs.start(timeout=0.5)
    assert time.monotonic() - started < 10
    with pytest.raises(AssertionError, match="hangs is not running"):
        hangs.check_alive()
    hangs.close()
    assert not hangs.root.exists()


@pytest.mark.e2e
def test_containerd_runs_an_image_zeroimage_built(
    zeroimage: Zeroimage, containerd: Containerd, static_binary: Path, busybox: Path, tmp_path: Path
) -> None:
    """ctr imports the archive under the digest zeroimage printed, and runs the image's own
    command, or the one given, with the image's Env and the variables given."""
    printed = zeroimage("build", "-o", "hello.tar", str(static_binary)).stdout
    digest = digest_in(printed)
    assert containerd.import_archive(tmp_path / "hello.tar", name="zi/hello") == {"zi/hello:latest": digest}
    assert containerd.run("zi/hello:latest").stdout == HELLO
    assert containerd.run("zi/hello:latest", "/hello", "from-ctr").stdout == HELLO + "argument 1: from-ctr\n"

    zeroimage("build", "-o", "busybox.tar", "--env", "GREETING=hi", str(busybox))
    (name,) = containerd.import_archive(tmp_path / "busybox.tar", name="zi/busybox")
    env = containerd.run(name, "/busybox", "env", env={"EXTRA": "given"}).stdout.splitlines()
    assert "GREETING=hi" in env and "EXTRA=given" in env
    failed = containerd.run(name, "/busybox", "sh", "-c", "echo oops >&2; exit 3", check=False)
    assert (failed.returncode, failed.stderr) == (3, "oops\n")


@pytest.mark.e2e
def test_dockerd_loads_and_runs_what_zeroimage_wrote(
    zeroimage: Zeroimage, dockerd: Dockerd, static_binary: Path, tmp_path: Path
) -> None:
    """docker load takes zeroimage's docker-archive (as the image whose ID is its config's
    digest), docker run runs it, and zeroimage's -o docker-daemon: reaches this daemon."""
    zeroimage("build", "-o", "docker-archive:d.tar:harness/loaded:v1", str(static_binary))
    with tarfile.open(tmp_path / "d.tar") as tar:
        (entry,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
    assert dockerd.load(tmp_path / "d.tar") == ["harness/loaded:v1"]
    info = dockerd.inspect("harness/loaded:v1")
    assert info["Id"] == peers.digest_of(config) and info["Config"]["Entrypoint"] == ["/hello"]
    assert dockerd.run("harness/loaded:v1", "arg1").stdout == HELLO + "argument 1: arg1\n"

    zeroimage("build", "-o", "docker-daemon:harness/daemon:v2", str(static_binary), env=dockerd.env)
    # the same inputs give the same image: one image ID, now under both tags (and any other
    # test's name for it: the daemon is the session's)
    assert {"harness/daemon:v2", "harness/loaded:v1"} <= set(dockerd.inspect("harness/daemon:v2")["RepoTags"])
    assert dockerd.run("harness/daemon:v2").stdout == HELLO


@pytest.mark.e2e
def test_podman_runs_an_archive_zeroimage_wrote(
    zeroimage: Zeroimage, podman: Podman, static_binary: Path, tmp_path: Path
) -> None:
    zeroimage("build", "-o", "hello.tar", "-o", "docker-archive:d.tar", str(static_binary))
    assert podman.run(f"oci-archive:{tmp_path / 'hello.tar'}", "from-podman").stdout == (
        HELLO + "argument 1: from-podman\n"
    )
    assert podman.run(f"docker-archive:{tmp_path / 'd.tar'}").stdout == HELLO
