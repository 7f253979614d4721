"""The library's front door: build and inspect images from Python, with the CLI's vocabulary.

Every ``zeroimage build`` flag is a keyword of :func:`build` (the long name, ``-`` → ``_``; lists
for repeatable flags; mappings for ``env``, ``labels`` and ``annotations``), and takes the same
strings the flag takes. Nothing here prints, exits or installs a signal handler: errors are
:class:`~zeroimage.errors.ZeroimageError` subclasses, and progress goes to a reporter or a
callback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from zeroimage.errors import UsageError
from zeroimage.image import ImageFormat
from zeroimage.layers.compress import Compression, LayerOptions
from zeroimage.pipeline import BuildResult, BuildSpec, Program
from zeroimage.progress import CallbackReporter, Event, Reporter
from zeroimage.reference import Reference

PathLike = str | os.PathLike[str]


def build(
    programs: PathLike | Sequence[PathLike],
    *,
    base: str | None = None,
    from_archive: PathLike | None = None,
    platform: str | Sequence[str] = (),
    outputs: Sequence[str] = (),
    push: Sequence[str] = (),
    entrypoint_path: str | None = None,
    format: ImageFormat = "oci",  # noqa: A002 - the flag's name
    compression: Compression = "gzip",
    compression_level: int | None = None,
    insecure_registry: Sequence[str] = (),
    env: Mapping[str, str] | Sequence[str] | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    annotations: Mapping[str, str] | Sequence[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    cmd: Sequence[str] = (),
    expose: Sequence[str | int] = (),
    stop_signal: str | None = None,
    add: Sequence[str | tuple[PathLike, str]] = (),
    chown: str | None = None,
    essentials: Sequence[str] = (),
    strict: bool = False,
    no_cache: bool = False,
    digest_file: PathLike | None = None,
    source_date_epoch: int | None = None,
    target: Literal["lambda"] | None = None,
    cache_from: Sequence[str] = (),
    pull: Literal["always", "missing", "never"] = "missing",
    reporter: Reporter | None = None,
    progress: Callable[[Event], None] | None = None,
) -> BuildResult:
    """Build an image holding ``programs`` (one per platform) and write it to every output.

    ``base`` is any source the CLI's ``--from`` takes (``REF``, ``docker://REF``, ``oci:DIR[:TAG]``,
    ``oci-archive:PATH[:TAG]``, ``docker-archive:PATH``); None builds FROM scratch. ``outputs``
    takes every ``-o`` form and ``docker://REF`` for a push; ``push`` takes registry references.
    Without either, the image goes to ``./PROGRAM.tar``. ``platform`` is ``OS/ARCH[/VARIANT]`` for
    a single program or ``OS/ARCH[/VARIANT]=PATH`` entries. ``target="lambda"`` makes and checks
    the image for AWS Lambda. ``cache_from`` names images whose layers a push may reuse (beside
    those under the tags it pushes to); ``pull`` says when a registry base is asked for again
    (``always``, ``missing``: one request for a tag, ``never``: from the cache alone).
    ``source_date_epoch`` defaults to the
    ``SOURCE_DATE_EPOCH`` environment variable. Warnings, steps and progress go to ``reporter``
    (a :class:`~zeroimage.progress.Reporter`) or, one :class:`~zeroimage.progress.Event` at a
    time, to the function ``progress``; by default nowhere.
    """
    from zeroimage.pipeline import build as run

    if reporter is not None and progress is not None:
        raise UsageError("give a reporter or a progress function, not both")
    spec = _spec(
        programs=programs,
        base=base,
        from_archive=from_archive,
        platform=platform,
        outputs=outputs,
        push=push,
        entrypoint_path=entrypoint_path,
        fmt=format,
        compression=compression,
        compression_level=compression_level,
        insecure_registry=insecure_registry,
        env=env,
        labels=labels,
        annotations=annotations,
        workdir=workdir,
        user=user,
        cmd=cmd,
        expose=expose,
        stop_signal=stop_signal,
        add=add,
        chown=chown,
        essentials=essentials,
        strict=strict,
        no_cache=no_cache,
        digest_file=digest_file,
        source_date_epoch=source_date_epoch,
        target=target,
        cache_from=cache_from,
        pull=pull,
    )
    return run(spec, CallbackReporter(progress) if progress is not None else reporter)


def inspect(
    source: str, *, insecure_registry: Sequence[str] = (), target: Literal["lambda"] | None = None
) -> dict[str, Any]:
    """What ``zeroimage inspect --json SOURCE`` prints: the root document and, for each image
    under it, its platform, manifest and config. ``target="lambda"`` adds ``"lambda":
    {"problems": [...]}``: what AWS Lambda would refuse of the image (empty: nothing seen)."""
    from zeroimage.describe import describe
    from zeroimage.store import BlobStore, default_cache_dir
    from zeroimage.transports import TransportOptions, open_source, parse_source
    from zeroimage.transports.locations import hinted

    location = parse_source(source)
    wanted = _target(target)
    store = BlobStore(default_cache_dir()) if wanted else None
    with hinted(location):
        options = TransportOptions(insecure_registries=tuple(insecure_registry), store=store)
        opened = open_source(location, options)
        try:
            info = describe(opened)
            if store is not None:
                from zeroimage.aws_lambda import problems_of
                from zeroimage.rootfs import ListingCache

                info["lambda"] = {"problems": problems_of(opened, ListingCache(store))}
            return info
        finally:
            opened.close()


def _spec(
    *,
    programs: PathLike | Sequence[PathLike],
    base: str | None,
    from_archive: PathLike | None,
    platform: str | Sequence[str],
    outputs: Sequence[str],
    push: Sequence[str],
    entrypoint_path: str | None,
    fmt: ImageFormat,
    compression: Compression,
    compression_level: int | None,
    insecure_registry: Sequence[str],
    env: Mapping[str, str] | Sequence[str] | None,
    labels: Mapping[str, str] | Sequence[str] | None,
    annotations: Mapping[str, str] | Sequence[str] | None,
    workdir: str | None,
    user: str | None,
    cmd: Sequence[str],
    expose: Sequence[str | int],
    stop_signal: str | None,
    add: Sequence[str | tuple[PathLike, str]],
    chown: str | None,
    essentials: Sequence[str],
    strict: bool,
    no_cache: bool,
    digest_file: PathLike | None,
    source_date_epoch: int | None,
    target: Literal["lambda"] | None,
    cache_from: Sequence[str],
    pull: Literal["always", "missing", "never"],
) -> BuildSpec:
    """Every keyword, validated, into one BuildSpec (one UsageError for the first bad one)."""
    from zeroimage import customize
    from zeroimage.essentials import parse_add, parse_chown, parse_essentials
    from zeroimage.transports import parse_location, parse_output, parse_source

    if fmt not in ("oci", "docker"):
        raise UsageError(f"unknown image format {fmt!r}: use oci or docker")
    if base and from_archive:
        raise UsageError("--from and --from-archive both name a base: give one")
    base_location = None
    if from_archive:
        base_location = parse_location(f"oci-archive:{os.fspath(from_archive)}", "oci-archive")
    elif base:
        base_location = parse_source(base)
    paths = [programs] if isinstance(programs, str | os.PathLike) else list(programs)
    pairs = _pair_platforms([platform] if isinstance(platform, str) else list(platform), [os.fspath(p) for p in paths])
    program_specs = tuple(Program(path, given) for path, given in pairs)
    locations = [parse_output(out) for out in outputs]
    for reference in push:
        location = parse_location(reference, "docker")
        if not location.is_registry:
            raise UsageError(f"--push takes a registry reference, not {reference!r}; use -o for {location.transport}:")
        locations.append(location)
    if not locations:
        locations.append(parse_location(f"oci-archive:{program_specs[0].path.name}.tar", "oci-archive"))
    changes = customize.ConfigChanges(
        env=customize.parse_pairs(_pairs(env), "--env", env=True),
        labels=customize.parse_pairs(_pairs(labels), "--label"),
        annotations=customize.parse_pairs(_pairs(annotations), "--annotation"),
        workdir=customize.parse_workdir(workdir) if workdir is not None else None,
        user=customize.parse_user(user) if user is not None else None,
        cmd=tuple(cmd),
        expose=tuple(customize.parse_port(str(p)) for p in expose),
        stop_signal=customize.parse_signal(stop_signal) if stop_signal is not None else None,
    )
    return BuildSpec(
        programs=program_specs,
        base=base_location,
        outputs=tuple(locations),
        entrypoint_path=entrypoint_path,
        format=fmt,
        layer=LayerOptions(compression=compression, level=compression_level),
        source_date_epoch=_source_date_epoch(source_date_epoch),
        use_cache=not no_cache,
        insecure_registries=tuple(insecure_registry),
        config=changes,
        adds=tuple(parse_add(a) if isinstance(a, str) else (Path(a[0]), a[1]) for a in add),
        chown=parse_chown(chown) if chown is not None else None,
        essentials=parse_essentials(essentials),
        strict=strict,
        digest_file=Path(digest_file) if digest_file is not None else None,
        target=_target(target),
        cache_from=tuple(_cache_from(ref) for ref in cache_from),
        pull=_pull(pull),
    )


def _cache_from(text: str) -> Reference:
    from zeroimage.transports import parse_location

    location = parse_location(text, "docker")
    if location.reference is None or not location.is_registry:
        raise UsageError(f"--cache-from takes a registry reference, not {text!r}")
    return location.reference


def _pull(policy: str) -> Literal["always", "missing", "never"]:
    if policy not in ("always", "missing", "never"):
        raise UsageError(f"--pull {policy!r}: choose always, missing or never")
    return policy  # type: ignore[return-value]


def _target(target: str | None) -> Literal["lambda"] | None:
    if target is None or target == "lambda":
        return target  # type: ignore[return-value]
    raise UsageError(f"unknown target {target!r}: the one target is lambda (AWS Lambda)")


def _pairs(values: Mapping[str, str] | Sequence[str] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, Mapping):
        return [f"{key}={value}" for key, value in values.items()]
    if isinstance(values, str):
        raise UsageError(f"expected KEY=VALUE strings or a mapping, not the string {values!r}")
    return list(values)


def _pair_platforms(values: Iterable[str], programs: list[str]) -> list[tuple[Path, Any]]:
    """Pair each program with its explicit platform: ``OS/ARCH`` (one program) or
    ``OS/ARCH=PATH`` (any number; one file may serve several platforms, e.g. a script)."""
    from zeroimage.platform import parse_platform

    explicit: list[tuple[Path, Any]] = []
    bare: list[Any] = []
    for value in values:
        text, sep, path = value.partition("=")
        if sep:
            explicit.append((Path(path), parse_platform(text)))
        else:
            bare.append(parse_platform(text))
    if bare and (len(bare) > 1 or len(programs) > 1):
        raise UsageError("with several binaries, give each its platform as --platform OS/ARCH[/VARIANT]=PATH")
    named = {os.path.normpath(path) for path, _ in explicit}
    pairs = [(Path(p), bare[0] if bare else None) for p in programs if os.path.normpath(p) not in named]
    pairs += explicit
    if not pairs:
        raise UsageError("no program given: zeroimage build [OPTIONS] PROGRAM")
    return pairs


def _source_date_epoch(given: int | None) -> int | None:
    if given is not None:
        if given < 0:
            raise UsageError(f"SOURCE_DATE_EPOCH must not be negative, not {given}")
        return given
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {value!r}")
    return int(value)
