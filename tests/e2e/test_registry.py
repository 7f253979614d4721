"""Pull from and push to the real CNCF registry in every auth set-up; credentials; login/logout."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MULTIARCH, Zeroimage
from tests.support import peers
from tests.support.outcomes import digest_in
from tests.support.registry import Registry, seed, start_registry

SETUPS = {
    "plain": ("none", False),
    "htpasswd": ("htpasswd", False),
    "token": ("token", False),
    "htpasswd-tls": ("htpasswd", True),
    "token-tls": ("token", True),
}


@pytest.fixture(params=list(SETUPS))
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    auth, tls = SETUPS[request.param]
    with start_registry(tmp_path / "registry", auth=auth, tls=tls) as reg:  # type: ignore[arg-type]
        yield reg


def env_for(registry: Registry) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(registry.ca_cert)} if registry.ca_cert else {}


def login(zeroimage: Zeroimage, registry: Registry) -> None:
    if registry.auth != "none":
        zeroimage(
            "login",
            "-u",
            registry.username,
            "--password-stdin",
            registry.host,
            input=registry.password + "\n",
            env=env_for(registry),
        )


def skopeo_creds(registry: Registry) -> list[str]:
    return registry.skopeo_args("", creds=True)


def test_pull_build_push_then_peers_read_and_run_it(
    zeroimage: Zeroimage, registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    seed(registry, MULTIARCH, "base/hello:latest")
    login(zeroimage, registry)
    proc = zeroimage(
        "build",
        "--from",
        f"{registry.host}/base/hello:latest",
        "--push",
        f"{registry.host}/app:v1",
        str(static_binary),
        env=env_for(registry),
    )
    pushed = proc.stdout.strip()
    assert pushed.startswith(f"{registry.host}/app@sha256:")  # what skopeo opens (no tag beside a digest)
    digest = digest_in(pushed)
    peers.skopeo_inspect(f"docker://{pushed}", raw=True, extra=skopeo_creds(registry))
    raw = peers.skopeo_inspect(f"docker://{registry.host}/app:v1", raw=True, extra=skopeo_creds(registry))
    assert peers.digest_of(raw) == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert len(manifest["layers"]) == 2
    log = registry.log_text()
    assert "mount=sha256" in log  # the base layer was mounted across repositories, not copied
    pulled = tmp_path / "pulled.tar"
    peers.run(
        [
            "skopeo",
            "copy",
            *registry.skopeo_args("src"),
            f"docker://{registry.host}/app:v1",
            f"oci-archive:{pulled}:latest",
        ]
    )
    result = peers.run_image(pulled)
    assert "Hello from a FROM-scratch image" in result.stdout


def test_unchanged_repush_uploads_nothing(zeroimage: Zeroimage, tmp_path: Path, static_binary: Path) -> None:
    with start_registry(tmp_path / "reg") as registry:
        env = {"SOURCE_DATE_EPOCH": "1700000000"}
        args = ("build", "--push", f"{registry.host}/app:v1", str(static_binary))
        first = zeroimage(*args, env=env).stdout
        before = registry.log_text()
        assert before.count("PUT /v2/app/blobs/uploads/") == 2  # layer and config
        requests = len(registry.access_log())
        result = json.loads(zeroimage(*args, "--json", env=env).stdout)
        after = [line.split('"')[1] for line in registry.access_log()[requests:]]
        assert [o["digest"] for o in result["outputs"]] == [digest_in(first)]
        assert result["outputs"][0]["blobs"] == {"uploaded": 0, "mounted": 0, "existing": 0}
        assert [layer["origin"] for layer in result["platforms"][0]["layers"]] == ["cache"]
        # the tag already names this image: one HEAD, nothing written
        assert [r for r in after if not r.startswith("GET /v2/ ")] == ["HEAD /v2/app/manifests/v1 HTTP/1.1"]
        # another tag for the same image: only the manifest is put, under the new tag
        requests = len(registry.access_log())
        third = zeroimage("build", "--push", f"{registry.host}/app:v2", str(static_binary), env=env).stdout
        after = [line.split('"')[1] for line in registry.access_log()[requests:]]
        assert third == first  # the same image (printed as REPOSITORY@DIGEST), now under the new tag too
        assert not [r for r in after if "/blobs/" in r]
        assert [r for r in after if r.startswith("PUT ")] == ["PUT /v2/app/manifests/v2 HTTP/1.1"]
        digest = digest_in(first)
        for tag in ("v1", "v2"):
            raw = peers.skopeo_inspect(f"docker://{registry.host}/app:{tag}", raw=True, extra=["--tls-verify=false"])
            assert peers.digest_of(raw) == digest


def test_a_push_keeps_only_the_layer_identity_and_remakes_its_bytes_when_needed(
    zeroimage: Zeroimage, tmp_path: Path, static_binary: Path
) -> None:
    blobs = tmp_path / ".cache" / "blobs" / "sha256"
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    with start_registry(tmp_path / "a") as first, start_registry(tmp_path / "b") as second:
        pushed = zeroimage("build", "--push", f"{first.host}/app:v1", str(static_binary), env=env).stdout
        assert not [p for p in blobs.iterdir()]  # the layer went to the registry only, never to disk
        # unchanged, to a registry that lacks the layer: the same bytes are made again and verified
        proc = zeroimage("build", "-v", "--push", f"{second.host}/app:v1", str(static_binary), env=env)
        assert "unchanged (cache)" in proc.stderr
        assert digest_in(proc.stdout) == digest_in(pushed)
        assert len(list(blobs.iterdir())) == 1  # now kept, for the upload
        for registry in (first, second):
            peers.run(
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{registry.host}/app:v1",
                    f"oci:{tmp_path / 'check'}:{registry.port}",
                ]
            )
        # an archive needs the bytes locally: a hit now (the layer is kept), so nothing is compressed
        proc = zeroimage("build", "-v", "-o", "out.tar", str(static_binary), env=env)
        assert "unchanged (cache)" in proc.stderr and digest_in(proc.stdout) == digest_in(pushed)


def test_several_tags_and_repositories_share_one_upload(
    zeroimage: Zeroimage, tmp_path: Path, static_binary: Path
) -> None:
    with start_registry(tmp_path / "reg") as registry:
        host = registry.host
        refs = [f"{host}/app:v1", f"{host}/app:latest", f"{host}/mirror:v1"]
        proc = zeroimage("build", "-v", *[arg for ref in refs for arg in ("--push", ref)], str(static_binary))
        digests = {digest_in(line) for line in proc.stdout.splitlines()}
        assert len(digests) == 1
        requests = [line.split('"')[1] for line in registry.access_log()]
        assert len([r for r in requests if r.startswith("PATCH ")]) == 1  # the layer, streamed once
        assert len([r for r in requests if "mount=" in r]) >= 1  # into the other repository
        assert "has this image: tagging it latest" in proc.stderr
        for ref in refs:
            raw = peers.skopeo_inspect(f"docker://{ref}", raw=True, extra=["--tls-verify=false"])
            assert peers.digest_of(raw) in digests


def test_archive_and_push_together(zeroimage: Zeroimage, tmp_path: Path, static_binary: Path) -> None:
    with start_registry(tmp_path / "reg") as registry:
        proc = zeroimage("build", "-o", "out.tar", "--push", f"{registry.host}/app:v1", str(static_binary))
        lines = proc.stdout.splitlines()
        assert len(lines) == 2
        assert digest_in(lines[0]) == digest_in(lines[1])
        archived = peers.skopeo_inspect(f"oci-archive:{tmp_path / 'out.tar'}", raw=True)
        pushed = peers.skopeo_inspect(f"docker://{registry.host}/app:v1", raw=True)
        assert peers.digest_of(archived) == peers.digest_of(pushed) == digest_in(lines[0])  # one image in both places
        # --push alone writes no archive
        proc = zeroimage("build", "--push", f"{registry.host}/app:v2", str(static_binary))
        assert not (tmp_path / "hello.tar").exists()


def test_cross_registry_copy_streams_base_layers(zeroimage: Zeroimage, tmp_path: Path, busybox_arm64: Path) -> None:
    with start_registry(tmp_path / "a") as source, start_registry(tmp_path / "b") as target:
        seed(source, MULTIARCH, "library/hello-world:latest")
        zeroimage(
            "build",
            "--from",
            f"{source.host}/library/hello-world",
            "--push",
            f"{target.host}/app:arm",
            str(busybox_arm64),
        )
        inspected = peers.skopeo_inspect(f"docker://{target.host}/app:arm")
        assert inspected["Architecture"] == "arm64" and len(inspected["Layers"]) == 2


def test_pinned_digest_is_verified(zeroimage: Zeroimage, tmp_path: Path, busybox: Path) -> None:
    with start_registry(tmp_path / "reg") as registry:
        seed(registry, MULTIARCH, "base:1")
        wrong = "sha256:" + "0" * 64
        proc = zeroimage("build", "--from", f"{registry.host}/base@{wrong}", "-o", "x.tar", str(busybox), check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and f"base@{wrong} not found" in errors[0], proc.stderr
        assert not (tmp_path / "x.tar").exists()
        good = peers.digest_of(peers.skopeo_inspect(f"docker://{registry.host}/base:1", raw=True))
        zeroimage("build", "--from", f"{registry.host}/base:1@{good}", "-o", "x.tar", str(busybox))
        built = json.loads(peers.skopeo_inspect(f"oci-archive:{tmp_path / 'x.tar'}", raw=True))
        assert built["annotations"]["org.opencontainers.image.base.name"].endswith(f"@{good}")  # that base it was


def test_registry_errors_are_one_clear_line(zeroimage: Zeroimage, tmp_path: Path, busybox: Path) -> None:
    with start_registry(tmp_path / "reg", auth="htpasswd", tls=True) as registry:
        env = env_for(registry)
        failures = [zeroimage("build", "--push", f"{registry.host}/app:v1", str(busybox), env=env, check=False)]
        assert "zeroimage login" in failures[-1].stderr and registry.host in failures[-1].stderr
        failures.append(
            zeroimage("login", "-u", "alice", "--password-stdin", registry.host, input="wrong\n", env=env, check=False)
        )
        assert "rejected" in failures[-1].stderr
        assert not (tmp_path / ".docker" / "config.json").exists()  # a wrong password stores nothing
        login(zeroimage, registry)
        failures.append(
            zeroimage("build", "--from", f"{registry.host}/nothing/here:v1", str(busybox), env=env, check=False)
        )
        assert "not found" in failures[-1].stderr
        # no CA given: a certificate error, never a fallback to plain HTTP
        failures.append(zeroimage("build", "--push", f"{registry.host}/app:v1", str(busybox), check=False))
        assert "TLS verification failed" in failures[-1].stderr
    started = time.monotonic()
    port = registry.port
    failures.append(zeroimage("build", "--push", f"127.0.0.1:{port}/app:v1", str(busybox), check=False))
    assert "cannot reach" in failures[-1].stderr
    assert time.monotonic() - started < 60
    for result in failures:  # each one line and a failure's exit code, no traceback, no secret
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert result.returncode != 0 and len(errors) == 1, result.describe()
        assert errors[0].startswith("zeroimage: error: "), result.describe()
        assert "Traceback" not in result.stderr and registry.password not in result.stdout + result.stderr


def test_login_logout_and_config_file(zeroimage: Zeroimage, tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg", auth="htpasswd") as registry:
        config_dir = tmp_path / ".docker"
        config_dir.mkdir()
        (config_dir / "config.json").write_text(json.dumps({"auths": {}, "psFormat": "table {{.ID}}"}))
        proc = zeroimage(
            "login", "-u", registry.username, "--password-stdin", registry.host, input=registry.password + "\n"
        )
        assert "Login Succeeded" in proc.stdout and registry.password not in proc.stdout + proc.stderr
        config = json.loads((config_dir / "config.json").read_text())
        assert config["psFormat"] == "table {{.ID}}"  # keys we do not know are kept
        assert registry.host in config["auths"]
        assert stat.S_IMODE(os.stat(config_dir / "config.json").st_mode) == 0o600
        zeroimage("check-auth", "--push", f"{registry.host}/app")
        assert "uploads" in registry.log_text() and "DELETE" in registry.log_text()
        zeroimage("logout", registry.host)
        assert registry.host not in json.loads((config_dir / "config.json").read_text())["auths"]
        proc = zeroimage("check-auth", "--push", f"{registry.host}/app", check=False)
        assert proc.returncode != 0 and "zeroimage login" in proc.stderr


def test_credential_helper_is_used(zeroimage: Zeroimage, tmp_path: Path, static_binary: Path) -> None:
    with start_registry(tmp_path / "reg", auth="token") as registry:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-test"
        store = tmp_path / "helper-store.json"
        helper.write_text(
            "#!/usr/bin/env python3\n"
            "import json, sys\n"
            f"path = {str(store)!r}\n"
            "try:\n    data = json.load(open(path))\nexcept FileNotFoundError:\n    data = {}\n"
            "cmd = sys.argv[1]\n"
            "if cmd == 'store':\n    item = json.load(sys.stdin); data[item['ServerURL']] = item\n"
            "    json.dump(data, open(path, 'w'))\n"
            "elif cmd == 'get':\n    url = sys.stdin.read().strip()\n"
            "    if url not in data:\n        print('credentials not found in native keychain'); sys.exit(1)\n"
            "    json.dump(data[url], sys.stdout)\n"
            "elif cmd == 'erase':\n    data.pop(sys.stdin.read().strip(), None); json.dump(data, open(path, 'w'))\n"
        )
        helper.chmod(0o755)
        (tmp_path / ".docker").mkdir()
        (tmp_path / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "test"}}))
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        zeroimage("login", "-u", registry.username, "--password-stdin", registry.host, input=registry.password, env=env)
        assert registry.password in store.read_text()
        assert registry.password not in (tmp_path / ".docker" / "config.json").read_text()
        zeroimage("build", "--push", f"{registry.host}/app:v1", str(static_binary), env=env)
        assert any(r.has_authorization for r in registry.token_server.requests)  # type: ignore[union-attr]
        helper.write_text("#!/bin/sh\necho 'keychain locked' >&2\nexit 3\n")
        proc = zeroimage("build", "--push", f"{registry.host}/app:v1", str(static_binary), env=env, check=False)
        assert proc.returncode != 0 and "credential helper 'test'" in proc.stderr and "keychain locked" in proc.stderr


def test_identity_token_is_exchanged_with_a_refresh_grant(
    zeroimage: Zeroimage, tmp_path: Path, static_binary: Path
) -> None:
    with start_registry(tmp_path / "reg", auth="token") as registry:
        server = registry.token_server
        assert server is not None
        (tmp_path / ".docker").mkdir()
        config = {"auths": {registry.host: {"identitytoken": server.refresh_token}}}
        (tmp_path / ".docker" / "config.json").write_text(json.dumps(config))
        zeroimage("build", "--push", f"{registry.host}/app:v1", str(static_binary))
        posts = [r for r in server.requests if r.method == "POST"]
        assert posts and posts[0].form["grant_type"] == ["refresh_token"]
        assert all(r.method == "POST" for r in server.requests)  # never a password grant


def test_private_ca_from_a_certs_d_folder(zeroimage: Zeroimage, tmp_path: Path, static_binary: Path) -> None:
    with start_registry(tmp_path / "reg", tls=True) as registry:
        assert registry.ca_cert is not None
        home = tmp_path / "home"
        certs = home / ".config" / "containers" / "certs.d" / registry.host
        certs.mkdir(parents=True)
        (certs / "ca.crt").write_bytes(registry.ca_cert.read_bytes())
        proc = zeroimage("build", "--push", f"{registry.host}/app:v1", str(static_binary), env={"HOME": str(home)})
        assert proc.stdout.startswith(f"{registry.host}/app@sha256:")
        # it is there, as skopeo sees it over TLS with that CA alone
        raw = peers.skopeo_inspect(registry.ref("app:v1"), raw=True, extra=registry.skopeo_args())
        assert peers.digest_of(raw) == digest_in(proc.stdout)
