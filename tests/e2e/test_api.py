"""The public API, in-process: ``import zeroimage``, build, push and inspect, the results checked
by skopeo (the pushed manifest's digest) and runc (the image runs). A library is also judged by
what it does not do in its caller's process: it prints nothing, installs no signal handler and
never exits (every failure is a ``zeroimage.ZeroimageError``); progress reaches the caller's
function or reporter; its types ship (``py.typed``); and every ``zeroimage build`` flag has a
keyword of :func:`zeroimage.build`.
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import click
import pytest

import zeroimage
from tests.support import peers
from tests.support.programs import static_amd64_header
from tests.support.registry import Registry, start_registry

#: Flags whose keyword is not the long flag's name with ``-`` → ``_`` (documented in the API).
RENAMED = {
    "--from": "base",
    "--output": "outputs",
    "--push": "push",
    "--with": "essentials",
    "--label": "labels",
    "--annotation": "annotations",
    "--env": "env",
    "--cmd": "cmd",
    "--expose": "expose",
    "--add": "add",
    "--insecure-registry": "insecure_registry",
}
#: Flags about what the CLI prints, which a library caller has no use for.
CLI_ONLY = {"--json", "--quiet", "--verbose", "--help"}


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache and Docker's config folder of this test alone; no SOURCE_DATE_EPOCH from the
    developer's shell; the test's folder as the working directory."""
    monkeypatch.setenv("ZEROIMAGE_CACHE_DIR", str(tmp_path / ".cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / ".docker"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def big_program(tmp_path: Path) -> Path:
    """A 24 MB program (an ELF header, then data that does not compress): several progress steps."""
    path = tmp_path / "big"
    path.write_bytes(static_amd64_header() + os.urandom(24 << 20))
    return path


def _handlers() -> dict[int, object]:
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}


def test_build_push_and_inspect_through_the_api(
    registry: Registry, static_binary: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    handlers = _handlers()
    archive = tmp_path / "app.tar"
    result = zeroimage.build(
        [static_binary],
        outputs=[f"oci-archive:{archive}"],
        push=[f"{registry.host}/app:v1"],
        entrypoint_path="/app",
        env={"GREETING": "hi"},
        user="nonroot",
        essentials=["users"],
    )
    inspected = zeroimage.inspect(f"docker://{registry.host}/app:v1")
    assert capfd.readouterr() == ("", "")  # nothing printed, by Python or by anything it started
    assert _handlers() == handlers

    assert result.digest.startswith("sha256:")
    assert [o.reference for o in result.outputs] == [f"oci-archive:{archive}:latest", f"{registry.host}/app:v1"]
    assert all(o.digest == result.digest for o in result.outputs)
    pushed = peers.skopeo_inspect(f"docker://{registry.host}/app:v1", raw=True, extra=["--tls-verify=false"])
    assert peers.digest_of(pushed) == result.digest
    assert peers.digest_of(peers.skopeo_inspect(f"oci-archive:{archive}", raw=True)) == result.digest

    assert isinstance(inspected, zeroimage.Inspection)
    assert inspected.digest == result.digest and inspected.document == json.loads(pushed)
    assert inspected.raw == pushed == zeroimage.raw_manifest(f"docker://{registry.host}/app:v1")
    (image,) = inspected.images
    assert image.platform == zeroimage.Platform("linux", "amd64")
    config = image.config["config"]  # nonroot, resolved in the /etc/passwd the image gets
    assert config["Entrypoint"] == ["/app"] and config["User"] == "65532:65532" and "GREETING=hi" in config["Env"]

    pulled = tmp_path / "pulled.tar"  # what the registry holds, as another client gets it
    peers.run(["skopeo", "copy", "--src-tls-verify=false", registry.ref("app:v1"), f"oci-archive:{pulled}:latest"])
    ran = peers.run_image(pulled)
    assert "Hello from a FROM-scratch image" in ran.stdout and "I am /app" in ran.stdout


def test_failures_are_exceptions_never_prints_or_exits(
    static_binary: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    handlers = _handlers()
    with pytest.raises(zeroimage.InputError, match="does not exist") as missing:
        zeroimage.build([tmp_path / "no-such-program"])
    with pytest.raises(zeroimage.UsageError, match="notanarch") as platform:
        zeroimage.build([static_binary], platform=["linux/notanarch"])
    with pytest.raises(zeroimage.UsageError, match="reporter or a progress function"):
        zeroimage.build([static_binary], reporter=zeroimage.NullReporter(), progress=print)
    with pytest.raises(zeroimage.InputError):
        zeroimage.inspect(f"oci-archive:{tmp_path / 'missing.tar'}")
    for error in (missing.value, platform.value):
        assert isinstance(error, zeroimage.ZeroimageError) and error.exit_code != 0
        assert "\n" not in error.message
    assert capfd.readouterr() == ("", "")
    assert _handlers() == handlers
    assert not list(tmp_path.glob("*.tar"))  # and no output begun


def test_progress_reaches_a_callback(big_program: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    events: list[zeroimage.Event] = []
    zeroimage.build([big_program], outputs=[f"oci:{tmp_path / 'layout'}"], progress=events.append)
    assert capfd.readouterr() == ("", "")
    compressing = [e for e in events if e.message.startswith("compressing")]
    kinds = [e.kind for e in compressing]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    steps = [e for e in compressing if e.kind == "progress"]
    assert len(steps) >= 2, kinds  # 24 MB in steps of 8 MiB
    assert [e.done for e in steps] == sorted(e.done for e in steps)
    assert big_program.stat().st_size < compressing[-1].total == compressing[-1].done  # the tar stream, whole
    assert all(e.kind in ("warning", "info", "started", "progress", "finished") for e in events)


class _RecordingReporter:
    """A reporter of the caller's own, as :class:`zeroimage.Reporter` describes one."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []
        self.tasks: list[_RecordingTask] = []

    def warn(self, message: str) -> None:
        self.said.append(("warn", message))

    def info(self, message: str) -> None:
        self.said.append(("info", message))

    def task(self, description: str, total: int | None) -> _RecordingTask:
        task = _RecordingTask(description, total)
        self.tasks.append(task)
        return task


class _RecordingTask:
    def __init__(self, description: str, total: int | None) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.entered = self.exited = False

    def advance(self, amount: int) -> None:
        self.done += amount

    def __enter__(self) -> _RecordingTask:
        self.entered = True
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.exited = True


def test_progress_reaches_a_reporter(big_program: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    reporter = _RecordingReporter()
    archive = tmp_path / "big.tar"
    result = zeroimage.build([big_program], outputs=[str(archive)], reporter=reporter, no_cache=True)
    assert capfd.readouterr() == ("", "")
    (compressing,) = [t for t in reporter.tasks if t.description.startswith("compressing")]
    assert compressing.entered and compressing.exited
    assert big_program.stat().st_size < compressing.total == compressing.done  # the tar stream, whole
    assert any(kind == "info" for kind, _ in reporter.said)  # the steps, as --verbose shows them
    assert peers.digest_of(peers.skopeo_inspect(f"oci-archive:{archive}", raw=True)) == result.digest


def test_compressing_progress_ends_at_its_total(big_program: Path, tmp_path: Path) -> None:
    events: list[zeroimage.Event] = []
    zeroimage.build([big_program], outputs=[f"oci:{tmp_path / 'layout'}"], progress=events.append, no_cache=True)
    (finished,) = [e for e in events if e.kind == "finished" and e.message.startswith("compressing")]
    assert finished.done == finished.total


def test_the_package_ships_its_types() -> None:
    assert importlib.resources.files("zeroimage").joinpath("py.typed").is_file()


def test_every_build_flag_has_a_keyword() -> None:
    from zeroimage.cli.commands import build

    assert isinstance(build, click.Command)
    keywords = set(inspect.signature(zeroimage.build).parameters)
    missing = []
    for param in build.params:
        if not isinstance(param, click.Option):
            continue
        flag = max(param.opts, key=len)  # the long flag
        if flag in CLI_ONLY:
            continue
        keyword = RENAMED.get(flag, flag.lstrip("-").replace("-", "_"))
        if keyword not in keywords:
            missing.append(f"{flag} (expected keyword {keyword!r})")
    assert not missing, "build flags without a keyword of zeroimage.build: " + ", ".join(missing)
    assert "programs" in keywords
