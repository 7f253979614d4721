"""Registry faults survived, credentials kept to their host, hostile replies refused."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import MULTIARCH, Zeroimage
from tests.support import peers
from tests.support.faultproxy import FaultProxy
from tests.support.outcomes import digest_in
from tests.support.registry import seed, start_registry
from tests.support.waiting import Background, wait_for


def test_full_pull_build_push_through_a_flaky_proxy(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg") as registry, FaultProxy(registry.url, mode="flaky") as proxy:
        seed(registry, MULTIARCH, "base:1")
        proc = zeroimage(
            "build",
            "--from",
            f"{proxy.host}/base:1",
            "--push",
            f"{proxy.host}/app:v1",
            "-o",
            "out.tar",
            str(static_binary),
        )
        assert proxy.faults >= 6, proxy.requests  # every request's first try failed: 503s and cut replies
        assert proxy.fault_count("flaky-503") and proxy.fault_count("flaky-cut")
        digest = digest_in(proc.stdout.split()[-1])
        raw = peers.skopeo_inspect(f"docker://{registry.host}/app:v1", raw=True)  # straight to the registry
        assert peers.digest_of(raw) == digest
        pulled = tmp_path / "pulled.tar"
        peers.run(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{registry.host}/app:v1",
                f"oci-archive:{pulled}:latest",
            ]
        )
        assert "Hello from a FROM-scratch image" in peers.run_image(pulled).stdout
        assert proxy.errors == []


def test_retried_replies_keep_their_connection(zeroimage: Zeroimage, tmp_path: Path) -> None:
    # A 503's body is read before the retry, so the kept-alive connection serves it: a client that
    # drops it pays a new TCP (and TLS) handshake for every retry, and its kernel resets the
    # connection under the registry when the body arrived after the headers.
    with start_registry(tmp_path / "reg") as registry, FaultProxy(registry.url) as proxy:
        seed(registry, MULTIARCH, "base:1")
        proxy.fail_next(3)
        zeroimage("inspect", f"{proxy.host}/base:1")
        assert proxy.fault_count("fail-next-503") == 3
        # One connection for the HTTPS probe that a plain-HTTP registry refuses, one for all the rest.
        assert (proxy.connections, proxy.hangups, proxy.errors) == (2, 0, []), proxy.requests


def test_registry_stopped_mid_push_then_restarted(zeroimage: Zeroimage, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as handle:  # incompressible, so the upload takes a second or more
        handle.write(Path("/bin/busybox").read_bytes())
        handle.write(os.urandom(256 << 20))
    big.chmod(0o755)
    with start_registry(tmp_path / "reg") as registry:

        def stop_mid_upload() -> None:
            wait_for(lambda: "blobs/uploads/" in registry.log_text(), "an upload to begin", timeout=30)
            registry.stop(graceful=False)

        stopper = Background(stop_mid_upload, "stopping the registry mid-upload")
        started = time.monotonic()
        proc = zeroimage("build", "--push", f"{registry.host}/app:v1", str(big), check=False)
        stopper.result(timeout=30)  # it was stopped while the build ran
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.describe()
        assert len(errors) == 1 and registry.host in errors[0], proc.describe()
        # where the stop lands decides which: a refused connection, or an upload retried in vain
        assert "cannot reach" in errors[0] or "kept failing" in errors[0], proc.describe()
        assert time.monotonic() - started < 60
        registry.start()
        inspect = peers.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/app:v1"], check=False
        )
        assert inspect.returncode != 0 and "manifest unknown" in inspect.stderr, inspect.stderr  # nothing tagged
        proc = zeroimage("build", "--push", f"{registry.host}/app:v1", str(big))
        raw = peers.skopeo_inspect(f"docker://{registry.host}/app:v1", raw=True)
        assert peers.digest_of(raw) == digest_in(proc.stdout)
        peers.run(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{registry.host}/app:v1",
                f"oci:{tmp_path / 'check'}:x",
            ]
        )  # every blob present and matching its digest


def test_blob_redirects_to_another_host_carry_no_credentials(
    zeroimage: Zeroimage, busybox: Path, tmp_path: Path
) -> None:
    with start_registry(tmp_path / "reg", auth="htpasswd") as registry, FaultProxy(registry.url) as proxy:
        seed(registry, MULTIARCH, "base:1")
        proxy.mode = "redirect-blobs"
        zeroimage("login", "-u", registry.username, "--password-stdin", proxy.host, input=registry.password)
        zeroimage("build", "--from", f"{proxy.host}/base:1", "-o", "out.tar", str(busybox))
        assert proxy.redirect_requests, "the blob was not fetched from the second host"
        assert all("Authorization" not in r.headers for r in proxy.redirect_requests)
        assert any("Authorization" in r.headers for r in proxy.main_requests)


def test_hostile_registry_replies_are_refused(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg") as registry, FaultProxy(registry.url) as proxy:
        seed(registry, MULTIARCH, "base:1")
        for mode, words in [("redirect-loop", "redirect"), ("big-manifest", "larger than"), ("wrong-digest", "digest")]:
            proxy.mode = mode
            proc = zeroimage(
                "build", "--no-cache", "--from", f"{proxy.host}/base:1", "-o", "x.tar", str(busybox), check=False
            )
            assert proc.returncode != 0 and words in proc.stderr and "Traceback" not in proc.stderr, (mode, proc.stderr)
            assert not (tmp_path / "x.tar").exists()


def test_registry_refusing_monolithic_uploads_gets_chunks(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    with start_registry(tmp_path / "reg") as registry, FaultProxy(registry.url, mode="require-chunked") as proxy:
        zeroimage("build", "--push", f"{proxy.host}/app:v1", str(static_binary))
        assert any(r.method == "PATCH" for r in proxy.requests)
        peers.run(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{registry.host}/app:v1",
                f"oci:{tmp_path / 'check'}:x",
            ]
        )


def test_no_secret_is_ever_printed(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg", auth="token") as registry:
        zeroimage("login", "-u", registry.username, "--password-stdin", registry.host, input=registry.password)
        outputs = [
            zeroimage("build", "-v", "--json", "--push", f"{registry.host}/app:v1", str(static_binary)),
            zeroimage("build", "-v", "--push", f"{registry.host}/app:v1", str(static_binary)),
            zeroimage("check-auth", "-v", "--push", f"{registry.host}/app"),
        ]
        registry.token_server.user_actions = ("pull",)  # type: ignore[union-attr]
        outputs.append(zeroimage("build", "-v", "--push", f"{registry.host}/other:v1", str(static_binary), check=False))
        tokens = [r for r in registry.token_server.requests]  # type: ignore[union-attr]
        assert tokens
        for proc in outputs:
            text = proc.stdout + proc.stderr
            assert registry.password not in text and "Bearer" not in text and "Basic " not in text
        assert outputs[-1].returncode != 0
