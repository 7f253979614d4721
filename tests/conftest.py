"""Shared fixtures: running the real CLI in a subprocess, the bundled images, test binaries, and
the peers that run images (containerd, dockerd, podman), each started once per session on first use."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from hypothesis import settings

from tests.support import cli, peers
from tests.support.containerd import Containerd, start_containerd
from tests.support.daemon import PeerUnavailable
from tests.support.dockerd import Dockerd, start_dockerd
from tests.support.layers import settle
from tests.support.podman import Podman, start_podman

# An example that a busy machine happens to stall is no failure: property tests have no deadline.
settings.register_profile("zeroimage", deadline=None)
settings.load_profile("zeroimage")

DATA = Path(__file__).parent / "data"
MULTIARCH = DATA / "hello-world-multiarch.tar"
ARM64_ONLY = DATA / "hello-world-linux-arm64.tar"

Zeroimage = Callable[..., cli.Result]


@pytest.fixture
def zeroimage(tmp_path: Path) -> Zeroimage:
    """Run ``python -m zeroimage ARGS`` in ``tmp_path`` with a private cache (``.cache``) and Docker
    config (``.docker``); see :meth:`tests.support.cli.Home.run` for the keywords. A non-zero exit
    fails the test unless ``check=False``."""
    home = cli.Home(work=tmp_path, cache=tmp_path / ".cache", docker_config=tmp_path / ".docker")

    def run(*args: str, check: bool = True, **options: Any) -> cli.Result:
        return home.run(*args, check=check, **options)

    return run


@pytest.fixture(scope="session")
def static_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small static amd64 program that prints a known line and its arguments."""
    out = tmp_path_factory.mktemp("hello") / "hello"
    source = Path(__file__).parent.parent / "examples" / "hello" / "hello.c"
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    proc = subprocess.run(["cc", "-static", "-Os", "-o", str(out), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot link statically: {proc.stderr.strip()[:200]}")
    return settle(out)  # old enough for a build to record its identity


@pytest.fixture(scope="session")
def busybox() -> Path:
    path = Path("/bin/busybox")
    if not path.exists():
        pytest.skip("busybox-static is not installed")
    return path


@pytest.fixture(scope="session")
def busybox_arm64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("ZEROIMAGE_TEST_CACHE", "/tmp/zeroimage-test-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    path = peers.arm64_busybox(cache)
    if path is None:
        pytest.skip("the arm64 busybox-static package cannot be had here")
    return path


class _Peer(Protocol):
    def close(self) -> None: ...


P = TypeVar("P", bound=_Peer)


def _session_peer(start: Callable[[], P]) -> Iterator[P]:
    """Start a peer on first use, skip the tests that need it where it cannot run, stop it at
    the end of the session."""
    try:
        peer = start()
    except PeerUnavailable as unavailable:
        pytest.skip(str(unavailable))
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """A private containerd and its ctr (tests/support/containerd.py), one for the session."""
    yield from _session_peer(start_containerd)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private Docker Engine (tests/support/dockerd.py), one for the session; give its
    ``env`` to zeroimage for ``-o docker-daemon:``."""
    yield from _session_peer(start_dockerd)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """Podman on a private store (tests/support/podman.py), one for the session."""
    yield from _session_peer(start_podman)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
