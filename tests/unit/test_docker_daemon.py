"""The pure parts of ``docker-daemon:``: finding the daemon as the Docker CLI does
(transports/docker_host.py), and judging its answer to a load (transports/docker_client.py).

The CLI behaviours checked here were read in docker/cli (``cli/flags/options.go``,
``cli/command/cli.go``, ``opts/hosts.go``, ``cli/context/docker/load.go``) and tried with the
docker 28 client of this machine; the end-to-end tests (tests/e2e/test_docker_daemon.py) check the
same against a real dockerd, contexts made by the real CLI included.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpcore
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from tests.support.dockerd import cert_folder
from tests.support.pki import KeyPair, make_ca, make_client_cert, make_server_cert
from tests.support.waiting import bounded
from zeroimage.errors import InputError, OutputError, UsageError
from zeroimage.progress import NullReporter
from zeroimage.reference import parse_reference
from zeroimage.transports.docker_client import (
    LOAD_TIMEOUT_VARIABLE,
    MAX_LOAD_LINE,
    MAX_LOAD_REPLY,
    DockerClient,
    LoadAnswer,
    _Exchange,
    excerpt,
    load_timeout,
)
from zeroimage.transports.docker_daemon import spellings
from zeroimage.transports.docker_host import DockerEndpoint, parse_host, resolve_endpoint
from zeroimage.transports.registry.credentials import CredentialStore, docker_config_dir
from zeroimage.transports.registry.options import LowSpeedLimit
from zeroimage.transports.registry.speed import is_stall

WHERE = "unix:///run/d.sock"
NAME = "app:v1"
IMAGE_ID = "sha256:" + "ab" * 32
#: What Docker 20.10 answers a load with ``quiet=1`` (captured from the real daemon).
DOCKER_20_10 = b'{"stream":"Loaded image: app:v1\\n"}\r\n'
PROGRESS = b'{"status":"Loading layer","progressDetail":{"current":1,"total":2},"id":"0123456789ab"}\r\n'


# -- hosts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "url"),
    [
        ("unix:///tmp/d.sock", "unix:///tmp/d.sock", "http://docker"),
        ("unix://", "unix:///var/run/docker.sock", "http://docker"),
        ("/tmp/d.sock", "unix:///tmp/d.sock", "http://docker"),
        ("  tcp://127.0.0.1:2376  ", "tcp://127.0.0.1:2376", "http://127.0.0.1:2376"),
        ("tcp://127.0.0.1", "tcp://127.0.0.1:2375", "http://127.0.0.1:2375"),
        ("tcp://", "tcp://localhost:2375", "http://localhost:2375"),
        ("tcp://:2376", "tcp://localhost:2376", "http://localhost:2376"),
        ("tcp://[::1]:2376", "tcp://[::1]:2376", "http://[::1]:2376"),
        ("127.0.0.1:2376", "tcp://127.0.0.1:2376", "http://127.0.0.1:2376"),
        ("tcp://docker.example:2376/prefix/", "tcp://docker.example:2376/prefix", "http://docker.example:2376/prefix"),
        ("tcp://bücher.example:2376", "tcp://xn--bcher-kva.example:2376", "http://xn--bcher-kva.example:2376"),
        ("tcp://[fe80::1%25eth0]:2376", "tcp://[fe80::1%25eth0]:2376", "http://[fe80::1%25eth0]:2376"),
    ],
)
def test_hosts_are_read_as_the_docker_cli_reads_them(value: str, host: str, url: str) -> None:
    endpoint = parse_host(value, default_to_tls=False)
    assert (endpoint.host, endpoint.url, endpoint.tls) == (host, url, None)


def test_no_host_is_the_default_socket_or_the_default_tls_host() -> None:
    assert parse_host("", False) == DockerEndpoint(host="unix:///var/run/docker.sock", socket="/var/run/docker.sock")
    assert parse_host("", True).host == "tcp://localhost:2376"


SSH_REFUSAL = (
    "DOCKER_HOST='ssh://me@build-host': zeroimage does not reach Docker over ssh; forward the daemon's socket "
    "(ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock USER@HOST) and set DOCKER_HOST=unix:///tmp/docker.sock, "
    "or pipe the image: zeroimage build -o docker-archive:- … | docker load"
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ssh://me@build-host", SSH_REFUSAL),
        (
            "npipe:////./pipe/docker_engine",
            "DOCKER_HOST='npipe:////./pipe/docker_engine': named pipes are Docker's on Windows; "
            "use tcp://HOST:PORT there",
        ),
        (
            "fd://",
            "DOCKER_HOST='fd://': fd:// is for dockerd's socket activation, not for clients; "
            "use the daemon's unix:///path",
        ),
        (
            "https://127.0.0.1:2376",
            "DOCKER_HOST='https://127.0.0.1:2376': write tcp://HOST:PORT, with DOCKER_TLS_VERIFY=1 for TLS, "
            "as for the Docker CLI",
        ),
        ("tcp://host:port", "DOCKER_HOST='tcp://host:port': the port is not a number from 0 to 65535"),
        ("gopher://x", "DOCKER_HOST='gopher://x' is not a Docker host: use unix:///PATH or tcp://HOST:PORT"),
        ("tcp://[::1", "DOCKER_HOST='tcp://[::1': the host is not a host name or an IP address"),
        ("tcp://[1.2.3.4]:1", "DOCKER_HOST='tcp://[1.2.3.4]:1': the host is not a host name or an IP address"),
        ("tcp://d_ck@r:1", "DOCKER_HOST='tcp://d_ck@r:1' is not tcp://HOST:PORT"),
        ("tcp://d ocker:1", "DOCKER_HOST='tcp://d ocker:1': the host is not a host name or an IP address"),
        ("tcp://do\tcker:1", "DOCKER_HOST='tcp://do\\tcker:1' is not tcp://HOST:PORT"),
        ("unix:///run/d\ud800.sock", "DOCKER_HOST='unix:///run/d\\ud800.sock' is not a unix socket path"),
        ("unix:///run/d\x00.sock", "DOCKER_HOST='unix:///run/d\\x00.sock' is not a unix socket path"),
    ],
)
def test_hosts_zeroimage_cannot_use_are_refused_with_what_to_do(value: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_host(value, False)
    assert refused.value.message == message


def test_a_long_host_is_shown_quoted_and_cut_in_the_refusal() -> None:
    value = "gopher://" + "x" * 5000 + "\n"
    with pytest.raises(UsageError) as refused:
        parse_host(value, False)
    shown = repr(value[:100] + "…" + value[-100:])
    assert refused.value.message == f"DOCKER_HOST={shown} is not a Docker host: use unix:///PATH or tcp://HOST:PORT"


# -- TLS from the environment --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    """A CA and a client certificate it signed."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    return ca, make_client_cert(ca, directory)


def env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    """An environment with a private HOME and Docker config folder, and ``values``."""
    return {"HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path / "config"), **values}


def test_tls_verify_uses_https_the_ca_and_the_client_certificate(tmp_path: Path, pki: tuple[KeyPair, KeyPair]) -> None:
    certs = cert_folder(tmp_path / "certs", pki, "ca.pem", "cert.pem", "key.pem")
    env = env_for(tmp_path, DOCKER_HOST="tcp://127.0.0.1:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs))
    endpoint = resolve_endpoint(env)
    assert endpoint.url == "https://127.0.0.1:2376"
    assert endpoint.tls is not None
    assert (endpoint.tls.ca, endpoint.tls.cert, endpoint.tls.key, endpoint.tls.verify) == (
        certs / "ca.pem",
        certs / "cert.pem",
        certs / "key.pem",
        True,
    )
    context = endpoint.tls.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "zeroimage test CA"),),)]


def test_any_value_of_docker_tls_verify_verifies_as_in_the_cli(tmp_path: Path, pki: tuple[KeyPair, KeyPair]) -> None:
    certs = cert_folder(tmp_path / "certs", pki, "ca.pem")
    env = env_for(tmp_path, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="0", DOCKER_CERT_PATH=str(certs))
    endpoint = resolve_endpoint(env)
    assert endpoint.tls is not None and endpoint.tls.verify
    assert endpoint.tls.cert is None and endpoint.tls.key is None  # none there: none presented


def test_docker_tls_alone_is_tls_without_verification(tmp_path: Path, pki: tuple[KeyPair, KeyPair]) -> None:
    certs = cert_folder(tmp_path / "certs", pki, "ca.pem", "cert.pem", "key.pem")
    env = env_for(tmp_path, DOCKER_HOST="tcp://h:2376", DOCKER_TLS="1", DOCKER_CERT_PATH=str(certs))
    endpoint = resolve_endpoint(env)
    assert endpoint.url == "https://h:2376"
    assert endpoint.tls is not None and not endpoint.tls.verify
    assert endpoint.tls.ssl_context().verify_mode == ssl.CERT_NONE


def test_tls_without_a_host_is_localhost_2376_and_certs_default_to_the_config_folder(
    tmp_path: Path, pki: tuple[KeyPair, KeyPair]
) -> None:
    cert_folder(tmp_path / "config", pki, "ca.pem", "cert.pem", "key.pem")
    endpoint = resolve_endpoint(env_for(tmp_path, DOCKER_TLS_VERIFY="1"))
    assert endpoint.url == "https://localhost:2376"
    assert endpoint.tls is not None and endpoint.tls.ca == tmp_path / "config" / "ca.pem"


def test_no_tls_on_a_unix_socket(tmp_path: Path) -> None:
    endpoint = resolve_endpoint(env_for(tmp_path, DOCKER_HOST="unix:///tmp/d.sock", DOCKER_TLS_VERIFY="1"))
    assert (endpoint.url, endpoint.tls) == ("http://docker", None)


def test_tls_asked_for_without_its_ca_is_one_line_naming_the_file(tmp_path: Path) -> None:
    env = env_for(tmp_path, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(tmp_path))
    with pytest.raises(InputError) as missing:
        resolve_endpoint(env)
    assert missing.value.message == (
        f"DOCKER_TLS_VERIFY is set, but {tmp_path}/ca.pem does not exist: put the daemon's CA there "
        "(with cert.pem and key.pem), or set DOCKER_CERT_PATH to the folder that holds them"
    )


def test_a_certificate_without_its_key_is_not_presented_as_in_the_cli(
    tmp_path: Path, pki: tuple[KeyPair, KeyPair]
) -> None:
    certs = cert_folder(tmp_path / "certs", pki, "ca.pem", "cert.pem")
    env = env_for(tmp_path, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs))
    endpoint = resolve_endpoint(env)
    assert endpoint.tls is not None and endpoint.tls.cert is None


def test_broken_tls_files_are_one_line_naming_them(tmp_path: Path, pki: tuple[KeyPair, KeyPair]) -> None:
    ca, client = pki
    certs = cert_folder(tmp_path / "certs", pki, "ca.pem", "cert.pem", "key.pem")
    env = env_for(tmp_path, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs))

    (certs / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(InputError) as bad_ca:
        resolve_endpoint(env).tls.ssl_context()  # type: ignore[union-attr]
    assert bad_ca.value.message == f"{certs}/ca.pem holds no PEM certificate (the Docker daemon's CA)"

    shutil.copyfile(ca.cert_path, certs / "ca.pem")
    shutil.copyfile(ca.key_path, certs / "key.pem")  # not the certificate's key
    with pytest.raises(InputError) as mismatch:
        resolve_endpoint(env).tls.ssl_context()  # type: ignore[union-attr]
    assert mismatch.value.message == (
        f"{certs}/cert.pem and {certs}/key.pem are not a certificate and its private key (PEM)"
    )

    encrypted = client.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (certs / "key.pem").write_bytes(encrypted)
    with pytest.raises(InputError) as locked:  # and never a prompt on the terminal
        resolve_endpoint(env).tls.ssl_context()  # type: ignore[union-attr]
    assert locked.value.message.startswith(f"{certs}/key.pem is an encrypted private key")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this host")
def test_tls_files_are_followed_through_symlinks_and_a_fifo_is_refused_at_once(
    tmp_path: Path, pki: tuple[KeyPair, KeyPair]
) -> None:
    """As the CLI reads them, through a symlink (a Kubernetes secret); a FIFO is never waited for."""
    real = cert_folder(tmp_path / "real", pki, "ca.pem", "cert.pem", "key.pem")
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).symlink_to(real / name)
    env = env_for(tmp_path, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs))
    endpoint = resolve_endpoint(env)
    assert endpoint.tls is not None and endpoint.tls.ssl_context().verify_mode == ssl.CERT_REQUIRED
    (certs / "ca.pem").unlink()
    os.mkfifo(certs / "ca.pem")
    with pytest.raises(InputError) as fifo:
        bounded(resolve_endpoint(env).tls.ssl_context, "reading a FIFO", timeout=20)  # type: ignore[union-attr]
    assert fifo.value.message == f"{certs}/ca.pem (the Docker daemon's CA) is not a regular file"


# -- contexts --------------------------------------------------------------------------------------


def make_context(
    config: Path, name: str, host: str, *, skip_verify: bool = False, tls_files: Path | None = None
) -> None:
    """A context as ``docker context create`` stores it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}))
    if tls_files is not None:
        shutil.copytree(tls_files, config / "contexts" / "tls" / digest / "docker")


def test_the_current_context_of_config_json_is_used(tmp_path: Path, pki: tuple[KeyPair, KeyPair]) -> None:
    config = tmp_path / "config"
    make_context(config, "remote", "tcp://10.0.0.5:2376", tls_files=cert_folder(tmp_path / "c", pki, "ca.pem"))
    (config / "config.json").write_text(json.dumps({"auths": {}, "currentContext": "remote"}))
    endpoint = resolve_endpoint(env_for(tmp_path))
    assert str(endpoint) == "tcp://10.0.0.5:2376 (Docker context 'remote')"
    assert endpoint.url == "https://10.0.0.5:2376"
    assert endpoint.tls is not None and endpoint.tls.verify and endpoint.tls.ca is not None


def test_docker_context_wins_over_config_json_and_docker_host_over_both(tmp_path: Path) -> None:
    config = tmp_path / "config"
    make_context(config, "one", "unix:///one.sock")
    make_context(config, "two", "unix:///two.sock")
    (config / "config.json").write_text(json.dumps({"currentContext": "one"}))
    assert resolve_endpoint(env_for(tmp_path)).host == "unix:///one.sock"
    assert resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="two")).host == "unix:///two.sock"
    both = env_for(tmp_path, DOCKER_CONTEXT="two", DOCKER_HOST="unix:///env.sock")
    assert resolve_endpoint(both).host == "unix:///env.sock"
    assert resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="default")).host == "unix:///var/run/docker.sock"


def test_an_endpoint_names_the_context_that_chose_it(tmp_path: Path) -> None:
    make_context(tmp_path / "config", "sock", "unix:///ctx.sock")
    assert str(resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="sock"))) == "unix:///ctx.sock (Docker context 'sock')"
    assert parse_host("tcp://h:1", False, context="ci").context == "ci"
    assert parse_host("tcp://h:1", False).context is None


def test_a_context_that_skips_verification_has_tls_unverified(tmp_path: Path) -> None:
    make_context(tmp_path / "config", "lax", "tcp://h:2376", skip_verify=True)
    endpoint = resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="lax"))
    assert endpoint.tls is not None and not endpoint.tls.verify and endpoint.tls.ca is None


def test_a_context_without_tls_files_is_plain_http_as_in_the_cli(tmp_path: Path) -> None:
    make_context(tmp_path / "config", "plain", "tcp://h:2375")
    assert resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="plain")).url == "http://h:2375"


def test_a_selected_context_that_does_not_exist_is_refused_never_the_default_socket(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"gone").hexdigest()
    with pytest.raises(UsageError) as refused:
        resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="gone"))
    assert refused.value.message == (
        f"the Docker context 'gone' (DOCKER_CONTEXT) does not exist: there is no "
        f"{tmp_path}/config/contexts/meta/{digest}/meta.json (docker context ls lists the contexts)"
    )


def test_a_context_name_no_context_can_have_does_not_exist(tmp_path: Path) -> None:
    """(A lone surrogate, which JSON can carry: before, an internal UnicodeEncodeError.)"""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text('{"currentContext": "ci\\ud800"}')
    with pytest.raises(UsageError) as refused:
        resolve_endpoint(env_for(tmp_path))
    assert refused.value.message == (
        f"the Docker context 'ci\\ud800' (currentContext of {tmp_path}/config/config.json) does not exist "
        "(docker context ls lists the contexts)"
    )


def test_a_context_named_in_bytes_beyond_utf8_is_found_as_the_cli_finds_it(tmp_path: Path) -> None:
    """DOCKER_CONTEXT as Python gives it (a byte that is no UTF-8, surrogate-escaped): the CLI
    hashes the name's bytes. (Before: an internal UnicodeEncodeError.)"""
    meta = tmp_path / "config" / "contexts" / "meta" / hashlib.sha256(b"c\xff").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": "unix:///c.sock"}}}))
    assert resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="c\udcff")).host == "unix:///c.sock"


def test_a_context_on_ssh_is_refused_naming_the_context(tmp_path: Path) -> None:
    make_context(tmp_path / "config", "remote", "ssh://me@build-host")
    with pytest.raises(UsageError) as refused:
        resolve_endpoint(env_for(tmp_path, DOCKER_CONTEXT="remote"))
    assert refused.value.message == SSH_REFUSAL.replace(
        "DOCKER_HOST='ssh://me@build-host'", "the Docker context 'remote' (host 'ssh://me@build-host')"
    )


def test_a_broken_config_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text('{"currentContext": ')
    with pytest.raises(InputError) as broken:
        resolve_endpoint(env_for(tmp_path))
    assert broken.value.message == (
        f"{tmp_path}/config/config.json (the Docker config file) is not valid JSON: "
        "Expecting value: line 1 column 20 (char 19)"
    )


def test_config_json_with_a_byte_order_mark_or_empty_is_read_as_the_cli_reads_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    make_context(config, "marked", "unix:///marked.sock")
    (config / "config.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"currentContext": "marked"}).encode())
    assert resolve_endpoint(env_for(tmp_path)).host == "unix:///marked.sock"
    (config / "config.json").write_bytes(b" \n")
    assert resolve_endpoint(env_for(tmp_path)).host == "unix:///var/run/docker.sock"


def test_an_environment_without_home_has_no_config_folder_as_for_credentials(tmp_path: Path) -> None:
    """An environment given whole is the whole truth: without DOCKER_CONFIG or HOME there is no
    Docker config folder, for the daemon as for the credentials (never the process's own home)."""
    assert docker_config_dir({}) is None and CredentialStore({}).docker_config_path() is None
    assert resolve_endpoint({}).host == "unix:///var/run/docker.sock"
    with pytest.raises(UsageError) as no_context:
        resolve_endpoint({"DOCKER_CONTEXT": "ci"})
    assert no_context.value.message == (
        "the Docker context 'ci' (DOCKER_CONTEXT) does not exist: there is no Docker config folder "
        "(neither DOCKER_CONFIG nor HOME is set)"
    )
    with pytest.raises(InputError) as no_ca:
        resolve_endpoint({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1"})
    assert no_ca.value.message == (
        "DOCKER_TLS_VERIFY is set, but there is no Docker config folder to find ca.pem in (neither DOCKER_CONFIG "
        "nor HOME is set): set DOCKER_CERT_PATH to the folder that holds ca.pem, cert.pem and key.pem"
    )
    env = {"DOCKER_CONFIG": str(tmp_path / "config")}
    assert docker_config_dir(env) == tmp_path / "config"
    assert CredentialStore(env).docker_config_path() == tmp_path / "config" / "config.json"


def test_a_socket_this_user_may_not_use_is_said_so_not_that_no_daemon_answers() -> None:
    """(Root, which the tests run as, may use any socket: the refusal is made up here.)"""
    client = DockerClient(parse_host("unix:///var/run/docker.sock", False), {})
    refused = httpcore.ConnectError("[Errno 13] Permission denied")
    refused.__cause__ = PermissionError(13, "Permission denied")
    assert client._transport_error(refused).message == (
        "cannot connect to the Docker daemon at unix:///var/run/docker.sock: permission denied "
        "(is this user allowed to use Docker? its socket belongs to the docker group)"
    )


# -- the answer to a load --------------------------------------------------------------------------


def answer_to(*chunks: bytes, name: str = NAME) -> LoadAnswer:
    answer = LoadAnswer(WHERE, name, IMAGE_ID)
    for chunk in chunks:
        answer.feed(chunk)
    answer.finish()
    return answer


def refusal(*chunks: bytes) -> str:
    with pytest.raises(OutputError) as failed:
        answer_to(*chunks)
    return failed.value.message


def test_docker_20_10s_answer_is_success() -> None:
    assert answer_to(DOCKER_20_10).loaded
    assert answer_to(PROGRESS * 3, DOCKER_20_10).loaded
    assert answer_to(b'{"stream":"Loaded image ID: ' + IMAGE_ID.encode() + b'\\n"}\r\n').loaded
    assert answer_to(b'{"stream":"Loaded ima"}\r\n{"stream":"ge: app:v1\\n"}\r\n').loaded  # one line, two messages
    assert answer_to(DOCKER_20_10.rstrip()).loaded  # no newline at the very end


@given(st.lists(st.integers(min_value=1, max_value=len(PROGRESS + DOCKER_20_10)), max_size=8))
def test_how_the_answer_is_cut_into_chunks_does_not_matter(cuts: list[int]) -> None:
    data = PROGRESS + DOCKER_20_10
    points = sorted(set(cuts))
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert answer_to(*chunks).loaded


def test_podmans_names_for_the_image_sent_are_success() -> None:
    """Podman's Docker-compatible API qualifies names its own way and joins several with ","."""
    for name in ("zi/app:v1", "docker.io/zi/app:v1", "localhost/zi/app:v1"):
        said = LoadAnswer(WHERE, "zi/app:v1", IMAGE_ID, spellings(parse_reference("zi/app:v1")))
        said.feed(json.dumps({"stream": f"Loaded image: other:v2,{name}"}).encode())
        said.finish()
        assert said.loaded
    assert spellings(parse_reference("app:v1")) == ["docker.io/library/app:v1", "localhost/app:v1"]
    assert spellings(parse_reference("ghcr.io/me/app:v1")) == ["ghcr.io/me/app:v1"]
    with pytest.raises(OutputError):
        answer_to(b'{"stream":"Loaded image: localhost/app:v1"}')  # a spelling only when given


def test_an_error_is_a_failure_in_one_bounded_line_of_the_daemons_words() -> None:
    said = "no space left on device\nsecond line"
    error = json.dumps({"errorDetail": {"message": said}, "error": said}).encode()
    assert refusal(PROGRESS, error + b"\r\n", DOCKER_20_10) == (
        f"Docker daemon at {WHERE}: it failed to load the image: no space left on device…"
    )
    detail_only = json.dumps({"errorDetail": {"message": "bad layer \x1b[31m"}}).encode()
    assert refusal(detail_only + b"\n") == f"Docker daemon at {WHERE}: it failed to load the image: bad layer \x1b[31m"
    long = json.dumps({"error": "x" * 10_000}).encode()
    assert refusal(long + b"\n") == f"Docker daemon at {WHERE}: it failed to load the image: {'x' * 300}…"


@pytest.mark.parametrize(
    "line",
    [b"Loaded image: app:v1", b'["Loaded image: app:v1"]', b'"Loaded image: app:v1"', b"[" * 60_000, b"{"],
)
def test_a_line_that_is_not_a_json_message_is_a_failure(line: bytes) -> None:
    message = refusal(line + b"\n", DOCKER_20_10)
    assert message.startswith(f"Docker daemon at {WHERE}: its answer to the load is not Docker's JSON messages: ")
    assert len(message) < 300


def test_an_answer_that_never_says_loaded_is_a_failure() -> None:
    assert refusal(PROGRESS * 3) == (
        f'Docker daemon at {WHERE}: its answer to the load ended without "Loaded image: app:v1": '
        "the image was not loaded"
    )
    assert refusal(b"") == refusal(PROGRESS)
    other = b'{"stream":"Loaded image: other:v1\\n"}\r\n'
    assert refusal(other) == f"Docker daemon at {WHERE}: it said it loaded other:v1, not app:v1"


def test_a_line_past_its_bound_fails_as_soon_as_it_is_past() -> None:
    answer = LoadAnswer(WHERE, NAME, IMAGE_ID)
    answer.feed(b'{"stream":"' + b"a" * (MAX_LOAD_LINE - 20))
    with pytest.raises(OutputError) as failed:
        answer.feed(b"a" * 100)
    assert failed.value.message == (
        f"Docker daemon at {WHERE}: its answer to the load has a line longer than {MAX_LOAD_LINE} bytes"
    )


def test_an_answer_past_its_bound_fails_even_of_valid_progress() -> None:
    answer = LoadAnswer(WHERE, NAME, IMAGE_ID)
    block = PROGRESS * 1000
    with pytest.raises(OutputError) as failed:
        for _ in range(MAX_LOAD_REPLY // len(block) + 2):
            answer.feed(block)
    assert failed.value.message == (
        f"Docker daemon at {WHERE}: its answer to the load runs past {MAX_LOAD_REPLY} bytes, which Docker never sends"
    )


def test_many_short_lines_cost_time_in_proportion_to_their_bytes() -> None:
    """Bounded in time as in memory: an answer of 1 MiB of empty lines in one piece, and 64 Ki
    ``stream`` messages of one character each (one line, cut into pieces), are judged in one pass
    (copying what is left of the piece at each line, or all the text so far at each message,
    would take hours). The bound is far beyond what one pass takes on a busy machine."""

    def empty_lines() -> str:
        with pytest.raises(OutputError) as failed:
            answer_to(b"\n" * (1 << 20))
        return failed.value.message

    assert bounded(empty_lines, "1 MiB of empty lines", timeout=120).endswith("the image was not loaded")

    def one_character_messages() -> str:
        answer = LoadAnswer(WHERE, NAME, IMAGE_ID)
        with pytest.raises(OutputError) as failed:
            for _ in range(MAX_LOAD_REPLY // 16):
                answer.feed(b'{"stream":"a"}\r\n')
        return failed.value.message

    assert bounded(one_character_messages, "64 Ki stream messages", timeout=120) == (
        f"Docker daemon at {WHERE}: its answer to the load has a line longer than {MAX_LOAD_LINE} bytes"
    )


def test_an_error_without_words_is_still_an_error() -> None:
    nested = b'{"errorDetail":' + b"[" * 500 + b"]" * 500 + b"}\n"
    assert refusal(nested) == f"Docker daemon at {WHERE}: it failed to load the image: (it gave no message)"
    assert refusal(b'{"error": "  ", "errorDetail": {}}\n') == refusal(nested)


def test_excerpt_keeps_one_line_and_the_characters_as_they_are() -> None:
    assert excerpt("  disk full  ") == "disk full"
    assert excerpt("one\ntwo") == "one…"
    assert excerpt("one\u2028two") == "one…"  # any line break Python knows
    assert excerpt("\x1b[2J" + "y" * 400) == "\x1b[2J" + "y" * 296 + "…"
    assert excerpt("") == ""


def test_the_load_timeout_grows_with_the_archive_and_can_be_set() -> None:
    assert load_timeout(0, {}) == 300
    assert load_timeout(2 << 30, {}) == 540
    assert load_timeout(2 << 30, {LOAD_TIMEOUT_VARIABLE: "7"}) == 7
    for text in ("soon", "0", "-5", "²", "9" * 5000):
        with pytest.raises(UsageError) as bad:
            load_timeout(0, {LOAD_TIMEOUT_VARIABLE: text})
        assert bad.value.message == (
            f"{LOAD_TIMEOUT_VARIABLE} must be a whole number of seconds (at least 1), not {text[:40]!r}"
        )


# -- the network -------------------------------------------------------------------------------------


class _SlowSocket(socket.socket):
    """A connection to a daemon that takes the archive slowly: each send takes 0.1 s and moves
    100 bytes (1 KB/s), however much room the socket has."""

    def send(self, data: Any, flags: int = 0) -> int:
        time.sleep(0.1)
        return super().send(bytes(data[:100]), flags)


def test_a_daemon_that_reads_slowly_fails_the_upload_at_the_end_of_a_window() -> None:
    """Under the limit (64 KiB/s over 1 s) while each send still moves a little: the window's end
    bounds the upload, never one send's timeout at a time (a 16 KiB piece took 16 s that way)."""
    ours, theirs = socket.socketpair()
    slow = _SlowSocket(ours.family, ours.type, ours.proto, ours.detach())
    stream = _Exchange(httpcore._backends.sync.SyncStream(slow), LowSpeedLimit(64 * 1024, 1))

    def take_everything() -> None:  # the daemon's side takes whatever arrives
        while theirs.recv(65536):
            pass

    reader = threading.Thread(target=take_everything, daemon=True)
    reader.start()
    started = time.monotonic()
    with pytest.raises(httpcore.TimeoutException) as stalled:
        stream.write(bytes(1 << 20))
    assert time.monotonic() - started < 5
    assert is_stall(stalled.value)
    stream.close()
    reader.join(5)
    theirs.close()


def test_over_tls_the_daemon_may_think_longer_than_a_window_before_it_answers(
    tmp_path: Path, pki: tuple[KeyPair, KeyPair]
) -> None:
    """Docker unpacks the archive silently before it answers: over TLS as over plain TCP, only
    the load's answer bound applies to that silence, never the low-speed window (1 s here)."""
    ca, _ = pki
    server = make_server_cert(ca, tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert_path, server.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def thinking_daemon() -> None:  # one connection: the load, 2.5 s of silence, then Docker's answer
        with listener, context.wrap_socket(listener.accept()[0], server_side=True) as connection:
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += connection.recv(65536)
            if stop.wait(2.5):
                return
            answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            connection.sendall(answer % (len(DOCKER_20_10), DOCKER_20_10))

    thread = threading.Thread(target=thinking_daemon, daemon=True)
    thread.start()
    certs = cert_folder(tmp_path / "certs", pki, "ca.pem")
    env = env_for(
        tmp_path,
        DOCKER_HOST=f"tcp://127.0.0.1:{listener.getsockname()[1]}",
        DOCKER_TLS_VERIFY="1",
        DOCKER_CERT_PATH=str(certs),
        ZEROIMAGE_LOW_SPEED_LIMIT="1024/1",
        ZEROIMAGE_DOCKER_LOAD_TIMEOUT="30",
    )
    archive = io.BytesIO(b"an archive")
    try:
        DockerClient(resolve_endpoint(env), env).load(archive, 10, NAME, IMAGE_ID, NullReporter())
    finally:
        stop.set()
        thread.join(10)
