"""The command line: flags → BuildSpec, printing, exit codes. No image logic lives here.

This is the only module that prints. Errors from below arrive as ZeroimageError and leave as
one line on stderr with the error's exit code; SIGINT and SIGTERM exit 130 and 143 after the
build's own clean-up has removed every temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from zeroimage import __version__
from zeroimage.errors import Interrupted, UsageError, ZeroimageError

if TYPE_CHECKING:
    from zeroimage.build import BuildResult, BuildSpec

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# -- printing ------------------------------------------------------------------------------------


def _err(message: str) -> None:
    click.echo(f"zeroimage: {message}", err=True)


class _PlainTask:
    """Progress as one log line per finished task, for logs and CI (stderr is not a terminal)."""

    def __init__(self, description: str, total: int | None, show: bool) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.show = show
        self.started = time.monotonic()

    def advance(self, amount: int) -> None:
        self.done += amount

    def __enter__(self) -> _PlainTask:
        self.started = time.monotonic()
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        if kind is None and self.show and (self.done >= 1_000_000 or seconds >= 0.5):
            _err(f"{self.description}: {_human(self.done)} in {seconds:.2f} s ({_human(self.done / seconds)}/s)")


class CliReporter:
    """Warnings always; steps with --verbose; progress bars on a terminal unless --quiet."""

    def __init__(self, quiet: bool, verbose: bool) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.terminal = sys.stderr.isatty() and not quiet
        self._progress: Any = None

    def warn(self, message: str) -> None:
        self._print(f"warning: {message}")

    def info(self, message: str) -> None:
        if self.verbose:
            self._print(message)

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(f"zeroimage: {line}", markup=False, highlight=False)
        else:
            _err(line)

    def task(self, description: str, total: int | None) -> Any:
        if not self.terminal:
            return _PlainTask(description, total, not self.quiet)
        return _RichTask(self, description, total)

    @contextmanager
    def live(self) -> Iterator[None]:
        if not self.terminal:
            yield
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            self._progress = progress
            try:
                yield
            finally:
                self._progress = None


class _RichTask:
    def __init__(self, reporter: CliReporter, description: str, total: int | None) -> None:
        self.reporter = reporter
        self.description = description
        self.total = total
        self.id: Any = None

    def __enter__(self) -> _RichTask:
        progress = self.reporter._progress
        if progress is not None:
            self.id = progress.add_task(self.description, total=self.total)
        return self

    def advance(self, amount: int) -> None:
        progress = self.reporter._progress
        if progress is not None and self.id is not None:
            progress.advance(self.id, amount)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        progress = self.reporter._progress
        if progress is not None and self.id is not None:
            progress.remove_task(self.id)


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# -- running commands ----------------------------------------------------------------------------


def _on_signal(signum: int, frame: object) -> NoReturn:
    from zeroimage import cancel

    cancel.request(signum)
    raise Interrupted(signum)


def _run(verbose: bool, action: Callable[[], int | None]) -> NoReturn:
    """Run ``action``, turning every failure into one line and an exit code."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        code = action() or 0
    except Interrupted as exc:
        _err(str(exc))
        code = exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        code = 130
    except ZeroimageError as exc:
        _err(f"error: {exc.message}")
        code = exc.exit_code
    except BrokenPipeError as exc:
        if exc.filename is not None:
            _err(f"error: {exc.filename}: {exc.strerror}")
        code = 141  # whoever read our output went away (`| head`): quietly, as SIGPIPE would
    except OSError as exc:
        from zeroimage.files import describe_os_error

        _err(f"error: {describe_os_error(exc, exc.filename) if exc.filename else exc.strerror or exc}")
        code = 1
    except Exception as exc:  # a bug: say so plainly, with the traceback only on request
        _err(f"internal error: {type(exc).__name__}: {exc}")
        if verbose:
            traceback.print_exc()
        else:
            _err("run again with --verbose for details, and please report it")
        code = 70
    _exit(code)


def _exit(code: int) -> NoReturn:
    """Exit without the interpreter's teardown, which frees every object one by one (25–30 ms
    after a push, a tenth of an unchanged re-push). Nothing needs it: every output is closed and
    renamed by now, and neither zeroimage nor the libraries it uses leave work to atexit."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: there is no one left to tell
            stream.flush()
    os._exit(code)


# -- the commands --------------------------------------------------------------------------------


#: Options several commands share, said the same way everywhere.
_insecure_option = click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Allow plain HTTP to this registry when it does not speak TLS. Repeatable.",
)
_verbose_option = click.option("-v", "--verbose", is_flag=True, help="Say what is being done.")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="zeroimage", message="%(prog)s %(version)s")
def main() -> None:
    """Build container images for single-binary programs, without Docker.

    \b
    zeroimage build app                                  # FROM scratch → ./app.tar (OCI archive)
    zeroimage build --from gcr.io/distroless/static --push registry.example.com/app:v1 app
    """


def _parse_platform_options(values: tuple[str, ...], binaries: tuple[str, ...]) -> list[tuple[Path, Any]]:
    """Pair each program with its explicit platform: ``--platform P`` (one program) or
    ``--platform P=PATH`` (any number; one file may serve several platforms, e.g. a script)."""
    from zeroimage.platform import parse_platform

    explicit: list[tuple[Path, Any]] = []
    bare: list[Any] = []
    for value in values:
        text, sep, path = value.partition("=")
        if sep:
            explicit.append((Path(path), parse_platform(text)))
        else:
            bare.append(parse_platform(text))
    if bare and (len(bare) > 1 or len(binaries) > 1):
        raise UsageError("with several binaries, give each its platform as --platform OS/ARCH[/VARIANT]=PATH")
    named = {os.path.normpath(path) for path, _ in explicit}
    pairs = [(Path(b), bare[0] if bare else None) for b in binaries if os.path.normpath(b) not in named]
    pairs += explicit
    if not pairs:
        raise UsageError("no program given: zeroimage build [OPTIONS] PROGRAM")
    return pairs


@main.command(context_settings=CONTEXT)
@click.argument("programs", nargs=-1, metavar="PROGRAM...")
@click.option(
    "--from",
    "base",
    metavar="SOURCE",
    help="Base image: REF, docker://REF, oci:DIR[:TAG], "
    "oci-archive:PATH[:TAG] or docker-archive:PATH. Default: FROM scratch.",
)
@click.option(
    "--from-archive", metavar="PATH", help="Base image from an OCI archive (same as --from oci-archive:PATH)."
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT][=PROGRAM]",
    help="Platform of the program when its ELF header cannot tell (default: from the header). Repeatable.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="DEST",
    help="Write the image: PATH or oci-archive:PATH[:TAG], oci:DIR[:TAG], docker-archive:PATH[:NAME:TAG], "
    "docker-daemon:NAME:TAG. Repeatable. Default: ./PROGRAM.tar unless --push is given.",
)
@click.option("--push", "pushes", multiple=True, metavar="REF", help="Push the image to a registry. Repeatable.")
@click.option("--entrypoint-path", metavar="PATH", help="Path of the program in the image (default: /NAME).")
@click.option(
    "--format",
    "image_format",
    type=click.Choice(["oci", "docker"]),
    default="oci",
    show_default=True,
    help="Media types of the result: OCI, or Docker v2s2 for registries that display OCI poorly.",
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "none"]),
    default="gzip",
    show_default=True,
    help="Compression of the new layer.",
)
@click.option("--compression-level", type=int, metavar="N", help="gzip 0-3 (ISA-L, default 1), zstd 1-19 (default 3).")
@_insecure_option
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE", help="Set an environment variable. Repeatable.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a config label. Repeatable.")
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a manifest (and index) annotation. Repeatable.",
)
@click.option("--workdir", metavar="DIR", help="Working directory of the container.")
@click.option("--user", metavar="USER[:GROUP]", help="User to run as; names are resolved in the image's /etc/passwd.")
@click.option("--cmd", "cmds", multiple=True, metavar="ARG", help="Default argument after the entrypoint. Repeatable.")
@click.option("--expose", "exposes", multiple=True, metavar="PORT[/PROTO]", help="Declare a port. Repeatable.")
@click.option("--stop-signal", metavar="SIGNAL", help="Signal that stops the container (e.g. SIGINT).")
@click.option(
    "--add",
    "adds",
    multiple=True,
    metavar="SRC:DEST",
    help="Add a file or directory tree (in a layer of its own). Repeatable.",
)
@click.option("--chown", metavar="UID[:GID]", help="Owner of the files from --add (default 0:0).")
@click.option(
    "--with",
    "essentials",
    multiple=True,
    metavar="LIST",
    help="Essentials for FROM-scratch images: ca-certs, tzdata, users, tmp, or all (comma-separated).",
)
@click.option("--strict", is_flag=True, help="Fail, instead of warning, when the program could not start in the image.")
@click.option("--no-cache", is_flag=True, help="Do not reuse or keep layers in the local cache.")
@click.option("--digest-file", type=click.Path(dir_okay=False), help="Write the image digest to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document describing the result, nothing else.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@_verbose_option
def build(**options: Any) -> None:
    """Build an image holding PROGRAM as its entrypoint (like FROM base; COPY PROGRAM /; ENTRYPOINT).

    Give several PROGRAMs (one per platform, read from their ELF headers) for a multi-platform image.

    \b
    Examples:
      zeroimage build ./app                                     # FROM scratch, writes ./app.tar
      zeroimage build --from-archive base.tar -o out.tar ./app
      zeroimage build --from alpine:3.20 --push localhost:5000/app:v1 ./app
      zeroimage build --platform linux/arm/v7=./app-armv7 ./app-amd64 ./app-arm64 --push REG/app:v1
      zeroimage build --with all --user nonroot --env TZ=Europe/Paris ./app
    """

    def action() -> int:
        spec = _build_spec(options)
        from zeroimage.build import build as run_build

        reporter = CliReporter(quiet=options["quiet"] or options["as_json"], verbose=options["verbose"])
        with reporter.live():
            result = run_build(spec, reporter)
        _report(result, options["as_json"], options["digest_file"])
        return 0

    _run(options["verbose"], action)


def _build_spec(o: dict[str, Any]) -> BuildSpec:
    """Every build flag, validated, into one BuildSpec."""
    from zeroimage import customize
    from zeroimage.build import BinarySpec, BuildSpec
    from zeroimage.essentials import parse_add, parse_chown, parse_essentials
    from zeroimage.layer import LayerOptions
    from zeroimage.transports import parse_location

    if o["base"] and o["from_archive"]:
        raise UsageError("--from and --from-archive both name a base: give one")
    base_location = None
    if o["from_archive"]:
        base_location = parse_location(f"oci-archive:{o['from_archive']}", "oci-archive")
    elif o["base"]:
        base_location = parse_location(o["base"], "docker")
    pairs = _parse_platform_options(o["platforms"], o["programs"])
    binaries = tuple(BinarySpec(path, platform) for path, platform in pairs)
    locations = [parse_location(out, "oci-archive") for out in o["outputs"]]
    for push in o["pushes"]:
        location = parse_location(push, "docker")
        if not location.is_registry:
            raise UsageError(f"--push takes a registry reference, not {push!r}; use -o for {location.transport}:")
        locations.append(location)
    if not locations:
        locations.append(parse_location(f"oci-archive:{binaries[0].path.name}.tar", "oci-archive"))
    changes = customize.ConfigChanges(
        env=customize.parse_pairs(o["envs"], "--env", env=True),
        labels=customize.parse_pairs(o["labels"], "--label"),
        annotations=customize.parse_pairs(o["annotations"], "--annotation"),
        workdir=customize.parse_workdir(o["workdir"]) if o["workdir"] is not None else None,
        user=customize.parse_user(o["user"]) if o["user"] is not None else None,
        cmd=o["cmds"],
        expose=tuple(customize.parse_port(p) for p in o["exposes"]),
        stop_signal=customize.parse_signal(o["stop_signal"]) if o["stop_signal"] is not None else None,
    )
    return BuildSpec(
        binaries=binaries,
        base=base_location,
        outputs=tuple(locations),
        entrypoint_path=o["entrypoint_path"],
        image_format=o["image_format"],
        layer=LayerOptions(compression=o["compression"], level=o["compression_level"]),
        source_date_epoch=_source_date_epoch(),
        use_cache=not o["no_cache"],
        insecure_registries=o["insecure"],
        config=changes,
        adds=tuple(parse_add(a) for a in o["adds"]),
        chown=parse_chown(o["chown"]),
        essentials=parse_essentials(o["essentials"]),
        strict=o["strict"],
    )


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {value!r}")
    return int(value)


def _report(result: BuildResult, as_json: bool, digest_file: str | None) -> None:
    if digest_file:
        from zeroimage.files import atomic_write

        with atomic_write(digest_file) as out:
            out.write(result.root.digest.encode() + b"\n")
    if as_json:
        click.echo(json.dumps(_result_json(result), indent=2))
        return
    for written in result.outputs:
        click.echo(f"{written.reference}@{written.digest}")


def _result_json(result: BuildResult) -> dict[str, Any]:
    return {
        "digest": result.root.digest,
        "mediaType": result.root.media_type,
        "size": result.root.size,
        "base": result.base,
        "outputs": [
            {"reference": w.reference, "digest": w.digest, **({"blobs": w.blobs} if w.blobs is not None else {})}
            for w in result.outputs
        ],
        "platforms": [
            {
                "platform": str(p.platform),
                "manifest": p.manifest.to_dict(),
                "layer": {**p.layer.to_dict(), "diffID": p.diff_id, "cached": p.layer_cached},
                "base": p.base.to_dict() if p.base else None,
            }
            for p in result.platforms
        ],
    }


@main.command(context_settings=CONTEXT)
@click.argument("source", metavar="SOURCE")
@click.option("--json", "as_json", is_flag=True, help="Print the full documents (index, manifests, configs) as JSON.")
@click.option("--raw", is_flag=True, help="Print the exact bytes of the top-level manifest or index.")
@_insecure_option
@_verbose_option
def inspect(source: str, as_json: bool, raw: bool, insecure: tuple[str, ...], verbose: bool) -> None:
    """Show an image: platforms, digests, sizes, entrypoint, layers.

    SOURCE is REF or docker://REF, oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker-archive:PATH.
    """

    def action() -> int:
        from zeroimage.inspect import describe
        from zeroimage.transports import TransportOptions, open_source, parse_location

        opened = open_source(parse_location(source, "docker"), TransportOptions(insecure_registries=insecure))
        try:
            if raw:
                sys.stdout.buffer.write(opened.document(opened.root()))
                sys.stdout.flush()
                return 0
            info = describe(opened)
        finally:
            opened.close()
        if as_json:
            click.echo(json.dumps(info, indent=2))
        else:
            _print_description(info)
        return 0

    _run(verbose, action)


def _print_description(info: dict[str, Any]) -> None:
    click.echo(f"{info['source']}")
    click.echo(f"  digest:     {info['digest']}")
    click.echo(f"  media type: {info['mediaType']}")
    for image in info["images"]:
        config = image["config"]
        container = config.get("config") or {}
        click.echo(f"  {image['platform']}")
        click.echo(f"    manifest:   {image['digest']}")
        click.echo(f"    size:       {_human(image['size'])}")
        if config.get("created"):
            click.echo(f"    created:    {config['created']}")
        click.echo(f"    entrypoint: {json.dumps(container.get('Entrypoint'))}")
        if container.get("Cmd"):
            click.echo(f"    cmd:        {json.dumps(container.get('Cmd'))}")
        layers = image["manifest"].get("layers", [])
        click.echo(f"    layers:     {len(layers)}")
        for layer in layers:
            click.echo(f"      {layer['digest']}  {_human(layer['size']):>9}  {layer.get('mediaType', '')}")


@main.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
      eval "$(zeroimage completion bash)"     # in ~/.bashrc
      zeroimage completion fish > ~/.config/fish/completions/zeroimage.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "zeroimage", "_ZEROIMAGE_COMPLETE").source())


# -- credentials ---------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("registry", default="docker.io")
@click.option("-u", "--username", help="User name (prompted for on a terminal when not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@_insecure_option
@_verbose_option
def login(registry: str, username: str | None, password_stdin: bool, insecure: tuple[str, ...], verbose: bool) -> None:
    """Log in to REGISTRY (default docker.io) and store the credentials as Docker does.

    The credentials are checked against the registry first: a wrong password stores nothing.
    They are stored through the configured credential helper (credHelpers/credsStore), else in
    config.json (mode 0600).

    \b
      echo "$TOKEN" | zeroimage login -u ci-bot --password-stdin ghcr.io
    """

    def action() -> int:
        from zeroimage.reference import parse_registry
        from zeroimage.transports.registry.credentials import Credential, CredentialStore

        name = parse_registry(registry)
        interactive = sys.stdin.isatty()
        user = username
        if not user:
            if not interactive:
                raise UsageError("no username: give -u USER")
            user = click.prompt("Username", err=True)
        if password_stdin:
            password = sys.stdin.read().rstrip("\r\n")
        elif interactive:
            password = click.prompt("Password", hide_input=True, err=True)
        else:
            raise UsageError("no password: pipe it in with --password-stdin")
        if not password:
            raise UsageError("the password is empty")
        credential = Credential(username=user, password=password)
        from zeroimage.transports.registry import client_for

        client = client_for(name, insecure)
        try:
            client.set_credential(credential)
            client.login_check()
        finally:
            client.close()
        where = CredentialStore().store(name, credential)
        _err(f"credentials for {name} stored in {where}")
        click.echo("Login Succeeded")
        return 0

    _run(verbose, action)


@main.command(context_settings=CONTEXT)
@click.argument("registry", default="docker.io")
@_verbose_option
def logout(registry: str, verbose: bool) -> None:
    """Remove the stored credentials for REGISTRY (default docker.io)."""

    def action() -> int:
        from zeroimage.reference import parse_registry
        from zeroimage.transports.registry.credentials import CredentialStore

        name = parse_registry(registry)
        if CredentialStore().erase(name):
            click.echo(f"Removed login credentials for {name}")
        else:
            _err(f"not logged in to {name}")
        return 0

    _run(verbose, action)


@main.command("check-auth", context_settings=CONTEXT)
@click.option("--push", "push", required=True, metavar="REF", help="The repository to check push access to.")
@_insecure_option
@_verbose_option
def check_auth(push: str, insecure: tuple[str, ...], verbose: bool) -> None:
    """Check, without pushing anything, that the stored credentials may push to REF.

    Starts an upload session and cancels it."""

    def action() -> int:
        from zeroimage.transports import parse_location
        from zeroimage.transports.registry import RegistrySink

        location = parse_location(push, "docker")
        if location.reference is None or not location.is_registry:
            raise UsageError(f"--push takes a registry reference, not {push!r}")
        sink = RegistrySink([location.reference], insecure)
        try:
            sink.check_push_access()
        finally:
            sink.close()
        click.echo(f"push access to {location.reference.name} OK")
        return 0

    _run(verbose, action)


if __name__ == "__main__":
    main()
