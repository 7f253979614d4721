"""A private containerd 1.6 (what Kubernetes nodes run) and its ``ctr``, for end-to-end tests.

:func:`start_containerd` starts ``containerd`` with a config of its own (HARNESS.md): root, state
and the grpc, ttrpc and debug sockets in a private folder, the CRI plugin disabled. Images go in
with ``ctr images import`` (an OCI archive or a docker-archive) and run with ``ctr run --rm``.

Unlike Docker and Podman, ``ctr run`` adds no default ``PATH``: the process gets the image's
``Env`` alone, which is what issue 13's FROM-scratch PATH is about. Arguments given to
:meth:`Containerd.run` replace the image's whole command line (entrypoint and cmd), as
``ctr run IMAGE ID ARGS`` does: name the program first.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from . import peers
from .daemon import Daemon, PeerUnavailable, private_folder

NAMESPACE = "zeroimage-test"
_UNPACKED = re.compile(r"^unpacking (\S+) \((sha256:[0-9a-f]{64})\)\.\.\.done$", re.MULTILINE)


class Containerd:
    """A running private containerd; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = str(root / "containerd.sock")
        config = root / "config.toml"
        config.write_text(
            "\n".join(
                [
                    "version = 2",
                    f'root = "{root / "root"}"',
                    f'state = "{root / "state"}"',
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                    "[grpc]",
                    f'  address = "{self.address}"',
                    "[ttrpc]",
                    f'  address = "{self.address}.ttrpc"',
                    "[debug]",
                    f'  address = "{root / "debug.sock"}"',
                    "",
                ]
            )
        )
        self.daemon = Daemon("containerd", ["containerd", "--config", str(config)], root, self._answers)

    def _answers(self) -> bool:
        if not Path(self.address).exists():
            return False
        return self.ctr("version", check=False, timeout=10).returncode == 0

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``ctr --address SOCKET --namespace zeroimage-test ARGS``; see :func:`peers.run`."""
        return peers.run(
            ["ctr", "--address", self.address, "--namespace", NAMESPACE, *args], check=check, timeout=timeout
        )

    def import_archive(self, archive: Path, *, name: str | None = None, all_platforms: bool = False) -> dict[str, str]:
        """``ctr images import`` an OCI archive or a docker-archive; returns each image it
        unpacked, name → the digest containerd holds it by.

        An OCI archive's images are named ``NAME:REF`` (REF from its
        ``org.opencontainers.image.ref.name``) when ``name`` is given, else containerd makes a
        name up; a docker-archive's by its ``RepoTags``. ``all_platforms`` keeps every platform
        of an index (else containerd keeps this machine's)."""
        args = ["images", "import"]
        if name is not None:
            args += ["--base-name", name]
        if all_platforms:
            args.append("--all-platforms")
        out = self.ctr(*args, str(archive)).stdout
        images = dict(_UNPACKED.findall(out))
        if not images:
            raise AssertionError(f"ctr images import {archive} unpacked no image:\n{out}")
        return images

    def run(
        self,
        image: str,
        *argv: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``ctr run --rm IMAGE ID [ARGV...]``: the container's exit code and output.

        Without ``argv`` the image's entrypoint and cmd run; with it, ``argv`` alone (program
        first). ``env`` adds variables (``--env``). The container is removed afterwards, also
        when it outlives ``timeout`` (it is killed then, and ``AssertionError`` raises)."""
        container = f"zeroimage-test-{uuid.uuid4().hex[:12]}"
        options = [f"--env={key}={value}" for key, value in (env or {}).items()]
        try:
            return self.ctr("run", "--rm", *options, image, container, *argv, check=check, timeout=timeout)
        except AssertionError:
            self.ctr("task", "kill", "--signal", "SIGKILL", container, check=False, timeout=10)
            self.ctr("task", "delete", "--force", container, check=False, timeout=10)
            self.ctr("container", "delete", container, check=False, timeout=10)
            raise

    def close(self) -> None:
        """Stop containerd and remove its folder."""
        self.daemon.close()


def start_containerd(timeout: float = 30) -> Containerd:
    """A private containerd, ready; :class:`PeerUnavailable` where it cannot run here (not
    installed, not root)."""
    if peers.which("ctr") is None:
        raise PeerUnavailable("ctr is not installed (apt-get install containerd)")
    containerd = Containerd(private_folder("containerd"))
    try:
        containerd.daemon.start(timeout)
    except PeerUnavailable:
        containerd.close()
        raise
    return containerd
