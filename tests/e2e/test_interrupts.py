"""Interrupted builds, full disks and big binaries: nothing half-written is ever left behind.

A build stopped by SIGINT or SIGTERM exits 130 or 143 with one line, and leaves no output, no
temporary file beside the output, in the layer cache or in TMPDIR, and an existing output as it
was. A full disk, under the output or under the cache, is one clear line and no partial file.
Memory does not grow with the size of the program.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import Home, finish
from tests.support.programs import static_amd64_header
from tests.support.registry import start_registry
from tests.support.waiting import wait_for

MB = 1 << 20


def temporary_files(*roots: Path) -> list[str]:
    """Files left by an unfinished write: zeroimage's are hidden and end in .tmp."""
    return [str(p) for root in roots for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".new-")]


def incompressible(path: Path, size: int) -> Path:
    """A program of random blocks, some repeated farther apart than deflate can see: ISA-L gains
    nothing (behind an ELF header, so that zeroimage knows its platform)."""
    block = os.urandom(4 * MB)
    with open(path, "wb") as out:
        for i in range(size // (4 * MB)):
            out.write(block if i % 3 == 0 else os.urandom(4 * MB))
        out.seek(0)
        out.write(static_amd64_header())
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def big_binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """512 MB that compress slowly enough to be interrupted mid-way (about 1.5 s on 2 cores)."""
    path = incompressible(tmp_path_factory.mktemp("big") / "big", 512 * MB)
    yield path
    path.unlink()


@pytest.fixture(scope="module")
def big_base(big_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An OCI archive whose one layer is big: a build on it streams (and verifies) that layer
    into its output, so the output's temporary file lives long enough to be interrupted."""
    home = Home.under(tmp_path_factory.mktemp("big-base"))
    proc = home.run("build", "-q", str(big_binary), "-o", "base.tar")
    assert proc.returncode == 0, proc.stderr
    yield home.work / "base.tar"
    (home.work / "base.tar").unlink()


def assert_interrupted(proc: subprocess.Popen[bytes], signum: int) -> None:
    done = finish(proc, timeout=20)  # a hang is a failure (the compressor must never wait forever)
    told = done.describe()
    assert done.returncode == 128 + signum, told
    assert "Traceback" not in done.stderr and "error" not in done.stderr, told
    assert done.stderr.strip().splitlines()[-1].startswith("zeroimage: interrupted"), told
    assert done.stdout == "", told


def interrupt(proc: subprocess.Popen[bytes], signum: int, ready: Callable[[], object]) -> None:
    """Once ``ready()`` returns, send ``signum`` to the still running ``proc`` and check how it ends;
    never leave it running."""
    try:
        ready()
        assert proc.poll() is None, "it ended before it could be interrupted"
        proc.send_signal(signum)
        assert_interrupted(proc, signum)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("when", ["midway", "while-compressing", "while-compressing-no-cache", "while-writing"])
def test_interrupted_build_leaves_nothing(
    signum: signal.Signals, when: str, big_binary: Path, big_base: Path, static_binary: Path, tmp_path: Path
) -> None:
    home = Home.under(tmp_path)
    previous = home.work / "previous.tar"  # an existing output must survive untouched
    previous.write_bytes(b"an earlier build\n")
    before = previous.stat()
    if when == "while-writing":
        args = ["build", "--from", f"oci-archive:{big_base}", str(static_binary), "-o", "previous.tar"]
    else:
        args = ["build", str(big_binary), "-o", "previous.tar", *(["--no-cache"] if "no-cache" in when else [])]

    def ready() -> None:
        if when == "midway":  # an eighth of the layer written, its threads busy: never its end
            wait_for(lambda: any(size >= 64 * MB for size in layer_sizes()), "64 MB of the layer")
        elif when == "while-writing":
            wait_for(lambda: any(home.work.glob(".previous.tar.*.tmp")), "the output's temporary file")
        elif "no-cache" in when:
            wait_for(lambda: any(home.tmp.glob("zeroimage-*/blobs/sha256/.new-*.tmp")), "the layer's temporary file")
        else:
            wait_for(lambda: any(home.cache.glob("blobs/sha256/.new-*.tmp")), "the layer's temporary file")

    def layer_sizes() -> list[int]:
        sizes = []
        for path in home.cache.glob("blobs/sha256/.new-*.tmp"):
            with contextlib.suppress(FileNotFoundError):  # renamed once whole
                sizes.append(path.stat().st_size)
        return sizes

    interrupt(home.start(*args), signum, ready)
    after = previous.stat()
    assert previous.read_bytes() == b"an earlier build\n"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in home.work.iterdir()) == ["previous.tar"]
    assert temporary_files(home.cache) == []
    assert list(home.tmp.iterdir()) == []


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("existing", [False, True], ids=["new-layout", "existing-layout"])
def test_interrupted_write_to_a_layout_directory(
    signum: signal.Signals, existing: bool, big_base: Path, static_binary: Path, tmp_path: Path
) -> None:
    """A layout the write began is removed (lacking index.json, it would block the next write);
    one that held images keeps its index.json, and what it had, as they were."""
    home = Home.under(tmp_path)
    layout = home.work / "layout"
    if existing:
        assert home.run("build", str(static_binary), "-o", "oci:layout:old").returncode == 0
        index = (layout / "index.json").read_bytes()
        had = {name: (layout / name).read_bytes() for name in files_in(layout)}
    proc = home.start("build", "--from", f"oci-archive:{big_base}", str(static_binary), "-o", "oci:layout:new")
    interrupt(
        proc, signum, lambda: wait_for(lambda: any(layout.glob("blobs/sha256/.*.tmp")), "a blob's temporary file")
    )
    if existing:
        assert (layout / "index.json").read_bytes() == index
        assert {name: (layout / name).read_bytes() for name in had} == had
        assert temporary_files(layout) == []
    else:
        assert not layout.exists()
    assert temporary_files(home.cache) == [] and list(home.tmp.iterdir()) == []


@pytest.fixture
def stalled_registry() -> Iterator[str]:
    """A loopback port whose connections are accepted by the kernel and then never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("registry", ["answering", "stalled"])
def test_interrupted_push_leaves_nothing(
    signum: signal.Signals, registry: str, big_binary: Path, stalled_registry: str, tmp_path: Path
) -> None:
    """A push streams the layer through memory to the upload; an interrupt must stop it promptly,
    even when the registry stopped reading and the compressor waits for room, and tag nothing."""
    home = Home.under(tmp_path)
    with contextlib.ExitStack() as stack:
        real = stack.enter_context(start_registry(tmp_path / "registry")) if registry == "answering" else None
        host = real.host if real is not None else stalled_registry
        proc = home.start("build", str(big_binary), "--push", f"{host}/app:v1")
        if real is not None:  # once the upload began: the layer streams to it for seconds more
            interrupt(proc, signum, lambda: wait_for(lambda: "blobs/uploads/" in real.log_text(), "an upload"))
        else:
            interrupt(proc, signum, lambda: time.sleep(1.0))
        if real is not None:
            assert "PUT /v2/app/manifests/" not in real.log_text()  # nothing tagged
    assert temporary_files(home.cache) == [] and list(home.tmp.iterdir()) == []


@pytest.mark.parametrize("output", ["-o previous.tar", "--push"])
def test_a_base_that_fails_stops_the_layer_made_meanwhile(
    output: str, big_binary: Path, big_base: Path, tmp_path: Path
) -> None:
    """The program's layer is made while the base is read; a base without the program's
    platform ends the build with that error alone, the layer unfinished and nothing left."""
    home = Home.under(tmp_path)
    previous = home.work / "previous.tar"
    previous.write_bytes(b"an earlier build\n")
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(start_registry(tmp_path / "registry")) if output == "--push" else None
        target = ["--push", f"{registry.host}/app:v1"] if registry is not None else ["-o", "previous.tar"]
        proc = home.run("build", "--from-archive", str(big_base), "--platform", "linux/arm64", *target, str(big_binary))
        if registry is not None:
            assert "/manifests/" not in registry.log_text()
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [errors[0]] and "linux/arm64" in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert "compressing layer: 536.9 MB" not in proc.stderr  # stopped, not finished
    assert previous.read_bytes() == b"an earlier build\n"
    assert sorted(p.name for p in home.work.iterdir()) == ["previous.tar"]
    assert temporary_files(home.cache) == [] and list(home.tmp.iterdir()) == []


# -- full disks ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (root only; skipped where mounting is not permitted)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def assert_disk_full(proc: subprocess.CompletedProcess[str]) -> None:
    told = f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode not in (0, 70) and "Traceback" not in proc.stderr, told
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("zeroimage: error: "), told
    assert "no space left" in errors[0], told


def files_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.mark.parametrize("output", ["oci-archive", "docker-archive", "oci"])
def test_full_disk_under_the_output(output: str, tiny_disk: Path, tmp_path: Path) -> None:
    home = Home.under(tmp_path / "home")
    program = incompressible(tmp_path / "app", 10 * MB)
    target = {"oci-archive": f"{tiny_disk}/out.tar", "oci": f"oci:{tiny_disk}/layout"}.get(
        output, f"docker-archive:{tiny_disk}/out.tar"
    )
    assert_disk_full(home.run("build", str(program), "-o", target))
    assert list(tiny_disk.iterdir()) == []  # no partial output, no temporary file, no half-made layout
    assert temporary_files(home.cache) == [] and list(home.tmp.iterdir()) == []


def test_full_disk_under_the_cache(tiny_disk: Path, tmp_path: Path) -> None:
    home = Home.under(tmp_path / "home")
    program = incompressible(tmp_path / "app", 10 * MB)
    assert_disk_full(
        home.run("build", str(program), "-o", "out.tar", env={"ZEROIMAGE_CACHE_DIR": str(tiny_disk / "cache")})
    )
    assert temporary_files(tiny_disk) == []
    marks = {"CACHEDIR.TAG", "zeroimage-layout"}  # whole files, written before the build ran out of room
    assert [p for p in tiny_disk.rglob("*") if p.is_file() and p.name not in marks] == []  # nothing half-written
    assert list(home.work.iterdir()) == [] and list(home.tmp.iterdir()) == []


def test_full_disk_in_tmpdir_without_cache(tiny_disk: Path, tmp_path: Path) -> None:
    home = Home.under(tmp_path / "home")
    program = incompressible(tmp_path / "app", 10 * MB)
    assert_disk_full(home.run("build", "--no-cache", str(program), "-o", "out.tar", env={"TMPDIR": str(tiny_disk)}))
    assert list(tiny_disk.iterdir()) == []
    assert list(home.work.iterdir()) == []


def test_output_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """The atomic rename would replace it: a FIFO, or (as root) a device like /dev/null."""
    home = Home.under(tmp_path / "home")
    program = incompressible(tmp_path / "app", MB)
    os.mkfifo(home.work / "fifo")
    targets = {"fifo": "p"}
    if os.geteuid() == 0:
        os.mknod(home.work / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets["null"] = "c"
    for name, kind in targets.items():
        for output in (name, f"docker-archive:{name}", f"oci-archive:{name}"):
            proc = home.run("build", str(program), "-o", output)
            assert proc.returncode == 1 and "is not a regular file" in proc.stderr, proc.stderr
            assert stat.filemode((home.work / name).lstat().st_mode)[0] == kind
    assert sorted(p.name for p in home.work.iterdir()) == sorted(targets)


# -- memory --------------------------------------------------------------------------------------


def sparse_binary(path: Path, size: int) -> Path:
    """A program mostly a hole (compresses fast), with 1 MB of random data at eight places."""
    with open(path, "wb") as out:
        out.truncate(size)
        for offset in range(0, size, max(size // 8, MB)):
            out.seek(offset)
            out.write(os.urandom(MB))
        out.seek(0)
        out.write(static_amd64_header())
    path.chmod(0o755)
    return path


def peak_rss_kb(home: Home, program: Path) -> int:
    proc = home.run("build", "-q", str(program), "-o", f"{program.name}.tar", measure_rss=True)
    assert proc.returncode == 0 and proc.peak_rss_kb is not None, proc.describe()
    return proc.peak_rss_kb


def test_memory_does_not_grow_with_the_program(tmp_path: Path) -> None:
    """A 2 GB program takes no more memory to build than a 20 MB one (slow-ish: about 10 s)."""
    home = Home.under(tmp_path / "home")
    small = peak_rss_kb(home, sparse_binary(tmp_path / "small", 20 * MB))
    big = peak_rss_kb(home, sparse_binary(tmp_path / "big", 2 << 30))
    assert big <= 2 * small and big < 100_000, f"peak RSS: {small} kB for 20 MB, {big} kB for 2 GB"
