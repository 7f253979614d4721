"""Configuration flags, extra files, essentials for FROM-scratch images, and the will-it-run check,
verified by running the images under runc."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARM64_ONLY, MULTIARCH, Zeroimage
from tests.support import peers
from tests.support.host import without_modes_notice
from zeroimage import files


def config_of(zeroimage: Zeroimage, archive: str) -> dict:  # type: ignore[type-arg]
    info = json.loads(zeroimage("inspect", "--json", f"oci-archive:{archive}").stdout)
    return info["images"][0]  # type: ignore[no-any-return]


def test_flags_take_effect_when_the_image_runs(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    zeroimage(
        "build",
        "-o",
        "flags.tar",
        "--with",
        "tmp",
        "--env",
        "GREETING=hello",
        "--env",
        "GREETING=bonjour",
        "--workdir",
        "/tmp",
        "--user",
        "1234:5678",
        "--label",
        "org.example=yes",
        "--annotation",
        "a.b=c",
        "--expose",
        "8080",
        "--expose",
        "53/udp",
        "--stop-signal",
        "quit",
        "--cmd",
        "sh",
        "--cmd",
        "-c",
        "--cmd",
        'echo "$GREETING in $(pwd) as $(id -u):$(id -g)"',
        str(busybox),
    )
    image = config_of(zeroimage, "flags.tar")
    config = image["config"]["config"]
    # a repeated key replaces, as in a Dockerfile; FROM scratch has Docker's default PATH
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=bonjour"]
    assert config["Labels"] == {"org.example": "yes"}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert image["manifest"]["annotations"]["a.b"] == "c"
    result = peers.run_image(tmp_path / "flags.tar")
    assert result.stdout.strip() == "bonjour in /tmp as 1234:5678"


def test_env_merges_onto_the_base(zeroimage: Zeroimage, busybox: Path) -> None:
    zeroimage(
        "build", "--from-archive", str(MULTIARCH), "-o", "m.tar", "--env", "PATH=/bin", "--env", "X=1", str(busybox)
    )
    assert config_of(zeroimage, "m.tar")["config"]["config"]["Env"] == ["PATH=/bin", "X=1"]


def test_with_all_gives_a_working_scratch_image(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    script = (
        "TZ=Europe/Paris date -d @0 +%Z%z; id -un; id -u; stat -c %a /tmp; "
        "test -s /etc/ssl/certs/ca-certificates.crt && grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt"
    )
    zeroimage(
        "build",
        "-o",
        "all.tar",
        "--with",
        "all",
        "--user",
        "nonroot",
        "--cmd",
        "sh",
        "--cmd",
        "-c",
        "--cmd",
        script,
        str(busybox),
    )
    image = config_of(zeroimage, "all.tar")
    assert image["config"]["config"]["User"] == "65532:65532"  # the name, resolved in the image's /etc/passwd
    assert len(image["manifest"]["layers"]) == 2  # essentials in a layer of their own, then the program
    lines = peers.run_image(tmp_path / "all.tar").stdout.split()
    assert lines[0] == "CET+0100"  # the IANA database works
    assert lines[1:4] == ["nonroot", "65532", "1777"]
    assert int(lines[4]) > 50  # a real CA bundle


def test_essentials_layer_is_reproducible_and_cached(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1"}
    zeroimage("build", "-o", "a.tar", "--with", "tzdata,users", str(busybox), env=env)
    zeroimage("build", "--no-cache", "-o", "b.tar", "--with", "users,tzdata", str(busybox), env=env)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_add_files_and_trees(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    tree = tmp_path / "site"
    (tree / "css").mkdir(parents=True)
    (tree / "index.html").write_text("<h1>hi</h1>")
    (tree / "css" / "a.css").write_text("body{}")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o750)
    (tree / "latest").symlink_to("index.html")
    (tree / "outside").symlink_to("/etc/passwd")  # kept as a link, never followed
    single = tmp_path / "config.toml"
    single.write_text("x = 1")
    zeroimage(
        "build",
        "-o",
        "add.tar",
        "--add",
        f"{tree}:/srv/www",
        "--add",
        f"{single}:/etc/app/",
        "--chown",
        "1000:1000",
        "--cmd",
        "sh",
        "--cmd",
        "-c",
        "--cmd",
        "ls -ln /srv/www; readlink /srv/www/latest /srv/www/outside; cat /etc/app/config.toml",
        str(busybox),
    )
    out = peers.run_image(tmp_path / "add.tar").stdout
    assert "index.html" in out and "x = 1" in out
    assert "/etc/passwd" in out  # the symlink's target, as written
    kept = "-rwxr-x---" if files.POSIX_MODES else "-rwxr-xr-x"  # without POSIX modes: a #! script's 0755
    assert f"{kept}    1 1000     1000" in out  # mode kept, owner from --chown
    layout = peers.extract_archive(tmp_path / "add.tar", tmp_path / "layout")
    manifest = json.loads(
        (
            layout
            / "blobs/sha256"
            / json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
        ).read_bytes()
    )
    extra = (layout / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(extra))) as tar:
        names = tar.getnames()
        assert names[:3] == ["etc", "etc/app", "etc/app/config.toml"]  # parents created, sorted
        assert tar.getmember("srv/www/outside").issym()


def test_add_keeps_base_directories_and_refuses_links_and_specials(
    zeroimage: Zeroimage, busybox: Path, tmp_path: Path
) -> None:
    srv = tmp_path / "srv-src"
    srv.mkdir()
    layout = peers.umoci_build(tmp_path / "base-layout", {"/bin/busybox": busybox}, tag="base")
    # the base has /bin (from umoci insert); a file added under it carries /bin, as BuildKit's COPY does
    (srv / "tool").write_text("#!/bin/busybox sh\necho tool\n")
    (srv / "tool").chmod(0o755)
    base = peers.pack_layout(layout, tmp_path / "base.tar")
    zeroimage(
        "build", "--from", f"oci-archive:{base}:base", "-o", "b.tar", "--add", f"{srv / 'tool'}:/bin/tool", str(busybox)
    )
    layout_out = peers.extract_archive(tmp_path / "b.tar", tmp_path / "out")
    index = json.loads((layout_out / "index.json").read_text())
    manifest = json.loads((layout_out / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_bytes())

    def members(layer: dict[str, Any]) -> dict[str, tarfile.TarInfo]:
        data = gzip.decompress((layout_out / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes())
        found: dict[str, tarfile.TarInfo] = {}
        # umoci ends a layer without the zero blocks: the end is a ReadError
        with tarfile.open(fileobj=io.BytesIO(data)) as tar, contextlib.suppress(tarfile.ReadError):
            while (member := tar.next()) is not None:
                found[member.name.rstrip("/")] = member
        return found

    assert "bin" not in members(manifest["layers"][0])  # umoci wrote bin/busybox alone: /bin is implied
    extra = members(manifest["layers"][-2])
    assert list(extra) == ["bin", "bin/tool"]
    assert (extra["bin"].mode, extra["bin"].uid, extra["bin"].gid) == (0o755, 0, 0)
    hard = tmp_path / "hard"
    hard.write_text("x")
    os.link(hard, tmp_path / "hard2")
    proc = zeroimage("build", "--add", f"{hard}:/x", str(busybox), check=False)
    assert proc.returncode != 0 and "hard link" in proc.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = zeroimage("build", "--add", f"{fifo}:/x", str(busybox), check=False)
    assert proc.returncode != 0 and "special file" in proc.stderr


def _ldd_files(program: str) -> dict[str, Path]:
    """The loader and every library ``program`` loads on this host (``ldd``), by path."""
    ldd = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    files: dict[str, Path] = {}
    for line in ldd.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            files[path] = Path(path).resolve()
    return files


def test_dynamic_binary_on_a_base_with_its_libraries(zeroimage: Zeroimage, tmp_path: Path) -> None:
    files = _ldd_files("/bin/ls")
    layout = peers.umoci_build(tmp_path / "libs-layout", files, tag="libs")
    base = peers.pack_layout(layout, tmp_path / "libs.tar")
    proc = zeroimage(
        "build", "--from", f"oci-archive:{base}:libs", "-o", "ls.tar", "--cmd", "-1", "--cmd", "/", "/bin/ls"
    )
    assert "warning" not in without_modes_notice(proc.stderr)
    listing = peers.run_image(tmp_path / "ls.tar").stdout.split()
    assert {"ls", "lib", "lib64"} <= set(listing)  # the program, beside the base's libraries and loader
    proc = zeroimage("build", "--from-archive", str(MULTIARCH), "-o", "hw.tar", "/bin/ls")
    assert "warning" in proc.stderr and "libc.so.6" in proc.stderr
    proc = zeroimage("build", "--strict", "--from-archive", str(MULTIARCH), "-o", "strict.tar", "/bin/ls", check=False)
    assert proc.returncode != 0 and "libc.so.6" in proc.stderr and not (tmp_path / "strict.tar").exists()


def test_a_library_that_a_library_needs_is_checked_too(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """/bin/ls needs libselinux, which needs libpcre2-8: a base without the latter is warned about
    (and runc confirms the image cannot start), naming who needs it."""
    files = _ldd_files("/bin/ls")
    transitive = [p for p in files if "libpcre2-8" in p]
    if not transitive:
        pytest.skip("this host's ls does not load libpcre2-8 through libselinux")
    for path in transitive:
        del files[path]
    layout = peers.umoci_build(tmp_path / "partial-layout", files, tag="libs")
    base = peers.pack_layout(layout, tmp_path / "partial.tar")
    proc = zeroimage("build", "--from", f"oci-archive:{base}:libs", "-o", "ls.tar", "/bin/ls")
    assert "warning" in proc.stderr and "libpcre2-8.so.0 (needed by libselinux.so.1)" in proc.stderr
    assert "libc.so.6" not in proc.stderr  # what is there is not reported
    ran = peers.run_image(tmp_path / "ls.tar", check=False)
    assert ran.returncode != 0 and "libpcre2-8" in ran.stdout + ran.stderr


def test_scripts_and_foreign_programs_are_warned_about(zeroimage: Zeroimage, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\necho hi\n")
    # a script cannot say its platform: on a base of many, it must be named (never the build machine's)
    proc = zeroimage("build", "--from-archive", str(MULTIARCH), "-o", "s.tar", str(script), check=False)
    assert proc.returncode == 1 and "--platform" in proc.stderr and not (tmp_path / "s.tar").exists()
    proc = zeroimage("build", "--from-archive", str(MULTIARCH), "--platform", "linux/amd64", "-o", "s.tar", str(script))
    assert "/bin/bash" in proc.stderr and "warning" in proc.stderr
    # on a base of one platform, the script takes it
    one = zeroimage("build", "--from-archive", str(ARM64_ONLY), "-o", "one.tar", "--json", str(script))
    assert [p["platform"] for p in json.loads(one.stdout)["platforms"]] == ["linux/arm64/v8"]
    exe = tmp_path / "app.exe"
    exe.write_bytes(b"MZ" + b"\0" * 200)
    proc = zeroimage("build", "-o", "e.tar", str(exe), check=False)
    assert proc.returncode == 1 and "Windows" in proc.stderr
    proc = zeroimage("build", "--platform", "linux/amd64", "-o", "e.tar", str(exe))
    assert "Windows" in proc.stderr and "warning" in proc.stderr


def test_malformed_values_give_clear_errors(zeroimage: Zeroimage, busybox: Path) -> None:
    cases = [
        (["--env", "=x"], "--env"),
        (["--env", "NOEQUALS"], "KEY=VALUE"),
        (["--expose", "99999"], "--expose"),
        (["--expose", "80/icmp"], "--expose"),
        (["--stop-signal", "SIGFOO"], "--stop-signal"),
        (["--user", "app:"], "--user"),
        (["--workdir", "relative"], "absolute"),
        (["--with", "nope"], "--with"),
        (["--add", "nocolon"], "SRC:DEST"),
        (["--add", "x:relative"], "absolute"),
        (["--chown", "root"], "--chown"),
        (["--user", "ghost"], "ghost"),
    ]
    for args, word in cases:
        proc = zeroimage("build", *args, str(busybox), check=False)
        assert proc.returncode != 0, args
        assert word in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
