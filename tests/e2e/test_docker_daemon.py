"""``-o docker-daemon:NAME:TAG``: the Docker daemon is a peer, not a friend (issue 19).

Against the real dockerd of tests/support/dockerd.py, reached over TLS as the Docker CLI reaches a
remote daemon (``DOCKER_HOST=tcp://…``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``, or a context
the real ``docker context`` made): the image loads and runs; the wrong CA loads nothing; TLS asked
for never sends a plain-HTTP byte. Against a daemon double that misbehaves on purpose
(tests/support/hostile_daemon.py): answers without end, a line without end, a huge error, an
answer that is not Docker's, an error after progress, an answer that never says the image was
loaded, no answer at all. Each fails with exit 1 and one line on stderr — the exact line — within a
memory bound, and leaves nothing in TMPDIR.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Zeroimage
from tests.support import peers
from tests.support.cli import Home, finish
from tests.support.daemon import Daemon, PeerUnavailable, private_folder
from tests.support.dockerd import Dockerd, cert_folder
from tests.support.hostile_daemon import HostileDaemon, PlainListener
from tests.support.outcomes import digest_in
from tests.support.pki import KeyPair, make_ca, make_client_cert
from tests.support.podman import podman_flags
from tests.support.programs import static_amd64_header

pytestmark = pytest.mark.e2e

HELLO = "Hello from a FROM-scratch image built by zeroimage!\nI am /hello, pid 1, working in /.\n"
#: Peak RSS allowed to a build that meets an answer without end (a build of a small program
#: peaks near 50 MiB; the double sends 256 MiB).
RSS_BOUND_KB = 100 * 1024


@pytest.fixture
def tmpdir_(tmp_path: Path) -> Path:
    """A private TMPDIR for the run, which must be empty after it."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """A small static amd64 program (not meant to run): what the double is sent."""
    path = tmp_path / "app"
    path.write_bytes(static_amd64_header() + b"\x00a program\n" * 100)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    """A CA the daemon does not know, and a client certificate it signed."""
    directory = tmp_path_factory.mktemp("stranger")
    ca = make_ca(directory, "a CA nobody trusts")
    return ca, make_client_cert(ca, directory)


def one_line_failure(result: object, line: str, tmpdir: Path, code: int = 1) -> None:
    """Exit ``code``, stderr exactly ``zeroimage: error: LINE``, nothing left in TMPDIR."""
    told = result.describe()  # type: ignore[attr-defined]
    assert result.returncode == code, told  # type: ignore[attr-defined]
    assert result.stderr.splitlines() == [f"zeroimage: error: {line}"], told  # type: ignore[attr-defined]
    assert list(tmpdir.iterdir()) == [], told


def not_loaded(dockerd: Dockerd, image: str) -> bool:
    return dockerd.docker("image", "inspect", image, check=False).returncode != 0


# -- the real dockerd, over TLS ----------------------------------------------------------------------


def test_loads_over_tls_with_dockers_own_variables_and_runs(
    zeroimage: Zeroimage, dockerd: Dockerd, static_binary: Path, tmpdir_: Path
) -> None:
    result = zeroimage(
        "build",
        "-q",
        "-o",
        "docker-daemon:zi/tls:v1",
        str(static_binary),
        env={**dockerd.tls.env(), "TMPDIR": str(tmpdir_)},
    )
    where, _, image_id = result.stdout.strip().partition("  # image ID ")
    assert where == "docker-daemon:zi/tls:v1"
    assert dockerd.inspect("zi/tls:v1")["Id"] == image_id
    assert dockerd.run("zi/tls:v1").stdout == HELLO
    assert result.stderr == "" and list(tmpdir_.iterdir()) == []


def test_a_daemon_the_ca_does_not_vouch_for_gets_nothing(
    zeroimage: Zeroimage,
    dockerd: Dockerd,
    static_binary: Path,
    stranger: tuple[KeyPair, KeyPair],
    tmp_path: Path,
    tmpdir_: Path,
) -> None:
    """DOCKER_CERT_PATH whose ca.pem is another CA's: the daemon's certificate is refused before a
    byte of HTTP, and nothing is loaded."""
    certs = cert_folder(tmp_path / "certs", (stranger[0], dockerd.tls.client), "ca.pem", "cert.pem", "key.pem")
    env = {**dockerd.tls.env(certs), "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:zi/wrong-ca:v1", str(static_binary), check=False, env=env)
    one_line_failure(
        result,
        f"TLS verification of the Docker daemon at {dockerd.tls.host} failed: unable to get local issuer "
        f"certificate (trusting the CA {certs}/ca.pem, from DOCKER_CERT_PATH={certs})",
        tmpdir_,
    )
    assert not_loaded(dockerd, "zi/wrong-ca:v1")


def test_a_daemon_that_wants_a_client_certificate_is_told_none_was_found(
    zeroimage: Zeroimage, dockerd: Dockerd, program: Path, tmp_path: Path, tmpdir_: Path
) -> None:
    certs = cert_folder(tmp_path / "certs", (dockerd.tls.ca, dockerd.tls.client), "ca.pem")
    env = {**dockerd.tls.env(certs), "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:zi/no-cert:v1", str(program), check=False, env=env)
    assert result.returncode == 1, result.describe()
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"zeroimage: error: TLS with the Docker daemon at {dockerd.tls.host} failed: "), line
    assert line.endswith(f"; it wants a client certificate: DOCKER_CERT_PATH={certs} has no cert.pem and key.pem"), line
    assert list(tmpdir_.iterdir()) == []


def test_tls_asked_for_never_sends_plain_http(
    zeroimage: Zeroimage, program: Path, stranger: tuple[KeyPair, KeyPair], tmp_path: Path, tmpdir_: Path
) -> None:
    """With DOCKER_TLS_VERIFY, a listener that does not speak TLS receives a TLS handshake and
    nothing else: no request line, no header, no archive byte."""
    certs = cert_folder(tmp_path / "certs", stranger, "ca.pem")
    with PlainListener(hold=2) as listener:
        env = {"DOCKER_HOST": listener.host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
        result = zeroimage(
            "build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env={**env, "TMPDIR": str(tmpdir_)}
        )
    assert result.returncode == 1, result.describe()
    assert listener.received, "zeroimage never connected"
    for data in listener.received:
        assert data[:1] == b"\x16", data[:80]  # a TLS handshake record
        assert b"HTTP/1.1" not in data and b"_ping" not in data and b"images/load" not in data, data[:200]
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"zeroimage: error: TLS with the Docker daemon at {listener.host} failed: "), line


def test_docker_tls_alone_is_tls_without_verification_as_in_the_cli(
    zeroimage: Zeroimage, dockerd: Dockerd, static_binary: Path, stranger: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    """``DOCKER_TLS=1`` without ``DOCKER_TLS_VERIFY`` is the CLI's TLS without verifying the
    daemon: the load goes over TLS (the daemon takes no plain HTTP there) although ca.pem is not
    the daemon's CA, and zeroimage says that the daemon was not verified."""
    certs = cert_folder(tmp_path / "certs", (stranger[0], dockerd.tls.client), "ca.pem", "cert.pem", "key.pem")
    env = {"DOCKER_HOST": dockerd.tls.host, "DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(certs), "DOCKER_TLS_VERIFY": ""}
    result = zeroimage("build", "-q", "-o", "docker-daemon:zi/unverified:v1", str(static_binary), env=env)
    assert result.stderr.splitlines() == [
        f"zeroimage: warning: DOCKER_TLS is set without DOCKER_TLS_VERIFY: the certificate of the Docker daemon "
        f"at {dockerd.tls.host} is not verified (as with the Docker CLI)"
    ]
    assert dockerd.inspect("zi/unverified:v1")["Id"] == digest_in(result.stdout)


def test_the_context_docker_context_use_chose_is_used(
    zeroimage: Zeroimage, dockerd: Dockerd, static_binary: Path, tmp_path: Path
) -> None:
    """The real docker CLI makes a context for the TLS daemon and makes it current; zeroimage,
    with no DOCKER_HOST, loads into that daemon over TLS (not into the default socket)."""
    config = tmp_path / ".docker"  # the zeroimage fixture's DOCKER_CONFIG
    cli_env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "", "DOCKER_CONTEXT": ""}
    certs = dockerd.tls.cert_path
    docker_option = f"host={dockerd.tls.host},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"
    peers.run(["docker", "context", "create", "zi-tls", "--docker", docker_option], env=cli_env)
    peers.run(["docker", "context", "use", "zi-tls"], env=cli_env)
    result = zeroimage(
        "build",
        "-q",
        "-o",
        "docker-daemon:zi/context:v1",
        str(static_binary),
        env={"DOCKER_HOST": "", "DOCKER_CONTEXT": ""},
    )
    assert dockerd.inspect("zi/context:v1")["Id"] == digest_in(result.stdout)
    assert dockerd.run("zi/context:v1").stdout == HELLO


def test_a_selected_context_that_does_not_exist_is_refused(
    zeroimage: Zeroimage, program: Path, tmp_path: Path, tmpdir_: Path
) -> None:
    env = {"DOCKER_HOST": "", "DOCKER_CONTEXT": "nowhere", "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env)
    digest = hashlib.sha256(b"nowhere").hexdigest()
    one_line_failure(
        result,
        f"the Docker context 'nowhere' (DOCKER_CONTEXT) does not exist: there is no "
        f"{tmp_path}/.docker/contexts/meta/{digest}/meta.json (docker context ls lists the contexts)",
        tmpdir_,
        code=2,
    )


def test_ssh_is_refused_with_what_to_do(zeroimage: Zeroimage, program: Path, tmpdir_: Path) -> None:
    env = {"DOCKER_HOST": "ssh://builder@127.0.0.1", "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env)
    one_line_failure(
        result,
        "DOCKER_HOST='ssh://builder@127.0.0.1': zeroimage does not reach Docker over ssh; forward the daemon's "
        "socket (ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock USER@HOST) and set "
        "DOCKER_HOST=unix:///tmp/docker.sock, or pipe the image: zeroimage build -o docker-archive:- … | docker load",
        tmpdir_,
        code=2,
    )


@pytest.mark.parametrize(
    "host",
    [
        "tcp://[::1",  # a bracket left open
        "tcp://[zz]:2376",  # brackets without an IP address
        "tcp://docker..example:2376",  # an empty label
        f"tcp://{'a' * 64}.example:2376",  # a label longer than DNS allows
        "tcp://d%20ocker:2376",  # a character no host name has
    ],
)
def test_a_host_that_is_no_host_is_a_usage_error_in_one_line(
    zeroimage: Zeroimage, program: Path, tmp_path: Path, tmpdir_: Path, host: str
) -> None:
    """From DOCKER_HOST, and from a context's meta.json: exit 2 and the line, never a traceback."""
    env = {"DOCKER_HOST": host, "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env)
    one_line_failure(result, f"DOCKER_HOST={host!r}: the host is not a host name or an IP address", tmpdir_, code=2)

    digest = hashlib.sha256(b"odd").hexdigest()
    meta = tmp_path / ".docker" / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    (meta / "meta.json").write_text(json.dumps({"Name": "odd", "Endpoints": {"docker": endpoint}}))
    env = {"DOCKER_HOST": "", "DOCKER_CONTEXT": "odd", "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env)
    one_line_failure(
        result,
        f"the Docker context 'odd' (host {host!r}): the host is not a host name or an IP address",
        tmpdir_,
        code=2,
    )


def test_a_host_name_beyond_ascii_is_reached_by_its_idna_form(
    zeroimage: Zeroimage, program: Path, tmpdir_: Path
) -> None:
    """IDNA maps the ideographic full stop to ".": ``127。0。0。1`` is the double's address."""
    with HostileDaemon("honest") as double:
        host = double.host.replace(".", "\u3002")
        env = {"DOCKER_HOST": host, "TMPDIR": str(tmpdir_)}
        result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), env=env)
    assert result.stdout.startswith("docker-daemon:app:v1  # image ID sha256:"), result.describe()
    assert double.requests == ["GET /_ping", "POST /images/load?quiet=1"]


def test_missing_ca_file_is_one_line_naming_it(
    zeroimage: Zeroimage, program: Path, tmp_path: Path, tmpdir_: Path
) -> None:
    env = {
        "DOCKER_HOST": "tcp://127.0.0.1:9",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tmp_path),
        "TMPDIR": str(tmpdir_),
    }
    result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env)
    one_line_failure(
        result,
        f"DOCKER_TLS_VERIFY is set, but {tmp_path}/ca.pem does not exist: put the daemon's CA there "
        "(with cert.pem and key.pem), or set DOCKER_CERT_PATH to the folder that holds them",
        tmpdir_,
    )


# -- Podman's Docker-compatible API -----------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_service() -> Iterator[tuple[str, list[str]]]:
    """``podman system service`` on a private store (HARNESS.md's flags): its DOCKER_HOST, and
    the podman flags that reach the same store."""
    if peers.which("podman") is None:
        pytest.skip("podman is not installed")
    root = private_folder("podman-api")
    flags = podman_flags(root)
    sock = root / "p.sock"

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return conn.recv(4096).split(b" ", 2)[1:2] == [b"200"]
        return False

    service = Daemon("podman", ["podman", *flags, "system", "service", "--time=0", f"unix://{sock}"], root, answers)
    try:
        service.start(60)
    except PeerUnavailable as unavailable:
        service.close()
        pytest.skip(str(unavailable))
    try:
        yield f"unix://{sock}", flags
    finally:
        service.close()


def test_podmans_docker_compatible_api_is_loaded_into(
    zeroimage: Zeroimage, podman_service: tuple[str, list[str]], program: Path, tmpdir_: Path
) -> None:
    """Podman names what it loaded its own way (``Loaded image: localhost/zi/podman:v1``, without
    a newline): that is the image sent, and the build succeeds; Podman holds it under its ID."""
    host, flags = podman_service
    env = {"DOCKER_HOST": host, "TMPDIR": str(tmpdir_)}
    result = zeroimage("build", "-q", "-o", "docker-daemon:zi/podman:v1", str(program), env=env)
    image_id = digest_in(result.stdout)
    shown = peers.run(["podman", *flags, "image", "inspect", "--format", "{{.Id}}", "localhost/zi/podman:v1"])
    assert f"sha256:{shown.stdout.strip()}" == image_id
    assert result.stderr == "" and list(tmpdir_.iterdir()) == []


# -- a daemon double that misbehaves --------------------------------------------------------------


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> Iterator[HostileDaemon]:
    with HostileDaemon(request.param, lifetime=120) as double:
        yield double


def test_the_honest_double_is_loaded_into(zeroimage: Zeroimage, program: Path, tmpdir_: Path) -> None:
    """The double as Docker: the failures below are its misbehaviour's, not the double's."""
    with HostileDaemon("honest") as double:
        result = zeroimage(
            "build", "-q", "-o", "docker-daemon:app:v1", str(program), env={**double.env, "TMPDIR": str(tmpdir_)}
        )
    assert result.stdout.startswith("docker-daemon:app:v1  # image ID sha256:")
    assert double.requests == ["GET /_ping", "POST /images/load?quiet=1"]
    assert double.received > 0 and list(tmpdir_.iterdir()) == []


FAILURES = {
    "endless-ping": "Docker daemon at {host} does not answer as Docker does: "
    "its answer to /_ping runs past 65536 bytes",
    "endless-reply": "Docker daemon at {host}: "
    "its answer to the load runs past 4194304 bytes, which Docker never sends",
    "endless-line": "Docker daemon at {host}: its answer to the load has a line longer than 65536 bytes",
    "huge-error": 'Docker daemon at {host} refused the image: HTTP 500: {"message":"' + "x" * 288 + "…",
    "not-json": "Docker daemon at {host}: its answer to the load is not Docker's JSON messages: Loaded image: app:v1",
    "error-after-progress": "Docker daemon at {host}: it failed to load the image: "
    "write /var/lib/docker/tmp/docker-import-1/layer.tar: no space left on device…",
    "never-loaded": 'Docker daemon at {host}: its answer to the load ended without "Loaded image: app:v1": '
    "the image was not loaded",
    "other-image": "Docker daemon at {host}: it said it loaded other:v1, not app:v1",
    "silent": "Docker daemon at {host} did not finish answering within 3 s of receiving the image "
    "(ZEROIMAGE_DOCKER_LOAD_TIMEOUT=SECONDS changes the bound)",
}


@pytest.mark.parametrize("daemon", list(FAILURES), indirect=True)
def test_a_daemon_that_misbehaves_fails_the_build_in_one_line_within_bounds(
    zeroimage: Zeroimage, daemon: HostileDaemon, program: Path, tmpdir_: Path
) -> None:
    env = {**daemon.env, "TMPDIR": str(tmpdir_), "ZEROIMAGE_DOCKER_LOAD_TIMEOUT": "3"}
    result = zeroimage(
        "build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env, measure_rss=True, timeout=90
    )
    one_line_failure(result, FAILURES[daemon.mode].replace("{host}", daemon.host), tmpdir_)
    assert result.peak_rss_kb is not None and result.peak_rss_kb < RSS_BOUND_KB, result.peak_rss_kb
    expected = ["GET /_ping"] if daemon.mode == "endless-ping" else ["GET /_ping", "POST /images/load?quiet=1"]
    assert daemon.requests == expected


def test_a_daemon_that_stops_reading_the_archive_fails_within_the_low_speed_limit(
    zeroimage: Zeroimage, tmp_path: Path, tmpdir_: Path
) -> None:
    """A daemon that takes the request's headers and then reads nothing: once the archive fills
    the connection's buffers, the upload moves nothing, and the low-speed limit ends it."""
    program = tmp_path / "big"
    program.write_bytes(static_amd64_header() + os.urandom(24 << 20))  # far more than loopback buffers hold
    program.chmod(0o755)
    with HostileDaemon("never-reads") as double:
        env = {**double.env, "TMPDIR": str(tmpdir_), "ZEROIMAGE_LOW_SPEED_LIMIT": "1024/2"}
        result = zeroimage("build", "-q", "-o", "docker-daemon:app:v1", str(program), check=False, env=env, timeout=90)
    one_line_failure(
        result,
        f"Docker daemon at {double.host}: the transfer stalled (under 1024 bytes/s for 2 s; "
        "ZEROIMAGE_LOW_SPEED_LIMIT=BYTES/SECONDS changes the limit)",
        tmpdir_,
    )
    assert double.received == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_load_leaves_nothing(program: Path, tmp_path: Path, signum: int) -> None:
    """Interrupted while Docker holds the whole archive and has not answered: the build stops
    with its signal's exit code, and the temporary archive is gone."""
    home = Home.under(tmp_path / "home")
    with HostileDaemon("silent") as double:
        proc = home.start("build", "-q", "-o", "docker-daemon:app:v1", str(program), env=double.env)
        try:
            if not double.uploaded.wait(60):
                raise AssertionError("the archive never reached the daemon")
            proc.send_signal(signum)
        finally:
            result = finish(proc, timeout=60)
    assert result.returncode == 128 + signum, result.describe()
    assert result.stderr.splitlines() == [f"zeroimage: interrupted by {signal.Signals(signum).name}"], result.describe()
    assert home.tmp is not None and list(home.tmp.iterdir()) == []
