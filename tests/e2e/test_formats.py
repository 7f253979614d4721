"""Multi-platform builds; oci:, oci-archive:, docker-archive: and docker-daemon: in and out;
Docker media types; --json, --digest-file and inspect."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ARM64_ONLY, MULTIARCH, Zeroimage
from tests.support import peers
from tests.support.dockerd import Dockerd
from tests.support.outcomes import digest_in
from tests.support.registry import start_registry


def test_multi_platform_archive(zeroimage: Zeroimage, static_binary: Path, busybox_arm64: Path, tmp_path: Path) -> None:
    proc = zeroimage(
        "build",
        "--from-archive",
        str(MULTIARCH),
        "--entrypoint-path",
        "/app",
        "-o",
        "multi.tar",
        "--json",
        str(static_binary),
        str(busybox_arm64),
    )
    result = json.loads(proc.stdout)
    assert result["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(p["platform"] for p in result["platforms"]) == ["linux/amd64", "linux/arm64/v8"]
    archive = tmp_path / "multi.tar"
    peers.oci_validate_archive(archive, tmp_path)
    layout = peers.extract_archive(archive, tmp_path / "layout")
    index_json = json.loads((layout / "index.json").read_text())
    (entry,) = index_json["manifests"]  # one tagged index: index.json -> image index -> manifests
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert entry["digest"] == result["digest"]
    raw_index = peers.skopeo_inspect(f"oci-archive:{archive}:latest", raw=True)
    assert peers.digest_of(raw_index) == result["digest"]
    amd64 = peers.run_image(archive, platform="linux/amd64")
    assert "Hello from a FROM-scratch image" in amd64.stdout and "I am /app" in amd64.stdout
    bundle = peers.umoci_unpack(archive, "latest", tmp_path / "arm-bundle", platform="linux/arm64/v8")
    assert (bundle / "rootfs" / "app").read_bytes() == busybox_arm64.read_bytes()
    if peers.which("qemu-aarch64-static"):
        out = peers.run(["qemu-aarch64-static", "-0", "busybox", str(bundle / "rootfs" / "app"), "uname", "-m"])
        assert out.stdout.strip() == "aarch64"


def test_multi_platform_rules(zeroimage: Zeroimage, static_binary: Path, busybox_arm64: Path, tmp_path: Path) -> None:
    proc = zeroimage("build", str(static_binary), str(busybox_arm64), check=False)
    assert proc.returncode != 0 and "--entrypoint-path" in proc.stderr
    proc = zeroimage(
        "build",
        "--from-archive",
        str(ARM64_ONLY),
        "--entrypoint-path",
        "/app",
        str(static_binary),
        str(busybox_arm64),
        check=False,
    )
    assert proc.returncode != 0 and "linux/amd64" in proc.stderr
    script = tmp_path / "app"
    script.write_text("#!/bin/sh\necho hi\n")
    # a script serves any platform: one file, two explicit platforms
    proc = zeroimage(
        "build",
        "--json",
        "--platform",
        f"linux/arm/v7={script}",
        "--platform",
        f"linux/riscv64={script}",
        "-o",
        "s.tar",
    )
    platforms = sorted(p["platform"] for p in json.loads(proc.stdout)["platforms"])
    assert platforms == ["linux/arm/v7", "linux/riscv64"]
    proc = zeroimage("build", "--platform", f"linux/arm64={static_binary}", check=False)
    assert proc.returncode != 0 and "contradicts" in proc.stderr


def test_oci_layout_output_keeps_other_images(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    peers.run(["skopeo", "copy", f"oci-archive:{ARM64_ONLY}", f"oci:{layout}:other"])
    other = peers.skopeo_inspect(f"oci:{layout}:other", raw=True)
    zeroimage("build", "-o", f"oci:{layout}:mine", str(static_binary))
    names = peers.ref_names(layout)
    assert sorted(names) == ["mine", "other"]
    assert peers.skopeo_inspect(f"oci:{layout}:other", raw=True) == other  # the other image, as it was
    result = peers.run_image(layout, tag="mine")
    assert "Hello from a FROM-scratch image" in result.stdout
    # and it is a base like any other
    zeroimage("build", "--from", f"oci:{layout}:mine", "-o", "again.tar", str(static_binary))
    mine = peers.skopeo_inspect(f"oci:{layout}:mine")["Layers"]
    assert peers.skopeo_inspect(f"oci-archive:{tmp_path / 'again.tar'}")["Layers"][:-1] == mine


def test_docker_archive_out_and_in(
    zeroimage: Zeroimage, static_binary: Path, busybox_arm64: Path, tmp_path: Path
) -> None:
    zeroimage(
        "build", "--from-archive", str(MULTIARCH), "-o", "docker-archive:d.tar:example/hello:v1", str(static_binary)
    )
    inspected = peers.skopeo_inspect(f"docker-archive:{tmp_path / 'd.tar'}")
    assert inspected["Architecture"] == "amd64" and len(inspected["Layers"]) == 2
    manifest = json.loads(peers.run(["tar", "-xOf", str(tmp_path / "d.tar"), "manifest.json"]).stdout)
    assert manifest[0]["RepoTags"] == ["example/hello:v1"]
    # a docker-archive written by skopeo is a base too
    base = tmp_path / "base-docker.tar"
    peers.run(["skopeo", "copy", f"oci-archive:{ARM64_ONLY}", f"docker-archive:{base}:hello:arm"])
    zeroimage("build", "--from", f"docker-archive:{base}", "-o", "from-docker.tar", str(busybox_arm64))
    peers.oci_validate_archive(tmp_path / "from-docker.tar", tmp_path)
    # one platform only
    proc = zeroimage(
        "build",
        "--entrypoint-path",
        "/app",
        "-o",
        "docker-archive:m.tar",
        str(static_binary),
        str(busybox_arm64),
        check=False,
    )
    # before any work, with a fix that works
    assert proc.returncode == 2 and "-o oci-archive:PATH or --push" in proc.stderr and "compressing" not in proc.stderr
    assert not (tmp_path / "m.tar").exists()


def test_docker_format_push_and_json(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg") as registry:
        proc = zeroimage(
            "build",
            "--format",
            "docker",
            "--from-archive",
            str(MULTIARCH),
            "--push",
            f"{registry.host}/app:docker",
            "--digest-file",
            "digest.txt",
            "--json",
            str(static_binary),
        )
        result = json.loads(proc.stdout)
        raw = peers.skopeo_inspect(f"docker://{registry.host}/app:docker", raw=True)
        manifest = json.loads(raw)
        assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        assert "annotations" not in manifest
        assert peers.digest_of(raw) == result["digest"] == (tmp_path / "digest.txt").read_text().strip()
        assert result["outputs"][0]["reference"] == f"{registry.host}/app:docker"  # as given, tag included


def test_multi_platform_push(zeroimage: Zeroimage, static_binary: Path, busybox_arm64: Path, tmp_path: Path) -> None:
    with start_registry(tmp_path / "reg") as registry:
        proc = zeroimage(
            "build",
            "--from-archive",
            str(MULTIARCH),
            "--entrypoint-path",
            "/app",
            "--push",
            f"{registry.host}/multi:v1",
            str(static_binary),
            str(busybox_arm64),
        )
        digest = digest_in(proc.stdout)
        raw = peers.skopeo_inspect(f"docker://{registry.host}/multi:v1", raw=True)
        assert peers.digest_of(raw) == digest
        index = json.loads(raw)
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
        arm = peers.skopeo_inspect(f"docker://{registry.host}/multi:v1", extra=["--override-arch", "arm64"])
        assert arm["Architecture"] == "arm64"


def test_inspect_every_transport(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    zeroimage("build", "-o", "a.tar", "-o", "oci:lay:t", "-o", "docker-archive:d.tar:x:y", str(static_binary))
    for source in ("oci-archive:a.tar", "oci:lay:t", "docker-archive:d.tar"):
        text = zeroimage("inspect", source).stdout
        assert "linux/amd64" in text and '["/hello"]' in text
        info = json.loads(zeroimage("inspect", "--json", source).stdout)
        assert info["images"][0]["config"]["config"]["Entrypoint"] == ["/hello"]
    raw = zeroimage("inspect", "--raw", "oci-archive:a.tar").stdout_bytes
    info = json.loads(zeroimage("inspect", "--json", "oci-archive:a.tar").stdout)
    assert peers.digest_of(raw) == info["digest"]
    proc = zeroimage("inspect", "oci-archive:missing.tar", check=False)
    assert proc.returncode != 0 and "missing.tar" in proc.stderr and "Traceback" not in proc.stderr


# -- a real Docker Engine -------------------------------------------------------------------------


def test_docker_load_and_daemon_output(
    zeroimage: Zeroimage, dockerd: Dockerd, static_binary: Path, tmp_path: Path
) -> None:
    zeroimage("build", "-o", "docker-archive:d.tar:zi/loaded:v1", str(static_binary))
    dockerd.load(tmp_path / "d.tar")
    out = dockerd.run("zi/loaded:v1")
    assert "Hello from a FROM-scratch image" in out.stdout
    zeroimage(
        "build",
        "--from-archive",
        str(MULTIARCH),
        "-o",
        "docker-daemon:zi/daemon:v2",
        str(static_binary),
        env=dockerd.env,
    )
    out = dockerd.run("zi/daemon:v2", "arg1")
    assert "argument 1: arg1" in out.stdout
