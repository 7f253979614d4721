"""`zeroimage build` to OCI archives, checked by skopeo, umoci, oci-image-tool and runc."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARM64_ONLY, MULTIARCH, Zeroimage
from tests.support import peers
from tests.support.cli import Home, finish
from tests.support.host import needs_posix_modes, without_modes_notice
from tests.support.outcomes import refused

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def layout_of(archive: Path, tmp: Path) -> Path:
    return peers.extract_archive(archive, tmp / f"layout-{archive.stem}")


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def image_parts(archive: Path, tmp: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(index.json entry, manifest, config) of a single-platform archive."""
    layout = layout_of(archive, tmp)
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads(blob(layout, entry["digest"]))
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    return entry, manifest, config


def check_with_peers(archive: Path, tmp: Path, tag: str = "latest") -> None:
    peers.oci_validate_archive(archive, tmp)
    inspected = peers.skopeo_inspect(f"oci-archive:{archive}:{tag}")
    assert inspected["Digest"].startswith("sha256:")


def test_scratch_image_runs_under_runc(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    proc = zeroimage("build", str(static_binary))
    archive = tmp_path / "hello.tar"  # default: <basename>.tar in the current directory
    check_with_peers(archive, tmp_path)
    entry, manifest, config = image_parts(archive, tmp_path)
    # what it prints is where the image went and its digest, which skopeo finds there
    assert proc.stdout == f"oci-archive:{archive.name}:latest  # {entry['digest']}\n"
    assert peers.digest_of(peers.skopeo_inspect(f"oci-archive:{archive}:latest", raw=True)) == entry["digest"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert config["config"]["Entrypoint"] == ["/hello"]
    assert "Cmd" not in config["config"]
    assert config["rootfs"]["type"] == "layers" and len(config["rootfs"]["diff_ids"]) == 1
    assert len(manifest["layers"]) == 1
    result = peers.run_image(archive)
    assert "Hello from a FROM-scratch image built by zeroimage!" in result.stdout
    assert "I am /hello" in result.stdout


@needs_posix_modes
def test_layer_holds_only_the_binary_with_its_mode(zeroimage: Zeroimage, static_binary: Path, tmp_path: Path) -> None:
    program = tmp_path / "prog"
    program.write_bytes(static_binary.read_bytes())
    program.chmod(0o750)
    link = tmp_path / "link-to-prog"
    link.symlink_to(program)
    zeroimage("build", "-o", "out.tar", str(link))
    _, manifest, _ = image_parts(tmp_path / "out.tar", tmp_path)
    layer = blob(layout_of(tmp_path / "out.tar", tmp_path / "x"), manifest["layers"][0]["digest"])
    import gzip
    import io

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        (member,) = tar.getmembers()
        assert member.name == "link-to-prog" and member.isreg()  # the symlink is followed
        assert (member.mode, member.uid, member.gid) == (0o750, 0, 0)
        assert tar.extractfile(member).read() == static_binary.read_bytes()  # type: ignore[union-attr]


def test_on_multiarch_base_picks_amd64_and_keeps_base(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    zeroimage("build", "--from-archive", str(MULTIARCH), "-o", "img.tar", str(busybox))
    archive = tmp_path / "img.tar"
    check_with_peers(archive, tmp_path)
    entry, manifest, config = image_parts(archive, tmp_path)
    assert entry["platform"]["architecture"] == "amd64"
    assert len(manifest["layers"]) == 2  # hello-world's layer, then ours
    assert config["config"]["Entrypoint"] == ["/busybox"]
    assert "Cmd" not in config["config"]  # the base's Cmd ["/hello"] is cleared
    copy, entrypoint = config["history"][-2:]  # as docker history shows a Dockerfile's
    assert copy["created_by"] == "COPY busybox /busybox" and "empty_layer" not in copy
    assert entrypoint["created_by"] == 'ENTRYPOINT ["/busybox"]' and entrypoint["empty_layer"] is True
    assert len([h for h in config["history"] if not h.get("empty_layer")]) == 2
    annotations = manifest["annotations"]
    assert "org.opencontainers.image.base.name" not in annotations  # a path here: no name anywhere else
    assert annotations["org.opencontainers.image.base.digest"] == entry_of(MULTIARCH, "amd64")
    # the base's layer is present and the image runs: our entrypoint can run the base's /hello
    result = peers.run_image(archive, args=["/busybox", "sh", "-c", "/hello | head -2"])
    assert "Hello from Docker!" in result.stdout


def entry_of(archive: Path, architecture: str) -> str:
    """The digest of the linux ``architecture`` manifest under an OCI archive's nested index."""
    with tarfile.open(archive) as tar:

        def document(digest: str) -> Any:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert member is not None
            return json.load(member)

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        (nested,) = index["manifests"]
        chosen = [
            m
            for m in document(nested["digest"])["manifests"]
            if m["platform"] == {"architecture": architecture, "os": "linux"}
        ]
        return str(chosen[0]["digest"])


def test_a_local_base_gives_the_same_image_from_any_directory(
    zeroimage: Zeroimage, static_binary: Path, tmp_path: Path
) -> None:
    """A base named by its path gives the same image whatever the path says (``base.tar``,
    ``./x/../base.tar``, an absolute path): the builder's directories are never in the image."""
    shutil.copy(MULTIARCH, tmp_path / "base.tar")
    (tmp_path / "x").mkdir()
    digests = set()
    for base in ("base.tar", "./x/../base.tar", str(tmp_path / "base.tar"), f"oci-archive:{tmp_path}/base.tar"):
        out = zeroimage("build", "--json", "--from", base, "-o", "out.tar", str(static_binary), env=EPOCH)
        digests.add(json.loads(out.stdout)["digest"])
        assert str(tmp_path) not in (tmp_path / "out.tar").read_bytes().decode("latin-1")
    assert len(digests) == 1, digests


def test_base_config_fields_are_kept(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    zeroimage("build", "--from-archive", str(MULTIARCH), "-o", "img.tar", str(busybox))
    _, manifest, config = image_parts(tmp_path / "img.tar", tmp_path)
    amd64 = ["--override-arch", "amd64", "--override-os", "linux"]
    base_config = json.loads(peers.skopeo_inspect(f"oci-archive:{MULTIARCH}", raw=True, config=True, extra=amd64))
    base = layout_of(MULTIARCH, tmp_path)
    (top,) = json.loads((base / "index.json").read_text())["manifests"]
    nested = json.loads(blob(base, top["digest"]))["manifests"]
    (base_entry,) = [m for m in nested if m["platform"] == {"architecture": "amd64", "os": "linux"}]
    base_manifest = json.loads(blob(base, base_entry["digest"]))
    assert manifest["layers"][0] == base_manifest["layers"][0]  # the base's layer, as it was
    for key in base_config:
        if key not in ("created", "history", "rootfs", "config"):
            assert config[key] == base_config[key], key
    for key, value in base_config["config"].items():
        if key not in ("Cmd", "Entrypoint"):
            assert config["config"][key] == value
    assert config["rootfs"]["diff_ids"][0] == base_config["rootfs"]["diff_ids"][0]


def test_arm64_binary_on_multiarch_base(zeroimage: Zeroimage, busybox_arm64: Path, tmp_path: Path) -> None:
    zeroimage(
        "build", "--from-archive", str(MULTIARCH), "-o", "arm.tar", "--entrypoint-path", "/busybox", str(busybox_arm64)
    )
    archive = tmp_path / "arm.tar"
    check_with_peers(archive, tmp_path)
    entry, _, config = image_parts(archive, tmp_path)
    assert entry["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert (config["architecture"], config.get("variant")) == ("arm64", "v8")
    bundle = peers.umoci_unpack(archive, "latest", tmp_path / "bundle")
    rootfs_busybox = bundle / "rootfs" / "busybox"
    assert rootfs_busybox.read_bytes() == busybox_arm64.read_bytes()
    if peers.which("qemu-aarch64-static"):
        out = peers.run(["qemu-aarch64-static", str(rootfs_busybox), "echo", "arm64 ok"])
        assert out.stdout.strip() == "arm64 ok"


def test_arm64_only_base(zeroimage: Zeroimage, busybox_arm64: Path, tmp_path: Path) -> None:
    zeroimage("build", "--from-archive", str(ARM64_ONLY), "-o", "a.tar", str(busybox_arm64))
    check_with_peers(tmp_path / "a.tar", tmp_path)
    entry, manifest, config = image_parts(tmp_path / "a.tar", tmp_path)
    assert entry["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert len(manifest["layers"]) == 2 and config["config"]["Entrypoint"] == [f"/{busybox_arm64.name}"]


def test_platform_fallback_labels_the_image_for_the_program(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """An arm/v6 program on the base's arm/v5 member (containerd's fallback) is an arm/v6 image:
    labelled v5, it would be pulled by v5 machines it cannot run on."""
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    proc = zeroimage(
        "build", "--from-archive", str(MULTIARCH), "--platform", "linux/arm/v6", "-o", "v6.tar", "--json", str(script)
    )
    entry, manifest, config = image_parts(tmp_path / "v6.tar", tmp_path)
    assert entry["platform"] == {"architecture": "arm", "os": "linux", "variant": "v6"}
    assert config["architecture"] == "arm" and config["variant"] == "v6"
    base = json.loads(proc.stdout)["platforms"][0]["base"]
    assert base["platform"]["variant"] == "v5"  # the base member chosen by the fallback
    assert len(manifest["layers"]) == 2  # its layer, then ours


def test_missing_platform_lists_what_the_base_has(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    proc = zeroimage("build", "--from-archive", str(ARM64_ONLY), "-o", "x.tar", str(busybox), check=False)
    assert proc.returncode != 0
    assert "linux/amd64" in proc.stderr and "linux/arm64" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.tar").exists()


def test_reproducible_with_source_date_epoch(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    zeroimage("build", "--from-archive", str(MULTIARCH), "-o", "one.tar", str(busybox), env=env)
    zeroimage("build", "--no-cache", "--from-archive", str(MULTIARCH), "-o", "two.tar", str(busybox), env=env)
    one, two = (tmp_path / "one.tar").read_bytes(), (tmp_path / "two.tar").read_bytes()
    assert hashlib.sha256(one).digest() == hashlib.sha256(two).digest()
    _, manifest, config = image_parts(tmp_path / "one.tar", tmp_path)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_archive_is_the_same_whether_layers_stream_or_come_from_the_cache(
    zeroimage: Zeroimage, static_binary: Path, busybox: Path, tmp_path: Path, transport: str
) -> None:
    """A fresh build writes its layers into the archive while compressing them; a cache hit
    copies them in their place; a mix does both. All give the same bytes, new layers first."""
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    other = tmp_path / "other"
    other.write_bytes(static_binary.read_bytes() + b"another build")
    other.chmod(0o755)

    def build(name: str, binary: Path, *extra: str) -> bytes:
        args = ["--from-archive", str(MULTIARCH), "--add", f"{busybox}:/bin/busybox", *extra]
        zeroimage("build", *args, "-o", f"{transport}:{name}", str(binary), env=env)
        return (tmp_path / name).read_bytes()

    streamed = build("streamed.tar", static_binary)
    assert build("cached.tar", static_binary) == streamed  # both layers from the cache
    assert build("mixed.tar", other) == build("fresh.tar", other, "--no-cache")  # busybox's layer cached
    with tarfile.open(tmp_path / "streamed.tar") as tar:
        files = [m.name for m in tar.getmembers() if m.isfile()]
        if transport == "oci-archive":
            head = ["oci-layout"]
            layers = peers.skopeo_inspect(f"{transport}:{tmp_path / 'streamed.tar'}")["Layers"]
            new = [f"blobs/sha256/{digest[7:]}" for digest in layers[-2:]]
        else:  # skopeo shows a docker-archive's diff_ids: its manifest.json names the files
            head = []
            manifest = tar.extractfile("manifest.json")
            assert manifest is not None
            new = json.load(manifest)[0]["Layers"][-2:]
    assert files[: len(head) + 2] == [*head, new[1], new[0]]  # in the order made: the program's layer first
    assert not list(tmp_path.glob(".*.tmp"))
    if transport == "oci-archive":
        check_with_peers(tmp_path / "mixed.tar", tmp_path)


def test_skopeo_and_umoci_written_bases(
    zeroimage: Zeroimage, static_binary: Path, busybox: Path, tmp_path: Path
) -> None:
    # skopeo: no ./ prefix, directory entries, index.json without mediaType
    skopeo_base = tmp_path / "skopeo-base.tar"
    peers.run(["skopeo", "copy", f"oci-archive:{ARM64_ONLY}", f"oci-archive:{skopeo_base}:base"])
    script = tmp_path / "script.sh"
    script.write_text("#!/hello\n")
    zeroimage(
        "build", "--from", f"oci-archive:{skopeo_base}:base", "--platform", "linux/arm64", "-o", "s.tar", str(script)
    )
    check_with_peers(tmp_path / "s.tar", tmp_path)
    entry, manifest, _ = image_parts(tmp_path / "s.tar", tmp_path / "s")
    assert entry["platform"]["architecture"] == "arm64" and len(manifest["layers"]) == 2
    # umoci: a FROM-scratch base holding busybox, then ours on top, run with runc
    layout = peers.umoci_build(
        tmp_path / "umoci-layout",
        {"/bin/busybox": busybox},
        tag="base",
        entrypoint=["/bin/busybox"],
        env={"FROM_BASE": "yes"},
    )
    base = peers.pack_layout(layout, tmp_path / "umoci-base.tar")
    zeroimage("build", "--from", f"oci-archive:{base}:base", "-o", "u.tar", str(static_binary))
    check_with_peers(tmp_path / "u.tar", tmp_path)
    result = peers.run_image(tmp_path / "u.tar", args=["/bin/busybox", "sh", "-c", "echo $FROM_BASE; /hello"])
    assert "yes" in result.stdout and "Hello from a FROM-scratch image" in result.stdout


def test_docker_media_types_in_base_are_normalised_to_oci(
    zeroimage: Zeroimage, busybox_arm64: Path, tmp_path: Path
) -> None:
    layout = layout_of(ARM64_ONLY, tmp_path)
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]))
    manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    for layer in manifest["layers"]:
        layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    raw = json.dumps(manifest, indent=3).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(raw)
    index["manifests"] = [{"mediaType": manifest["mediaType"], "digest": f"sha256:{digest}", "size": len(raw)}]
    (layout / "index.json").write_text(json.dumps(index))
    zeroimage("build", "--from", f"oci:{layout}", "-o", "d.tar", str(busybox_arm64))
    _, out_manifest, _ = image_parts(tmp_path / "d.tar", tmp_path / "out")
    assert out_manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert out_manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert {layer["mediaType"] for layer in out_manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    check_with_peers(tmp_path / "d.tar", tmp_path)


def test_dynamic_binary_in_scratch_is_warned_about(zeroimage: Zeroimage, tmp_path: Path) -> None:
    proc = zeroimage("build", "-o", "ls.tar", "/bin/ls")
    assert "warning" in proc.stderr and "ld-linux-x86-64.so.2" in proc.stderr
    assert "statically" in proc.stderr


# -- bad input: one line, non-zero, nothing written --------------------------------------------------


def _fails(proc: Any, *words: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("zeroimage: error: "), proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


def test_bad_inputs_give_one_line(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    _fails(zeroimage("build", "missing-program", check=False), "missing-program")
    _fails(zeroimage("build", str(tmp_path), check=False), "directory")
    _fails(zeroimage("build", "-o", "nodir/x.tar", str(busybox), check=False), "does not exist")
    _fails(zeroimage("build", "--platform", "linux/sparc99", str(busybox), check=False), "sparc99")
    _fails(zeroimage("build", "--platform", "linux/arm64", str(busybox), check=False), "contradicts")
    _fails(zeroimage("build", "--from-archive", "nope.tar", str(busybox), check=False), "nope.tar")
    _fails(zeroimage("build", "--from", "oci-archive:x.tar", "--from-archive", "y.tar", str(busybox), check=False))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar archive" * 100)
    _fails(zeroimage("build", "--from-archive", str(garbage), str(busybox), check=False), "garbage.tar")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(MULTIARCH.read_bytes()[:30000])
    _fails(zeroimage("build", "--from-archive", str(truncated), str(busybox), check=False))
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "busybox.tar").exists()


def test_digest_mismatch_is_reported_and_existing_output_untouched(
    zeroimage: Zeroimage, busybox: Path, tmp_path: Path
) -> None:
    layout = layout_of(MULTIARCH, tmp_path)
    index = json.loads((layout / "index.json").read_text())
    nested = json.loads(blob(layout, index["manifests"][0]["digest"]))
    amd64 = next(m for m in nested["manifests"] if m["platform"]["architecture"] == "amd64")
    manifest = json.loads(blob(layout, amd64["digest"]))
    layer_path = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer_path.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes
    layer_path.write_bytes(bytes(data))
    existing = tmp_path / "out.tar"
    existing.write_bytes(b"precious")
    proc = zeroimage("build", "--from", f"oci:{layout}", "-o", str(existing), str(busybox), check=False)
    _fails(proc, "digest")
    assert existing.read_bytes() == b"precious"
    assert not list(tmp_path.glob(".out.tar.*"))


def test_output_that_cannot_be_printed(static_binary: Path, tmp_path: Path) -> None:
    """The image is written either way; a reader that went away (``| head``) ends the run quietly,
    as SIGPIPE would; a full stdout is one line."""
    home = Home.under(tmp_path)
    args = ("build", "-o", "out.tar", str(static_binary))
    proc = home.start(*args)
    assert proc.stdout is not None
    proc.stdout.close()  # long before the build prints its result
    done = finish(proc, timeout=60)
    assert done.returncode == 141 and "error" not in without_modes_notice(done.stderr), done.describe()
    assert peers.skopeo_inspect(f"oci-archive:{home.work / 'out.tar'}")["Architecture"] == "amd64"
    with open("/dev/full", "w") as full:
        done = finish(home.start(*args, stdout=full), timeout=60)
    no_space = "zeroimage: error: No space left on device\n"
    assert done.returncode == 1 and without_modes_notice(done.stderr).endswith(no_space), done.describe()
    refused(done, 1, "No space left on device")
