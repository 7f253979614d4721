"""Podman (4.3 on Debian 12) with storage of its own, for end-to-end tests. No daemon.

Every command carries the flags HARNESS.md found to work on these machines: vfs storage under a
private folder (``--root``, ``--runroot``, ``--tmpdir``), ``--cgroup-manager=cgroupfs``,
``--events-backend=file`` and ``--runtime runc`` (crun fails on the hybrid cgroups here); runs
add ``--network=none`` and finite ``nofile``/``nproc`` limits. ``podman run`` reads an archive
directly: ``oci-archive:X.tar`` or ``docker-archive:X.tar``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from . import peers
from .daemon import PeerUnavailable, private_folder


def podman_flags(root: Path) -> list[str]:
    """The global flags of every podman command on the private store under ``root`` (see the
    module docstring): also what reaches the store a ``podman system service`` serves."""
    return [
        f"--root={root / 'storage'}",
        f"--runroot={root / 'run'}",
        f"--tmpdir={root / 'tmp'}",
        "--storage-driver=vfs",
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--runtime=runc",
    ]


class Podman:
    """Podman on a private store; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._global = podman_flags(root)

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``podman GLOBAL-FLAGS ARGS``; see :func:`peers.run`."""
        return peers.run(["podman", *self._global, *args], check=check, timeout=timeout)

    def run(
        self,
        image: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """``podman run --rm IMAGE ARGS`` (``args`` are the cmd, after the image's entrypoint):
        the container's exit code and output. ``image`` may be ``oci-archive:PATH[:TAG]``."""
        options = ["--rm", "--quiet", "--network=none", "--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        return self.podman("run", *options, image, *args, check=check, timeout=timeout)

    def close(self) -> None:
        """Remove its store (vfs: plain folders, nothing mounted)."""
        shutil.rmtree(self.root, ignore_errors=True)


def start_podman() -> Podman:
    """Podman on a new private store, checked to work here; :class:`PeerUnavailable` (for a
    clean skip) where it is not installed or cannot run."""
    if peers.which("podman") is None:
        raise PeerUnavailable("podman is not installed (apt-get install podman)")
    podman = Podman(private_folder("podman"))
    probe = podman.podman("info", "--format={{.Store.GraphDriverName}}", check=False, timeout=60)
    if probe.returncode != 0:
        podman.close()
        raise PeerUnavailable(f"podman cannot run here: {probe.stderr.strip()[-500:]}")
    return podman
