"""A private Docker Engine (``dockerd``, docker.io 20.10 on Debian 12) for end-to-end tests.

:func:`start_dockerd` runs ``dockerd --host unix://…/d.sock --data-root … --exec-root …
--iptables=false --bridge=none`` (HARNESS.md) in a private folder. :attr:`Dockerd.env` is what a
client needs to reach it (``DOCKER_HOST``): give it to zeroimage for ``-o docker-daemon:…``. The
docker client runs with a private ``DOCKER_CONFIG``, so that it never sees the user's credentials
or credential helpers. Containers run with ``--network none``.

The daemon also listens on ``tcp://127.0.0.1:PORT`` with TLS, verifying its clients (``--tlsverify
--tlscacert --tlscert --tlskey``), as a remote Docker is set up: :attr:`Dockerd.tls` has the
address, the private CA, and a folder holding ``ca.pem``, ``cert.pem`` and ``key.pem`` (a client
certificate that CA signed) as the Docker CLI wants them; :meth:`DockerTLS.env` is the
environment the CLI (and zeroimage) reaches it with. The unix socket stays plain.

Docker 20.10 cannot ``docker load`` an OCI archive nor pull zstd layers (Engine 23 can).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import peers
from .daemon import Daemon, PeerUnavailable, private_folder
from .pki import KeyPair, make_ca, make_client_cert, make_server_cert
from .registry import free_port

_LOADED = re.compile(r"^Loaded image(?: ID)?: (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class DockerTLS:
    """The TLS listener of a :class:`Dockerd`: its address, its CA, and a client's certificates."""

    host: str  # tcp://127.0.0.1:PORT
    ca: KeyPair
    #: The client certificate the CA signed (and its key).
    client: KeyPair
    #: ``ca.pem``, ``cert.pem``, ``key.pem``: what ``DOCKER_CERT_PATH`` names.
    cert_path: Path

    def env(self, cert_path: Path | None = None) -> dict[str, str]:
        """``DOCKER_HOST``, ``DOCKER_TLS_VERIFY=1`` and ``DOCKER_CERT_PATH`` (this listener's
        client folder unless another is given)."""
        folder = self.cert_path if cert_path is None else cert_path
        return {"DOCKER_HOST": self.host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(folder)}


def cert_folder(path: Path, pki: tuple[KeyPair, KeyPair], *files: str) -> Path:
    """A ``DOCKER_CERT_PATH`` folder at ``path`` holding the given ones of ``ca.pem`` (the
    certificate of ``pki``'s CA), ``cert.pem`` and ``key.pem`` (its client's), as the Docker CLI
    reads them."""
    ca, client = pki
    sources = {"ca.pem": ca.cert_path, "cert.pem": client.cert_path, "key.pem": client.key_path}
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copyfile(sources[name], path / name)
    return path


def _make_tls(root: Path) -> tuple[DockerTLS, list[str]]:
    """The PKI of a TLS listener on a free port, and dockerd's arguments for it."""
    pki = root / "pki"
    ca = make_ca(pki, "zeroimage test dockerd CA")
    server = make_server_cert(ca, pki, stem="server")
    client = make_client_cert(ca, pki, stem="client")
    cert_path = cert_folder(root / "client-certs", (ca, client), "ca.pem", "cert.pem", "key.pem")
    tls = DockerTLS(host=f"tcp://127.0.0.1:{free_port()}", ca=ca, client=client, cert_path=cert_path)
    argv = [
        f"--host={tls.host}",
        "--tlsverify",
        f"--tlscacert={ca.cert_path}",
        f"--tlscert={server.cert_path}",
        f"--tlskey={server.key_path}",
    ]
    return tls, argv


class Dockerd:
    """A running private dockerd; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = f"unix://{root / 'd.sock'}"
        self.env = {"DOCKER_HOST": self.host}
        self._client_env = {**self.env, "DOCKER_CONFIG": str(root / "client-config")}
        self.tls, tls_argv = _make_tls(root)
        argv = [
            "dockerd",
            f"--host={self.host}",
            *tls_argv,
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            "--iptables=false",
            "--bridge=none",
        ]
        self.daemon = Daemon("dockerd", argv, root, self._answers)

    def _answers(self) -> bool:
        if self.docker("version", check=False, timeout=10).returncode != 0:
            return False
        over_tls = {**self._client_env, **self.tls.env()}
        return peers.run(["docker", "version"], check=False, timeout=10, env=over_tls).returncode == 0

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
