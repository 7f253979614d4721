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
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec

import click
from click.core import ParameterSource

from zeroimage import __version__
from zeroimage.cli.reporters import human, say
from zeroimage.cli.text import json_text, printable
from zeroimage.errors import Interrupted, SignatureError, UsageError, ZeroimageError

if TYPE_CHECKING:
    from zeroimage.describe import Inspection
    from zeroimage.pipeline import BuildResult

DEFAULT = ParameterSource.DEFAULT

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


class _Commands(click.Group):
    """The command group, its misuse told as every error is: one line (``zeroimage: error: …``)
    and exit 2, where click would print the usage, a hint and the error on three."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        kwargs.setdefault("prog_name", "zeroimage")  # as the user knows it, also under python -m
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "zeroimage"
            say(f"error: {exc.format_message()} (see {where} --help)")
            _exit(exc.exit_code)
        except click.ClickException as exc:
            say(f"error: {exc.format_message()}")
            _exit(exc.exit_code)
        except click.Abort:
            say("interrupted")
            _exit(130)
        _exit(code if isinstance(code, int) else 0)


@click.group(cls=_Commands, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="zeroimage", message="%(prog)s %(version)s")
def main() -> None:
    """Build container images for single-binary programs, without Docker.

    \b
    zeroimage build app                                  # FROM scratch → ./app.tar (OCI archive)
    zeroimage build --from gcr.io/distroless/static --push registry.example.com/app:v1 app
    """


# -- build ---------------------------------------------------------------------------------------

BUILD_HELP = """Build an image holding PROGRAM as its entrypoint (like FROM base; COPY PROGRAM /; ENTRYPOINT).

Give several PROGRAMs (one per platform, read from their ELF headers) for a multi-platform image.

\b
Examples:
  zeroimage build ./app                                     # FROM scratch, writes ./app.tar
  zeroimage build --from-archive base.tar -o out.tar ./app
  zeroimage build --from alpine:3.20 --push localhost:5000/app:v1 ./app
  zeroimage build --platform linux/arm/v7=./app-armv7 ./app-amd64 ./app-arm64 --push REG/app:v1
  zeroimage build --with all --user nonroot --env TZ=Europe/Paris ./app
"""


def _build_params() -> list[click.Parameter]:
    """The build command's flags, made from the declaration of the build's options, then the
    flags about what the command prints."""
    from zeroimage.options import REPEATED, options_fields

    params: list[click.Parameter] = [click.Argument(["programs"], nargs=-1, metavar="PROGRAM...")]
    for name, spec, default in options_fields():
        if not spec.flags:
            continue  # programs (the argument above), and what only Python callers set
        settings: dict[str, Any] = {"help": spec.help, "metavar": spec.metavar}
        if spec.kind == "switch":
            settings["is_flag"] = True
        elif spec.kind in REPEATED:
            settings["multiple"] = True
        elif spec.kind == "number":
            settings["type"] = int
        if spec.choices:
            settings["type"] = click.Choice(spec.choices)
        if spec.show_default:
            settings.update(default=default, show_default=True)
        params.append(click.Option([*spec.flags, name], **settings))
    params += [
        click.Option(
            ["--json", "as_json"], is_flag=True, help="Print one JSON document describing the result, nothing else."
        ),
        click.Option(["-q", "--quiet"], is_flag=True, help="No progress output."),
        click.Option(["-v", "--verbose"], is_flag=True, help="Say what is being done."),
    ]
    return params


@_handled
def _build(programs: tuple[str, ...], as_json: bool, quiet: bool, verbose: bool, **given: Any) -> None:
    from zeroimage import api
    from zeroimage.cli.reporters import CliReporter
    from zeroimage.transports import parse_output

    context = click.get_current_context()
    chosen = {name: value for name, value in given.items() if context.get_parameter_source(name) != DEFAULT}
    to_stdout = any(parse_output(output).is_stdout for output in chosen.get("outputs", ()))
    if to_stdout and as_json:
        raise UsageError("--json and an archive on standard output (-o -) cannot share it: write the archive to a file")
    reporter = CliReporter(quiet=quiet or as_json, verbose=verbose)
    with reporter.live():
        result = api.build(programs, reporter=reporter, **chosen)
    if as_json:
        click.echo(json_text(_result_json(result)))
        return
    for written in result.outputs:
        click.echo(printable(written.line), err=to_stdout)  # stdout carries the archive


build = click.Command("build", callback=_build, params=_build_params(), help=BUILD_HELP, context_settings=CONTEXT)
main.add_command(build)


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
        "attachments": [
            {"subject": subject, **attachment.to_dict()}
            for attachment, subject in zip(result.attachments, result.subjects, strict=True)
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
    target: str | None,
    insecure: tuple[str, ...],
    verbose: bool,
) -> None:
    """Show an image: platforms, digests, sizes, entrypoint, layers.

    SOURCE is REF or docker://REF, oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker-archive:PATH
    (an existing file or directory is opened as what it is).

    \b
      zeroimage inspect --target lambda docker://123456789012.dkr.ecr.eu-west-1.amazonaws.com/fn:v1
    """
    from zeroimage import api

    if raw:
        sys.stdout.buffer.write(api.raw_manifest(source, insecure_registry=insecure))
        sys.stdout.flush()
        return
    info = api.inspect(source, insecure_registry=insecure, target=target)
    if as_json:
        click.echo(json_text(info.to_json()))
    else:
        _print_description(info)
    if info.target:
        problems = info.problems
        if not as_json:
            _echo("  AWS Lambda: " + ("would refuse it:" if problems else "nothing it would refuse"))
            for problem in problems:
                _echo(f"    - {problem}")
        if problems:
            count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
            raise ZeroimageError(f"AWS Lambda would refuse {info.source} ({count})")


def _echo(line: str) -> None:
    """A line for people on stdout: what came from outside is shown, never obeyed."""
    click.echo(printable(line))


def _print_description(info: Inspection) -> None:
    _echo(info.source)
    _echo(f"  digest:     {info.digest}")
    _echo(f"  media type: {info.media_type}")
    for image in info.images:
        config = image.config
        container = config.get("config") or {}
        os_version = config.get("os.version")
        _echo(f"  {image.platform}" + (f" (os.version {os_version})" if os_version else ""))
        _echo(f"    manifest:   {image.digest}")
        _echo(f"    image id:   {image.id}")
        _echo(f"    size:       {human(image.size)}")
        if config.get("created"):
            _echo(f"    created:    {config['created']}")
        for key, label in (("Entrypoint", "entrypoint"), ("Cmd", "cmd")):
            if container.get(key):
                _echo(f"    {label + ':':<11} {json.dumps(container[key], ensure_ascii=False)}")
        for key, label in (("User", "user"), ("WorkingDir", "workdir")):
            if container.get(key):
                _echo(f"    {label + ':':<11} {container[key]}")
        layers = image.manifest.get("layers", [])
        _echo(f"    layers:     {len(layers)}")
        for layer in layers:
            _echo(f"      {layer['digest']}  {human(layer['size']):>9}  {layer.get('mediaType', '')}")


# -- verify --------------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("source", metavar="SOURCE")
@click.option("--key", required=True, metavar="PUB", help="The public key to check signatures against (cosign.pub).")
@click.option("--json", "as_json", is_flag=True, help="Print what was found as JSON.")
@_insecure_option
@_verbose_option
@_handled
def verify(source: str, key: str, as_json: bool, insecure: tuple[str, ...], verbose: bool) -> None:
    """Check, offline, that SOURCE is signed by KEY, and list what is attached to it.

    Reads the image's referrers (the OCI Referrers API or the tag schema in a registry; the
    layout's own in an OCI archive or layout) and cosign's legacy sha256-<hex>.sig signature.
    Exits 0 when a valid signature of the image by the key is found, 1 otherwise.

    \b
      zeroimage verify --key cosign.pub registry.example.com/app:v1
    """
    from zeroimage import api

    found = api.verify(source, key=key, insecure_registry=insecure)
    if as_json:
        click.echo(json_text(found.to_json()))
    else:
        _echo(source if source.endswith(f"@{found.digest}") else f"{source}@{found.digest}")
        for attachment in found.attachments:
            state = "verified" if attachment.verified else "attached" if attachment.kind == "sbom" else "NOT verified"
            _echo(f"  {attachment.kind:<11} {attachment.form:<8} {state}: {attachment.detail}  ({attachment.where})")
    if not found.ok:
        raise SignatureError(found.reason())
    if not as_json:
        _echo(found.reason())


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
    from zeroimage import api
    from zeroimage.reference import parse_registry

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
    where = api.login(name, username=user, password=password, insecure_registry=insecure)
    say(f"credentials for {name} stored in {where}")
    click.echo("Login Succeeded")


@main.command(context_settings=CONTEXT)
@click.argument("registry", default="docker.io")
@_verbose_option
@_handled
def logout(registry: str, verbose: bool) -> None:
    """Remove the stored credentials for REGISTRY (default docker.io)."""
    from zeroimage import api
    from zeroimage.reference import parse_registry

    name = parse_registry(registry)
    if api.logout(name):
        _echo(f"Removed login credentials for {name}")
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
    from zeroimage import api

    if (reference is None) == (push is None):
        raise UsageError("give the repository to check once: zeroimage check-auth REF")
    checked = api.check_auth(reference or push or "", insecure_registry=insecure)
    _echo(f"push access to {checked.name} OK")


if __name__ == "__main__":
    main()
