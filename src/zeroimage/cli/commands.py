"""The commands: flags → API calls → lines on stdout, messages on stderr, exit codes.

Errors from below arrive as ZeroimageError and leave as one line on stderr with the error's exit
code (:func:`_handled`, the one place that does); SIGINT and SIGTERM exit 130 and 143 after the
build's own clean-up has removed every temporary file. Heavy modules load inside the commands,
so that ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, ParamSpec

import click

from zeroimage import __version__
from zeroimage.cli.reporters import human, say
from zeroimage.errors import Interrupted, UsageError, ZeroimageError

if TYPE_CHECKING:
    from zeroimage.pipeline import BuildResult

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
P = ParamSpec("P")


# -- running a command ---------------------------------------------------------------------------


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Record the interrupt and raise it, except inside Python's import machinery: an exception
    raised there can leave the import lock held (every later import then waits forever), so it
    is left for the build's next check (:func:`zeroimage.cancel.check`), a moment later."""
    from zeroimage import cancel

    cancel.request(signum)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return
        frame = frame.f_back
    raise Interrupted(signum)


def _handled(command: Callable[P, None]) -> Callable[P, None]:
    """Run the command, turning every failure into one line and an exit code; never returns."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        verbose = bool(kwargs.get("verbose"))
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        try:
            command(*args, **kwargs)
            code = 0
        except Interrupted as exc:
            say(str(exc))
            code = exc.exit_code
        except KeyboardInterrupt:
            say("interrupted")
            code = 130
        except ZeroimageError as exc:
            say(f"error: {exc.message}")
            code = exc.exit_code
        except BrokenPipeError as exc:
            if exc.filename is not None:
                say(f"error: {exc.filename}: {exc.strerror}")
            code = 141  # whoever read our output went away (`| head`): quietly, as SIGPIPE would
        except OSError as exc:
            from zeroimage.files import describe_os_error

            say(f"error: {describe_os_error(exc, exc.filename) if exc.filename else exc.strerror or exc}")
            code = 1
        except Exception as exc:  # a bug: say so plainly, with the traceback only on request
            say(f"internal error: {type(exc).__name__}: {exc}")
            if verbose:
                traceback.print_exc()
            else:
                say("run again with --verbose for details, and please report it")
            code = 70
        _exit(code)

    return run


def _exit(code: int) -> NoReturn:
    """Exit without the interpreter's teardown, which frees every object one by one (a tenth of
    an unchanged re-push, see bench/README.md). Nothing needs it: every output is closed and
    renamed by now, and neither zeroimage nor the libraries it uses leave work to atexit."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: there is no one left to tell
            stream.flush()
    os._exit(code)


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


# -- build ---------------------------------------------------------------------------------------


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
    "docker-daemon:NAME:TAG; - (or docker-archive:-) for standard output. Repeatable. "
    "Default: ./PROGRAM.tar unless --push is given.",
)
@click.option("--push", "pushes", multiple=True, metavar="REF", help="Push the image to a registry. Repeatable.")
@click.option(
    "--entrypoint-path",
    metavar="PATH",
    help="Path of the program in the image (default: /NAME); a PATH ending in / or naming a directory "
    "of the base takes the program inside it, as COPY does.",
)
@click.option(
    "--format",
    "image_format",
    type=click.Choice(["oci", "docker"]),
    default="oci",
    show_default=True,
    help="Media types of a push and of Docker outputs: OCI, or Docker v2s2 for registries that display "
    "OCI poorly (OCI archives and layouts are always OCI).",
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
@click.option(
    "--env",
    "envs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set an environment variable; $VAR and ${VAR} expand as ENV does ('PATH=/opt/bin:$PATH'). Repeatable.",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a config label. Repeatable.")
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a manifest (and index) annotation. Repeatable.",
)
@click.option("--workdir", metavar="DIR", help="Working directory of the container (made if the base lacks it).")
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
@click.option(
    "--target",
    type=click.Choice(["lambda"]),
    help="Make and check the image for where it will run: lambda (AWS Lambda: one platform, gzip, "
    "files readable by its unprivileged user, at most 10 GiB).",
)
@click.option(
    "--pull",
    type=click.Choice(["always", "missing", "never"]),
    default="missing",
    show_default=True,
    help="When to ask the registry for a base seen before: always; missing (one request resolves the tag, "
    "the rest comes from the cache); never (offline, from the cache alone).",
)
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    metavar="REF",
    help="An image whose layers a push may reuse, by content, instead of compressing and uploading them "
    "(the tags pushed to are always looked at). Repeatable.",
)
@click.option("--strict", is_flag=True, help="Fail, instead of warning, when the program could not start in the image.")
@click.option("--no-cache", is_flag=True, help="Do not reuse or keep layers in the local cache.")
@click.option("--digest-file", metavar="FILE", help="Write the image digest to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document describing the result, nothing else.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@_verbose_option
@_handled
def build(
    programs: tuple[str, ...],
    base: str | None,
    from_archive: str | None,
    platforms: tuple[str, ...],
    outputs: tuple[str, ...],
    pushes: tuple[str, ...],
    entrypoint_path: str | None,
    image_format: Literal["oci", "docker"],
    compression: Literal["gzip", "zstd", "none"],
    compression_level: int | None,
    insecure: tuple[str, ...],
    envs: tuple[str, ...],
    labels: tuple[str, ...],
    annotations: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    cmds: tuple[str, ...],
    exposes: tuple[str, ...],
    stop_signal: str | None,
    adds: tuple[str, ...],
    chown: str | None,
    essentials: tuple[str, ...],
    target: Literal["lambda"] | None,
    pull: Literal["always", "missing", "never"],
    cache_from: tuple[str, ...],
    strict: bool,
    no_cache: bool,
    digest_file: str | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
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
    from zeroimage import api
    from zeroimage.cli.reporters import CliReporter
    from zeroimage.transports import parse_output

    to_stdout = any(parse_output(output).is_stdout for output in outputs)
    if to_stdout and as_json:
        raise UsageError("--json and an archive on standard output (-o -) cannot share it: write the archive to a file")
    reporter = CliReporter(quiet=quiet or as_json, verbose=verbose)
    with reporter.live():
        result = api.build(
            programs,
            base=base,
            from_archive=from_archive,
            platform=platforms,
            outputs=outputs,
            push=pushes,
            entrypoint_path=entrypoint_path,
            format=image_format,
            compression=compression,
            compression_level=compression_level,
            insecure_registry=insecure,
            env=envs,
            labels=labels,
            annotations=annotations,
            workdir=workdir,
            user=user,
            cmd=cmds,
            expose=exposes,
            stop_signal=stop_signal,
            add=adds,
            chown=chown,
            essentials=essentials,
            target=target,
            pull=pull,
            cache_from=cache_from,
            strict=strict,
            no_cache=no_cache,
            digest_file=digest_file,
            reporter=reporter,
        )
    if as_json:
        click.echo(json.dumps(_result_json(result), indent=2, ensure_ascii=False))
        return
    for written in result.outputs:
        click.echo(written.pinned, err=to_stdout)  # stdout carries the archive


def _result_json(result: BuildResult) -> dict[str, Any]:
    return {
        "digest": result.root.digest,
        "mediaType": result.root.media_type,
        "size": result.root.size,
        "base": result.base,
        "outputs": [
            {"reference": w.reference, "digest": w.digest, **({"blobs": dict(w.blobs)} if w.blobs is not None else {})}
            for w in result.outputs
        ],
        "platforms": [
            {
                "platform": str(p.platform),
                "manifest": p.manifest.to_dict(),
                "layers": [
                    {
                        **layer.descriptor.to_dict(),
                        "diffID": layer.diff_id,
                        "origin": layer.origin,
                        **({"from": layer.reused_from} if layer.reused_from else {}),
                        "holds": layer.holds,
                    }
                    for layer in p.layers
                ],
                "base": p.base.to_dict() if p.base else None,
            }
            for p in result.platforms
        ],
    }


# -- inspect -------------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("source", metavar="SOURCE")
@click.option("--json", "as_json", is_flag=True, help="Print the full documents (index, manifests, configs) as JSON.")
@click.option("--raw", is_flag=True, help="Print the exact bytes of the top-level manifest or index.")
@click.option(
    "--target",
    type=click.Choice(["lambda"]),
    help="Also say what this platform would refuse of the image (exit 1 if anything): lambda (AWS Lambda).",
)
@_insecure_option
@_verbose_option
@_handled
def inspect(
    source: str,
    as_json: bool,
    raw: bool,
    target: Literal["lambda"] | None,
    insecure: tuple[str, ...],
    verbose: bool,
) -> None:
    """Show an image: platforms, digests, sizes, entrypoint, layers.

    SOURCE is REF or docker://REF, oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker-archive:PATH
    (an existing file or directory is opened as what it is).

    \b
      zeroimage inspect --target lambda docker://123456789012.dkr.ecr.eu-west-1.amazonaws.com/fn:v1
    """
    if raw:
        from zeroimage.transports import TransportOptions, open_source, parse_source
        from zeroimage.transports.locations import hinted

        location = parse_source(source)
        with hinted(location):
            opened = open_source(location, TransportOptions(insecure_registries=insecure))
            try:
                sys.stdout.buffer.write(opened.document(opened.root()))
                sys.stdout.flush()
            finally:
                opened.close()
        return
    from zeroimage import api

    info = api.inspect(source, insecure_registry=insecure, target=target)
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        _print_description(info)
    if target == "lambda":
        problems = info["lambda"]["problems"]
        if not as_json:
            click.echo("  AWS Lambda: " + ("would refuse it:" if problems else "nothing it would refuse"))
            for problem in problems:
                click.echo(f"    - {problem}")
        if problems:
            count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
            raise ZeroimageError(f"AWS Lambda would refuse {info['source']} ({count})")


def _print_description(info: dict[str, Any]) -> None:
    click.echo(f"{info['source']}")
    click.echo(f"  digest:     {info['digest']}")
    click.echo(f"  media type: {info['mediaType']}")
    for image in info["images"]:
        config = image["config"]
        container = config.get("config") or {}
        os_version = config.get("os.version")
        click.echo(f"  {image['platform']}" + (f" (os.version {os_version})" if os_version else ""))
        click.echo(f"    manifest:   {image['digest']}")
        click.echo(f"    image id:   {image['id']}")
        click.echo(f"    size:       {human(image['size'])}")
        if config.get("created"):
            click.echo(f"    created:    {config['created']}")
        for key, label in (("Entrypoint", "entrypoint"), ("Cmd", "cmd")):
            if container.get(key):
                click.echo(f"    {label + ':':<11} {json.dumps(container[key], ensure_ascii=False)}")
        for key, label in (("User", "user"), ("WorkingDir", "workdir")):
            if container.get(key):
                click.echo(f"    {label + ':':<11} {container[key]}")
        layers = image["manifest"].get("layers", [])
        click.echo(f"    layers:     {len(layers)}")
        for layer in layers:
            click.echo(f"      {layer['digest']}  {human(layer['size']):>9}  {layer.get('mediaType', '')}")


# -- completion ----------------------------------------------------------------------------------


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
@_handled
def login(registry: str, username: str | None, password_stdin: bool, insecure: tuple[str, ...], verbose: bool) -> None:
    """Log in to REGISTRY (default docker.io) and store the credentials as Docker does.

    The credentials are checked against the registry first: a wrong password stores nothing.
    They are stored through the configured credential helper (credHelpers/credsStore), else in
    config.json (mode 0600).

    \b
      echo "$TOKEN" | zeroimage login -u ci-bot --password-stdin ghcr.io
    """
    from zeroimage.reference import parse_registry
    from zeroimage.transports.registry import client_for
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
    client = client_for(name, insecure)
    try:
        client.set_credential(credential)
        client.login_check()
    finally:
        client.close()
    where = CredentialStore().store(name, credential)
    say(f"credentials for {name} stored in {where}")
    click.echo("Login Succeeded")


@main.command(context_settings=CONTEXT)
@click.argument("registry", default="docker.io")
@_verbose_option
@_handled
def logout(registry: str, verbose: bool) -> None:
    """Remove the stored credentials for REGISTRY (default docker.io)."""
    from zeroimage.reference import parse_registry
    from zeroimage.transports.registry.credentials import CredentialStore

    name = parse_registry(registry)
    if CredentialStore().erase(name):
        click.echo(f"Removed login credentials for {name}")
    else:
        say(f"not logged in to {name}")


@main.command("check-auth", context_settings=CONTEXT)
@click.argument("reference", metavar="REF", required=False)
@click.option("--push", "push", metavar="REF", help="The same as REF (the older spelling).")
@_insecure_option
@_verbose_option
@_handled
def check_auth(reference: str | None, push: str | None, insecure: tuple[str, ...], verbose: bool) -> None:
    """Check, without pushing anything, that the stored credentials may push to REF.

    Starts an upload session and cancels it.

    \b
      zeroimage check-auth ghcr.io/me/app
    """
    from zeroimage.transports import parse_location
    from zeroimage.transports.registry import RegistrySink

    if (reference is None) == (push is None):
        raise UsageError("give the repository to check once: zeroimage check-auth REF")
    push = reference or push
    assert push is not None
    location = parse_location(push, "docker")
    if location.reference is None or not location.is_registry:
        raise UsageError(f"--push takes a registry reference, not {push!r}")
    sink = RegistrySink([location.reference], insecure)
    try:
        sink.check_push_access()
    finally:
        sink.discard()
    click.echo(f"push access to {location.reference.name} OK")


if __name__ == "__main__":
    main()
