"""Run the real CNCF distribution registry (``/usr/bin/docker-registry`` 2.8) on loopback for tests.

``start_registry()`` writes a config of its own (never the packaged one), picks a free port on
127.0.0.1, starts ``docker-registry serve``, waits until ``GET /v2/`` answers 200 or 401, and returns
a :class:`Registry`. Set-ups: ``auth`` = ``none`` | ``htpasswd`` (bcrypt, ``htpasswd -Bbc``) |
``token`` (a :class:`~tests.support.tokenserver.TokenServer`), each with or without ``tls`` (a
private CA and a server cert for ``DNS:localhost, IP:127.0.0.1``).

Quirks handled here:

* The registry writes its access log to **stdout** and its application log to stderr; both are
  captured into one file (``log_text()``).
* Registry 2.8 refuses manifests with foreign/non-distributable layers (``urls``) with a 500
  "invalid URL on layer" unless ``validation.manifests.urls.allow`` is set, which breaks pushing
  Docker Hub's ``hello-world`` index (it has Windows images). The config allows ``^https?://``.
* A fixed ``http.secret`` is kept across restarts so upload sessions stay valid over an outage.
* The config is written as JSON (a subset of YAML), so no YAML library is needed.
"""

from __future__ import annotations

import atexit
import json
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from . import peers
from .pki import KeyPair, make_ca, make_server_cert, make_signing_cert
from .tokenserver import TokenServer

AuthMode = Literal["none", "htpasswd", "token"]

TOKEN_SERVICE = "zeroimage-test-registry"
TOKEN_ISSUER = "zeroimage-test-token-issuer"


_LIVE: set[Registry] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a registry process behind when the test process exits."""
    for registry in list(_LIVE):
        registry.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RegistryError(AssertionError):
    """The registry could not be started or died; the message carries its log tail."""


class Registry:
    """A running ``docker-registry`` (see :func:`start_registry`).

    Attributes: ``host`` (``127.0.0.1:PORT``), ``url`` (``http(s)://127.0.0.1:PORT``), ``port``,
    ``auth``, ``tls``, ``ca_cert`` (PEM of the private CA when TLS, else None), ``cert_dir`` (a
    directory holding only ``ca.crt``, for skopeo's ``--cert-dir``), ``username``/``password``,
    ``storage`` (the filesystem storage root), ``config_path``, ``log_path``, ``token_server``
    (token mode only).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth: AuthMode,
        tls: bool,
        username: str,
        password: str,
        storage: Path,
        port: int,
        ca: KeyPair | None,
        server_cert: KeyPair | None,
        token_server: TokenServer | None,
        token_signer: KeyPair | None,
    ) -> None:
        self.workdir = workdir
        self.auth: AuthMode = auth
        self.tls = tls
        self.username = username
        self.password = password
        self.storage = storage
        self.port = port
        self.token_server = token_server
        self._ca = ca
        self._server_cert = server_cert
        self._token_signer = token_signer
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.cert_dir: Path | None = None
        if ca is not None:
            self.cert_dir = workdir / "client-certs"
            self.cert_dir.mkdir(exist_ok=True)
            (self.cert_dir / "ca.crt").write_bytes(ca.cert_path.read_bytes())
        self._secret = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def ca_cert(self) -> Path | None:
        return None if self._ca is None else self._ca.cert_path

    def ref(self, repo_tag: str) -> str:
        """``docker://127.0.0.1:PORT/<repo_tag>`` (for skopeo)."""
        return f"docker://{self.host}/{repo_tag}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting only this registry's private CA (TLS set-ups only)."""
        if self.ca_cert is None:
            raise ValueError("registry has no TLS")
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def skopeo_args(self, direction: Literal["", "src", "dest"] = "", *, creds: bool = True) -> list[str]:
        """skopeo options to reach this registry: TLS trust and (if ``creds`` and auth) credentials.

        ``direction`` prefixes them for ``skopeo copy`` (``--src-...``/``--dest-...``).
        """
        prefix = f"--{direction}-" if direction else "--"
        args = [f"{prefix}cert-dir", str(self.cert_dir)] if self.cert_dir else [f"{prefix}tls-verify=false"]
        if creds and self.auth != "none":
            args += [f"{prefix}creds", f"{self.username}:{self.password}"]
        return args

    # ------------------------------------------------------------------ config

    def _config(self) -> dict[str, object]:
        http: dict[str, object] = {"addr": self.host, "secret": self._secret, "draintimeout": "1s"}
        if self._server_cert is not None:
            http["tls"] = {
                "certificate": str(self._server_cert.cert_path),
                "key": str(self._server_cert.key_path),
            }
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
            "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
        }
        if self.auth == "htpasswd":
            config["auth"] = {"htpasswd": {"realm": "zeroimage-test", "path": str(self.workdir / "htpasswd")}}
        elif self.auth == "token":
            assert self.token_server is not None and self._token_signer is not None
            config["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(self._token_signer.cert_path),
                }
            }
        return config

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 15) -> Registry:
        """Start (or restart) the registry on the same port and storage; wait until it is ready."""
        if self.running:
            return self
        if self.token_server is not None:
            self.token_server.start()
        self.config_path.write_text(json.dumps(self._config(), indent=2))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        self._proc = subprocess.Popen(
            [peers.which("docker-registry") or "docker-registry", "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)
        self._wait_ready(timeout)
        return self

    def _probe(self) -> int | None:
        request = urllib.request.Request(f"{self.url}/v2/", method="GET")
        context = self.ssl_context() if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=0.5, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                self._proc = None
                raise RegistryError(f"docker-registry exited with code {code} while starting\n{self.log_tail()}")
            status = self._probe()
            if status in (200, 401):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RegistryError(
                    f"docker-registry at {self.url} not ready after {timeout}s "
                    f"(last GET /v2/ status: {status})\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, *, graceful: bool = True) -> None:
        """Stop the registry process (simulates an outage; :meth:`start` brings it back).

        ``graceful``: SIGTERM (the registry drains connections for at most 1 s); otherwise SIGKILL,
        a crash that resets open connections. The token server, if any, keeps running;
        :meth:`close` stops everything.
        """
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._close_log()

    def close(self) -> None:
        """Stop the registry and its token server."""
        self.stop()
        if self.token_server is not None:
            self.token_server.stop()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def check_alive(self) -> None:
        """Raise :class:`RegistryError` (with the log tail) if the registry process has died."""
        if self._proc is not None and self._proc.poll() is not None:
            raise RegistryError(f"docker-registry died with code {self._proc.returncode}\n{self.log_tail()}")

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ logs

    def log_text(self) -> str:
        """Everything the registry logged so far (access log lines and application log)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self) -> list[str]:
        """Only the access-log lines (``127.0.0.1 - - [...] "METHOD /path HTTP/1.1" status ...``)."""
        return [line for line in self.log_text().splitlines() if line.startswith("127.0.0.1 - ")]

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, with a header naming the log file."""
        tail = self.log_text().splitlines()[-lines:]
        return f"--- registry log tail ({self.log_path}) ---\n" + "\n".join(tail)

    def __repr__(self) -> str:
        return f"Registry({self.url}, auth={self.auth}, running={self.running})"


def start_registry(
    workdir: Path,
    *,
    auth: AuthMode = "none",
    tls: bool = False,
    username: str = "alice",
    password: str = "s3cret-pass",
    storage: Path | None = None,
    timeout: float = 15,
) -> Registry:
    """Start a registry on 127.0.0.1 in one of the set-ups; see the module docstring.

    ``workdir`` receives the config, log, htpasswd file and certificates; ``storage`` defaults to
    ``workdir/storage`` (pass an existing one to serve a previous registry's data). In token mode
    the token server knows ``username``/``password``, grants them what they ask for, and grants
    anonymous requests ``pull`` only (change ``registry.token_server`` attributes per test).
    Raises :class:`RegistryError` (an AssertionError) with the log tail if it does not come up.
    """
    if auth not in ("none", "htpasswd", "token"):
        raise ValueError(f"unknown auth mode {auth!r}")
    peers.require("docker-registry")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    storage = Path(storage) if storage is not None else workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)

    ca = server_cert = signer = None
    if tls:
        ca = make_ca(workdir / "pki")
        server_cert = make_server_cert(ca, workdir / "pki")
    if auth == "htpasswd":
        peers.require("htpasswd")
        peers.run(["htpasswd", "-Bbc", str(workdir / "htpasswd"), username, password])
    token_server = None
    if auth == "token":
        signer = make_signing_cert(workdir / "pki")
        token_server = TokenServer(
            signer,
            service=TOKEN_SERVICE,
            issuer=TOKEN_ISSUER,
            users={username: password},
            refresh_token_user=username,
            tls=server_cert,
        )

    last_error: RegistryError | None = None
    for _ in range(3):  # the free port may be taken between probing and binding
        registry = Registry(
            workdir,
            auth=auth,
            tls=tls,
            username=username,
            password=password,
            storage=storage,
            port=free_port(),
            ca=ca,
            server_cert=server_cert,
            token_server=token_server,
            token_signer=signer,
        )
        try:
            return registry.start(timeout=timeout)
        except RegistryError as e:
            registry.close()
            last_error = e
            if "address already in use" not in str(e):
                raise
    assert last_error is not None
    raise last_error


def seed(
    registry: Registry,
    source: str | Path,
    dest_repo_tag: str,
    *,
    all_platforms: bool = True,
    creds: bool = True,
    extra: Sequence[str] = (),
) -> None:
    """Copy an image into ``registry`` as ``dest_repo_tag`` with ``skopeo copy [--all]``.

    ``source`` is a skopeo transport reference (``oci-archive:X``, ``oci:DIR:TAG``,
    ``docker-archive:X``...); a bare path to an existing file means ``oci-archive:PATH``. TLS trust
    (``--dest-cert-dir`` or ``--dest-tls-verify=false``) and ``--dest-creds`` are added for
    ``registry``. Raises AssertionError (with skopeo's output and the registry log tail) on failure.
    """
    peers.require("skopeo")
    src = str(source)
    if isinstance(source, Path) or (":" not in src and Path(src).is_file()):
        src = f"oci-archive:{source}"
    cmd = ["skopeo", "copy", "--quiet"]
    if all_platforms:
        cmd.append("--all")
    cmd += registry.skopeo_args("dest", creds=creds)
    cmd += [*extra, src, registry.ref(dest_repo_tag)]
    try:
        peers.run(cmd)
    except AssertionError as e:
        registry.check_alive()
        raise AssertionError(f"{e}\n{registry.log_tail(20)}") from None
