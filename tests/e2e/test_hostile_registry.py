"""The real CLI against a malicious registry (tests/support/hostile_registry.py), as an attacker.

Each test asserts the outcome: the secret never reached a host that is not the registry, nothing
travelled in clear text from a registry reached over TLS, the peak memory of the zeroimage
process stayed under a bound whatever the server sent, the wall time stayed under a bound however
slowly it sent it, and every failure is one clean line and exit status 1 (never a traceback,
never "internal error", never a secret).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.hostile_registry import REGISTRY, STORAGE, HostileRegistry
from tests.support.pki import KeyPair, make_ca, make_server_cert
from tests.support.programs import static_amd64_header

pytestmark = pytest.mark.e2e

#: Peak RSS allowed to a build that meets a body without end (a normal push peaks near 60 MiB).
RSS_BOUND_MIB = 100
TIME = shutil.which("time", path="/usr/bin:/bin") or ""
if not TIME:
    pytest.skip("GNU time (/usr/bin/time) measures the peak memory here: apt-get install time", allow_module_level=True)
#: A low-speed limit that keeps the stall tests short: under 1 KiB/s for 2 s fails.
FAST_STALL = {"ZEROIMAGE_LOW_SPEED_LIMIT": "1024/2"}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "error" in line]

    def told(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f} s, {self.peak_rss_mib:.0f} MiB\n{self.stderr}"


class Home:
    """A private working directory, cache and Docker config holding the registry's credential."""

    def __init__(self, root: Path, registry: HostileRegistry, ca: Path | None = None) -> None:
        self.root = root
        self.env = {
            "ZEROIMAGE_CACHE_DIR": str(root / ".cache"),
            "DOCKER_CONFIG": str(root / ".docker"),
            "HOME": str(root),
        }
        if ca is not None:
            self.env["SSL_CERT_FILE"] = str(ca)
        (root / ".docker").mkdir(parents=True)
        auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
        (root / ".docker" / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        self.program = root / "app"
        self.program.write_bytes(static_amd64_header() + b"\x00a program\n" * 100)
        self.program.chmod(0o755)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 150) -> Run:
        """``python -m zeroimage ARGS``: its exit status, output, wall time and peak RSS.

        The peak is GNU time's ``%M`` (wait4's maximum RSS of its child). Not wait4 from here:
        a child's maximum RSS counts the memory of the process that forked it (this one, which
        grows as the tests run); time is small."""
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env.pop("SOURCE_DATE_EPOCH", None)
        peak = self.root / ".peak-rss"
        started = time.monotonic()
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", str(peak), sys.executable, "-m", "zeroimage", *args],
            cwd=self.root,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - started
        kib = int(peak.read_text().split()[-1])
        return Run(proc.returncode, proc.stdout, proc.stderr, seconds, kib / 1024)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory)
    return ca, make_server_cert(ca, directory)


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileRegistry]:
    """``HostileRegistry(mode, auth=auth, **extra)`` from the parameter ``(mode, auth, extra)``,
    seeded with ``base:1``; ``extra["tls"] = True`` serves TLS with :func:`tls_pair`'s certificate."""
    mode, auth, extra = request.param
    extra = dict(extra)
    if extra.pop("tls", False):
        extra["tls"] = request.getfixturevalue("tls_pair")[1]
    with HostileRegistry(mode, auth=auth, **extra) as registry:
        registry.seed("base", "1")
        yield registry


def assert_one_clean_error(run: Run, registry: HostileRegistry, *words: str) -> None:
    told = run.told()
    assert run.returncode == 1, told
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, told
    assert len(run.errors) == 1 and run.errors[0].startswith("zeroimage: error: "), told
    for word in words:
        assert word in run.errors[0], told
    assert not [form for form in registry.secret_forms() if form in run.stdout + run.stderr], told


def build(home: Home, registry: HostileRegistry, action: str, env: dict[str, str] | None = None) -> Run:
    """A build that pushes to the registry, or one that pulls its base from it."""
    if action == "push":
        return home.run("build", "--push", f"{registry.host}/app:v1", str(home.program), env=env)
    if action == "pull":
        return home.run("build", "--from", f"{registry.host}/base:1", "-o", "out.tar", str(home.program), env=env)
    if action == "pull-missing":
        return home.run("build", "--from", f"{registry.host}/nothing:1", "-o", "out.tar", str(home.program), env=env)
    assert action == "inspect"
    return home.run("inspect", f"docker://{registry.host}/base:1", env=env)


# -- credentials go to the registry and nothing else ---------------------------------------------


@pytest.mark.parametrize(
    ("hostile", "action"),
    [
        (("upload-elsewhere", "basic", {"storage_challenge": "basic"}), "push"),
        (("upload-elsewhere", "bearer", {"storage_challenge": "bearer"}), "push"),
        (("blob-elsewhere", "basic", {"storage_challenge": "bearer"}), "pull"),
        (("blob-elsewhere", "bearer", {"storage_challenge": "basic"}), "pull"),
    ],
    indirect=["hostile"],
    ids=["upload-location-basic", "upload-location-bearer", "blob-redirect-bearer", "blob-redirect-basic"],
)
def test_a_storage_host_asking_for_credentials_gets_none(hostile: HostileRegistry, action: str, tmp_path: Path) -> None:
    """The registry hands the upload (or the blob) to another host, which answers 401 with a
    challenge of its own. Old behaviour: the client took that challenge and sent it the password
    (Basic) or fetched a token from the realm it named, with the password."""
    home = Home(tmp_path, hostile)
    run = build(home, hostile, action)
    storage = hostile.seen(STORAGE)
    assert storage, "the storage host was never asked: the test proves nothing"
    assert hostile.leaked_to(storage) == [], run.told()
    assert not [r for r in storage if r.path.startswith("/token")], run.told()  # no token from its realm
    assert [r for r in hostile.seen(REGISTRY) if "authorization" in r.headers]  # the registry got them
    assert_one_clean_error(run, hostile, hostile.storage_host, "asked for credentials")


@pytest.mark.parametrize(
    ("hostile", "action", "words"),
    [
        (("redirect-to-http", "basic", {"tls": True}), "pull", "redirected to plain HTTP"),
        (("upload-to-http", "basic", {"tls": True}), "push", "pointed to plain HTTP"),
        (("realm-over-http", "bearer", {"tls": True}), "push", "token over plain HTTP"),
    ],
    indirect=["hostile"],
    ids=["blob-redirect", "upload-location", "token-realm"],
)
def test_nothing_travels_in_clear_from_a_registry_reached_over_tls(
    hostile: HostileRegistry, action: str, words: str, tls_pair: tuple[KeyPair, KeyPair], tmp_path: Path
) -> None:
    """One port speaks TLS and plain HTTP; the registry, reached over TLS, points to ``http://``
    on that same host and port. Old behaviour: the Authorization header (same netloc) and the
    layer bytes went there in clear text; a loopback realm over HTTP got the password."""
    assert hostile.scheme == "https"
    home = Home(tmp_path, hostile, ca=tls_pair[0].cert_path)
    run = build(home, hostile, action)
    assert hostile.seen(tls=True), "nothing came over TLS: the test proves nothing"
    assert hostile.seen(tls=False) == [], run.told()  # not a byte in clear: no credential, no layer
    assert_one_clean_error(run, hostile, words)


# -- bounded memory ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostile", "action", "words"),
    [
        (("endless-ping", "basic", {}), "push", None),
        (("huge-ping", "basic", {}), "push", None),
        (("endless-manifest-put", "basic", {}), "push", None),
        (("endless-errors", "basic", {}), "pull-missing", "not found"),
        (("huge-errors", "basic", {}), "pull-missing", "not found"),
        (("endless-token", "bearer", {}), "push", "larger than 1048576 bytes"),
        (("zstd-manifest", "basic", {}), "pull", "digest"),
    ],
    indirect=["hostile"],
    ids=["ping", "ping-4GiB", "manifest-put", "error", "error-4GiB", "token", "zstd-bomb"],
)
def test_a_body_without_end_costs_a_few_megabytes(
    hostile: HostileRegistry, action: str, words: str | None, tmp_path: Path
) -> None:
    """Where the body is not needed (a ping, a manifest PUT's reply) the build succeeds; where it
    is, it fails with one line; either way the process stays small. Old behaviour: each body was
    read whole into memory (or decoded whole: 64 KiB of zstd are 2 GiB)."""
    home = Home(tmp_path, hostile)
    run = build(home, hostile, action)
    assert run.peak_rss_mib < RSS_BOUND_MIB, run.told()
    if words is None:
        assert run.returncode == 0, run.told()
        digest = run.stdout.strip().rsplit("@", 1)[1]
        assert hostile.manifests[("app", "v1")] == hostile.manifests[("app", digest)]
    else:
        assert_one_clean_error(run, hostile, words)


# -- bounded time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostile", "action"),
    [
        (("trickle-ping", "basic", {}), "push"),
        (("trickle-blob", "basic", {}), "pull"),
        (("never-read-uploads", "basic", {}), "push"),
    ],
    indirect=["hostile"],
    ids=["headers-a-byte-every-2s", "body-a-byte-every-2s", "upload-never-read"],
)
def test_a_registry_that_trickles_fails_the_build_soon(hostile: HostileRegistry, action: str, tmp_path: Path) -> None:
    """Under 1 KiB/s for 2 s (set through the environment) fails a transfer; a stall is retried
    once, so the build ends in about two windows. Old behaviour: it waited for ever."""
    home = Home(tmp_path, hostile)
    if hostile.mode == "never-read-uploads":
        home.program.write_bytes(static_amd64_header() + os.urandom(24 << 20))  # more than the socket buffers hold
    run = build(home, hostile, action, env=FAST_STALL)
    assert_one_clean_error(run, hostile, "stalled", "under 1024 bytes/s for 2 s")
    assert run.seconds < 15, run.told()


@pytest.mark.parametrize("hostile", [("trickle-ping", "basic", {})], indirect=True)
def test_the_default_low_speed_limit_ends_a_trickle_within_90_seconds(hostile: HostileRegistry, tmp_path: Path) -> None:
    """The default (under 1024 bytes/s for 30 s, one retry) against a byte every 2 s."""
    home = Home(tmp_path, hostile)
    run = build(home, hostile, "push")
    assert_one_clean_error(run, hostile, "stalled", "under 1024 bytes/s for 30 s")
    assert 55 < run.seconds < 90, run.told()


def test_a_malformed_low_speed_limit_is_a_usage_error(tmp_path: Path) -> None:
    with HostileRegistry("honest") as registry:
        home = Home(tmp_path, registry)
        run = build(home, registry, "push", env={"ZEROIMAGE_LOW_SPEED_LIMIT": "fast"})
        assert run.returncode == 2 and "ZEROIMAGE_LOW_SPEED_LIMIT must be BYTES/SECONDS" in run.stderr, run.told()


# -- hostile replies: the project's own error, never an internal one ----------------------------------


@pytest.mark.parametrize(
    ("hostile", "action", "words"),
    [
        (("token-nesting-bomb", "bearer", {}), "push", "malformed"),
        (("token-expires-inf", "bearer", {}), "push", "malformed"),
        (("chunk-min-garbage", "basic", {}), "push", "invalid OCI-Chunk-Min-Length 'plenty'"),
        (("redirect-to-file", "basic", {}), "pull", "file:///etc/passwd"),
        (("manifest-redirect", "basic", {}), "pull", "with a redirect (HTTP 302)"),
        (("manifest-redirect", "basic", {}), "inspect", "with a redirect (HTTP 302)"),
    ],
    indirect=["hostile"],
    ids=["token-nesting-bomb", "token-expires-1e400", "chunk-min-garbage", "file-url", "manifest-3xx", "inspect-3xx"],
)
def test_hostile_replies_are_one_clean_line(hostile: HostileRegistry, action: str, words: str, tmp_path: Path) -> None:
    """Old behaviour: RecursionError, OverflowError and ValueError escaped as "internal error"
    (exit 70); a redirect to file:// was retried as a network fault; a 302 manifest was parsed."""
    home = Home(tmp_path, hostile)
    assert_one_clean_error(build(home, hostile, action), hostile, words)


@pytest.mark.parametrize("hostile", [("honest", "bearer", {})], indirect=True)
def test_the_honest_registry_takes_a_push_and_gives_a_base(hostile: HostileRegistry, tmp_path: Path) -> None:
    """The same server, misbehaving in no way: what the tests above refuse is its misbehaviour."""
    home = Home(tmp_path, hostile)
    pushed = build(home, hostile, "push")
    assert pushed.returncode == 0, pushed.told()
    pulled = build(home, hostile, "pull")
    assert pulled.returncode == 0 and (tmp_path / "out.tar").exists(), pulled.told()
    assert hostile.leaked_to(hostile.seen(STORAGE)) == [] and not hostile.seen(tls=True)
