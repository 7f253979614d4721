"""A private Docker Engine (``dockerd``, docker.io 20.10 on Debian 12) for end-to-end tests.

:func:`start_dockerd` runs ``dockerd --host unix://…/d.sock --data-root … --exec-root …
--iptables=false --bridge=none`` (HARNESS.md) in a private folder. :attr:`Dockerd.env` is what a
client needs to reach it (``DOCKER_HOST``): give it to zeroimage for ``-o docker-daemon:…``. The
docker client runs with a private ``DOCKER_CONFIG``, so that it never sees the user's credentials
or credential helpers. Containers run with ``--network none``.

Docker 20.10 cannot ``docker load`` an OCI archive nor pull zstd layers (Engine 23 can).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from . import peers
from .daemon import Daemon, PeerUnavailable, private_folder

_LOADED = re.compile(r"^Loaded image(?: ID)?: (\S+)$", re.MULTILINE)


class Dockerd:
    """A running private dockerd; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = f"unix://{root / 'd.sock'}"
        self.env = {"DOCKER_HOST": self.host}
        self._client_env = {**self.env, "DOCKER_CONFIG": str(root / "client-config")}
        argv = [
            "dockerd",
            f"--host={self.host}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            "--iptables=false",
            "--bridge=none",
        ]
        self.daemon = Daemon("dockerd", argv, root, self._answers)

    def _answers(self) -> bool:
        return self.docker("version", check=False, timeout=10).returncode == 0

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this daemon; see :func:`peers.run`."""
        return peers.run(["docker", *args], check=check, timeout=timeout, input=input, env=self._client_env)

    def load(self, archive: Path) -> list[str]:
        """``docker load -i ARCHIVE``: the names (or, for untagged images, IDs) it loaded."""
        out = self.docker("load", "--input", str(archive)).stdout
        loaded = _LOADED.findall(out)
        if not loaded:
            raise AssertionError(f"docker load {archive} loaded nothing:\n{out}")
        return loaded

    def run(self, image: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``docker run --rm --network none IMAGE ARGS``: the container's exit code and output
        (``args`` are the cmd, after the image's entrypoint, as ``docker run`` takes them)."""
        return self.docker("run", "--rm", "--network", "none", image, *args, check=check, timeout=timeout)

    def inspect(self, image: str) -> dict[str, Any]:
        """``docker image inspect IMAGE``: what Docker knows of it (``Id``, ``RepoTags``, ``Config``...)."""
        (info,) = json.loads(self.docker("image", "inspect", image).stdout)
        value: dict[str, Any] = info
        return value

    def close(self) -> None:
        """Stop dockerd (and the containerd it started) and remove its folder."""
        self.daemon.close()


def start_dockerd(timeout: float = 60) -> Dockerd:
    """A private dockerd, ready; :class:`PeerUnavailable` where it cannot run here (not
    installed, not root, no docker client)."""
    if peers.which("docker") is None:
        raise PeerUnavailable("the docker client is not installed (apt-get install docker.io)")
    dockerd = Dockerd(private_folder("dockerd"))
    try:
        dockerd.daemon.start(timeout)
    except PeerUnavailable:
        dockerd.close()
        raise
    return dockerd
