"""The build pipeline, start to end, and nothing else:

BuildSpec → check every output against every input → read each program's platform
          → make the first program's layer, and meanwhile resolve the base, list it and plan
            each platform's image (:mod:`zeroimage.plan`), checking that its program will run
          → make the other new layers (each once) → derive config + manifest (+ index)
            in each format the outputs need → hand each output its graph
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from zeroimage import aws_lambda, runcheck
from zeroimage.cancel import Cancellation, Worker
from zeroimage.customize import ConfigChanges, apply_changes, history_of, user_ids
from zeroimage.elf import BinaryInfo, inspect_binary
from zeroimage.errors import InputError, PlatformError, RunCheckError, UsageError, ZeroimageError
from zeroimage.essentials import add_entries, combine_adds, essential_entries
from zeroimage.files import atomic_write
from zeroimage.image import (
    BaseImage,
    ImageFormat,
    ImageGraph,
    LayerTap,
    NewLayer,
    Sink,
    Source,
    WriteResult,
    append,
    candidates,
    index_of,
    load_base,
)
from zeroimage.layers.compress import LayerOptions
from zeroimage.layers.entries import Entry, file_entry, modes_notice
from zeroimage.layers.producer import LayerProducer, MadeLayer, Origin
from zeroimage.layers.tar import tar_size
from zeroimage.oci import Descriptor, ImageConfig, Manifest, Platform, parse_document, rfc3339
from zeroimage.oci import mediatypes as mt
from zeroimage.plan import (
    DEFAULT_PATH,
    Target,
    entrypoint_of,
    files_layer,
    image_platform,
    into_directory,
    place,
    program_layer,
)
from zeroimage.platform import variant_older
from zeroimage.progress import NullReporter, Reporter
from zeroimage.reference import Reference
from zeroimage.rootfs import FileTree, ListingCache, base_tree
from zeroimage.store import BlobStore, CorruptBlob, default_cache_dir
from zeroimage.transports import Location, PullPolicy, TransportOptions, open_sinks, open_source
from zeroimage.transports.locations import Inputs, check_outputs, hinted

if TYPE_CHECKING:
    from zeroimage.transports.registry.reuse import RegistryLayers


@dataclass(frozen=True)
class Program:
    """A program to put in the image, and the platform it is for when given explicitly."""

    path: Path
    platform: Platform | None = None


@dataclass(frozen=True)
class BuildSpec:
    """Everything a build needs to know, validated; the API's keywords land here and nowhere else."""

    programs: tuple[Program, ...]
    base: Location | None = None
    outputs: tuple[Location, ...] = ()
    entrypoint_path: str | None = None
    format: ImageFormat = "oci"
    layer: LayerOptions = field(default_factory=LayerOptions)
    source_date_epoch: int | None = None
    use_cache: bool = True
    insecure_registries: tuple[str, ...] = ()
    config: ConfigChanges = field(default_factory=ConfigChanges)
    adds: tuple[tuple[Path, str], ...] = ()
    chown: tuple[int, int] | None = None
    essentials: tuple[str, ...] = ()
    strict: bool = False
    digest_file: Path | None = None
    #: A platform with rules of its own the image must satisfy (``lambda``: AWS Lambda).
    target: Literal["lambda"] | None = None
    #: Images whose layers a push may reuse (besides those under the tags it pushes to).
    cache_from: tuple[Reference, ...] = ()
    #: When a registry base is asked for again (see :class:`~zeroimage.transports.PullPolicy`).
    pull: PullPolicy = "missing"


@dataclass(frozen=True)
class LayerResult:
    """A layer the build added: what it is, what it holds (``program`` or ``files``), and where
    it came from — made now, taken from the local cache, or reused from a registry, as the image
    ``reused_from`` lists it."""

    descriptor: Descriptor
    diff_id: str
    origin: Origin
    holds: str
    reused_from: str = ""


@dataclass(frozen=True)
class PlatformResult:
    platform: Platform
    manifest: Descriptor
    program: Path
    entrypoint: str
    binary: BinaryInfo
    base: Descriptor | None
    layers: tuple[LayerResult, ...]


@dataclass(frozen=True)
class BuildResult:
    """What a build made: the image (``root``: an index for several platforms), each platform's
    image, and where each output went."""

    root: Descriptor
    platforms: tuple[PlatformResult, ...]
    outputs: tuple[WriteResult, ...]
    base: str | None

    @property
    def digest(self) -> str:
        return self.root.digest


@dataclass(frozen=True)
class _Plan:
    """One platform's image before its layers are made."""

    target: Target
    base: BaseImage | None
    tree: FileTree
    entrypoint: str
    program: tuple[Entry, ...]  # the program's layer
    files: tuple[Entry, ...]  # the extra files' layer (empty: none)
    files_by: str  # what made the extra files, for the history


def build(spec: BuildSpec, reporter: Reporter | None = None) -> BuildResult:
    """Run the whole build and write every output. Prints nothing; warnings go to ``reporter``."""
    reporter = reporter or NullReporter()
    _check_request(spec, reporter)
    infos = [inspect_binary(p.path) for p in spec.programs]
    epoch = spec.source_date_epoch
    layer_options = replace(spec.layer, mtime=epoch or 0)
    owner = spec.chown or (0, 0)
    added = [(f"--add {source}:{dest}", add_entries(source, dest, *owner)) for source, dest in spec.adds]
    created = rfc3339(epoch if epoch is not None else _newest_mtime(spec, added))
    options = TransportOptions(mtime=epoch or 0, insecure_registries=spec.insecure_registries, pull=spec.pull)
    sinks = open_sinks(spec.outputs, options)

    with ExitStack() as stack:
        for sink in sinks:
            stack.callback(sink.discard)  # after a failure: no half-written output stays behind
        store = stack.enter_context(_store(spec.use_cache))
        # Local outputs keep new layers in the store: an unchanged rebuild copies them from there.
        keep = any(s.needs_layer_files for s in sinks)
        remote = None if keep else _registry_layers(spec, sinks, options, reporter)
        if remote is not None:
            stack.callback(remote.close)
        producer = LayerProducer(store, layer_options, reporter, lambda: _taps(sinks, reporter), keep, remote)
        stack.enter_context(hinted(spec.base))
        source = stack.enter_context(_opened(spec.base, replace(options, store=store))) if spec.base else None
        targets = _targets(spec, infos, source, reporter)
        if spec.target == "lambda":
            aws_lambda.check_platform(targets[0].platform)
        # The first program's layer does not wait for the base: it is made from what it would be
        # if the base changed nothing (no directory at its path, parents 0755 and root's), and
        # made again if the plan says otherwise.
        # For Lambda, nothing is made before every check has passed: "an error before any upload".
        first = None
        if spec.target != "lambda":
            first = _Background(producer, _program_guess(spec, targets[0]), targets[0])
            stack.callback(first.stop)
        listings = ListingCache(store)
        plans = [_plan(spec, target, _base(source, spec.base, target), added, listings, reporter) for target in targets]
        _check_plans(spec, plans, layer_options)
        made: list[MadeLayer] = []
        images: dict[ImageFormat, list[ImageGraph]] = {fmt: [] for fmt in _formats(spec, sinks)}
        primary: ImageFormat = spec.format if spec.format in images else next(iter(images))
        results = []
        for index, plan in enumerate(plans):
            program, files = _make_layers(plan, producer, first if index == 0 else None)
            made += [program, *([files] if files else [])]
            layers = [(files, "files", plan.files_by)] if files else []
            layers.append((program, "program", f"COPY {plan.target.name} {plan.entrypoint}"))
            config = _config(spec, plan, [(m.built.diff_id, by) for m, _, by in layers], created)
            new = [NewLayer(producer.blob(m), m.built.diff_id) for m, _, _ in layers]
            for fmt, graphs in images.items():
                graphs.append(append(plan.base, new, config, fmt, dict(spec.config.annotations)))
            results.append(_platform_result(plan, config, images[primary][-1].root, layers))
        order = tuple(dict.fromkeys(m.built.descriptor.digest for m in made))
        graphs_by_format = {
            fmt: replace(index_of(graphs, fmt, dict(spec.config.annotations)), new=order)
            for fmt, graphs in images.items()
        }
        written = _write_all(sinks, spec.format, graphs_by_format, reporter)
        root = graphs_by_format[primary].root
    if spec.digest_file is not None:
        with atomic_write(spec.digest_file) as out:
            out.write(root.digest.encode() + b"\n")
    return BuildResult(root=root, platforms=tuple(results), outputs=tuple(written), base=_base_name(spec.base) or None)


# -- before any work -----------------------------------------------------------------------------


def _check_request(spec: BuildSpec, reporter: Reporter) -> None:
    """Everything the request alone decides: refused before a byte is read or written."""
    if not spec.programs:
        raise UsageError("no program to put in the image")
    inputs = Inputs([p.path for p in spec.programs], [source for source, _ in spec.adds], spec.base)
    check_outputs(spec.outputs, spec.digest_file, inputs, terminal=sys.stdout.isatty())
    if spec.target == "lambda":
        aws_lambda.check_request(len(spec.programs), spec.layer.compression)
    _check_single_platform_outputs(spec)
    _check_one_entrypoint(spec)
    if spec.format == "docker" and mt.to_docker(spec.layer.media_type) is None:
        raise UsageError(f"--format docker cannot carry {spec.layer.compression} layers; use gzip")
    if spec.chown is not None and not spec.adds:
        reporter.warn("--chown sets the owner of the files from --add, and there is no --add: it does nothing")
    if (notice := modes_notice()) is not None:
        reporter.warn(notice)


def _check_single_platform_outputs(spec: BuildSpec) -> None:
    """docker-archive and Docker Engine outputs hold one platform: say so before any work."""
    single = [o for o in spec.outputs if o.transport in ("docker-archive", "docker-daemon")]
    if single and len(spec.programs) > 1:
        raise UsageError(
            f"{single[0]} holds one platform, but this build has {len(spec.programs)} programs: build one "
            "image per platform for Docker (one program per build), or write all platforms at once with "
            "-o oci-archive:PATH or --push"
        )


def _check_one_entrypoint(spec: BuildSpec) -> None:
    names = sorted({p.path.name for p in spec.programs})
    if len(names) > 1 and (spec.entrypoint_path is None or spec.entrypoint_path.endswith("/")):
        raise UsageError(
            f"the programs have different names ({', '.join(names)}): "
            "choose one path in the image with --entrypoint-path"
        )


def _newest_mtime(spec: BuildSpec, added: Sequence[tuple[str, list[Entry]]]) -> int:
    """The default ``created``: the newest modification time among the programs and the added
    files, so that unchanged inputs give the same image (``SOURCE_DATE_EPOCH`` overrides it)."""
    paths = [p.path for p in spec.programs] + [e.source for _, entries in added for e in entries if e.source]
    newest = 0
    for path in paths:
        try:
            newest = max(newest, int(os.stat(path).st_mtime))
        except OSError:
            continue  # reported where the file is read
    return newest


def _targets(spec: BuildSpec, infos: Sequence[BinaryInfo], source: Source | None, reporter: Reporter) -> list[Target]:
    """Each program's platform: ``--platform``, else its ELF header; a program that is not ELF
    takes the base's platform when the base has one, else it must be named."""
    targets: list[Target] = []
    for program, info in zip(spec.programs, infos, strict=True):
        detected = info.platform
        given = program.platform
        if given is not None:
            if detected is not None and (detected.architecture != given.architecture or given.os != "linux"):
                raise PlatformError(f"--platform {given} contradicts {program.path}, an ELF binary for {detected}")
            if detected is not None and variant_older(given, detected):
                problem = (
                    f"--platform {given} is older than {program.path} needs: its ELF header says {detected.variant}"
                )
                if spec.strict:
                    raise PlatformError(problem)
                reporter.warn(problem)
            platform = given
        elif detected is not None:
            platform = detected
            if detected.architecture == "arm" and not detected.variant:
                reporter.warn(
                    f"{program.path} does not say which ARM version it needs; taking linux/arm/v7 "
                    "(give --platform linux/arm/vN if it is another)"
                )
        elif info.format == "elf":
            raise PlatformError(f"cannot tell the architecture of {program.path} from its ELF header; give --platform")
        else:
            platform = _base_platform(program, info, source)
        targets.append(Target(str(program.path), program.path.name, info, platform))
    seen: dict[str, str] = {}
    for target in targets:
        key = str(target.platform)
        if key in seen:
            raise UsageError(f"{seen[key]} and {target.path} are both for {key}: one binary per platform")
        seen[key] = target.path
    return targets


def _base_platform(program: Program, info: BinaryInfo, source: Source | None) -> Platform:
    """The platform of a base that has one (attestations aside), for a program that cannot say."""
    if source is not None:
        found = [c for c in candidates(source) if c.platform is None or c.platform.os != "unknown"]
        platforms = {c.platform for c in found}
        if len(platforms) == 1:
            (platform,) = platforms
            return platform if platform is not None else _config_platform(source, found[0].descriptor)
    foreign = {"pe": "a Windows (PE) program", "macho": "a macOS (Mach-O) program"}.get(info.format)
    if foreign:
        raise PlatformError(
            f"{program.path} is {foreign}; it cannot run in a Linux container (give --platform to build it anyway)"
        )
    raise PlatformError(
        f"{program.path} is not an ELF binary, so it cannot say which platform it is for: "
        "give it with --platform OS/ARCH (e.g. linux/amd64)"
    )


def _config_platform(source: Source, desc: Descriptor) -> Platform:
    """The platform a base manifest's config names (its index entry names none)."""
    manifest = parse_document(source.document(desc), f"{source.description} {desc.digest}", desc.media_type)
    if not isinstance(manifest, Manifest):
        raise InputError(f"{source.description}: {desc.digest} is not an image manifest")
    return ImageConfig.from_bytes(source.document(manifest.config), f"{source.description} config").platform


# -- planning ------------------------------------------------------------------------------------


def _program_guess(spec: BuildSpec, target: Target) -> tuple[Entry, ...]:
    """The first program's layer as it is when the base changes nothing about it."""
    empty = FileTree()
    entrypoint = entrypoint_of(spec.entrypoint_path, target.name, empty)
    program, _ = _for_target(spec, [file_entry(Path(target.path), entrypoint)], entrypoint)
    return program_layer(program[0], empty)


def _for_target(spec: BuildSpec, entries: list[Entry], program: str) -> tuple[list[Entry], list[str]]:
    """The entries as the target needs them (Lambda's user reads them all, runs the program),
    and what was changed."""
    if spec.target == "lambda":
        return aws_lambda.widen(entries, program)
    return entries, []


def _base(source: Source | None, location: Location | None, target: Target) -> BaseImage | None:
    if source is None:
        return None
    return load_base(source, target.platform, _base_name(location))


def _plan(
    spec: BuildSpec,
    target: Target,
    base: BaseImage | None,
    added: Sequence[tuple[str, list[Entry]]],
    listings: ListingCache,
    reporter: Reporter,
) -> _Plan:
    if spec.target == "lambda" and base is not None:  # from the manifest, before any layer is read
        refused = aws_lambda.layer_problems([b.descriptor.media_type for b in base.layers], f"the base {base.name}")
        if refused:
            raise InputError(refused[0])
    tree = base_tree(base.layers, listings) if base is not None else FileTree()
    entrypoint = entrypoint_of(spec.entrypoint_path, target.name, tree)
    (program_at,) = place([Entry(entrypoint, "file", 0)], tree)  # where it lands, the image's links followed
    essentials = essential_entries(spec.essentials, base=tree if base is not None else None, reporter=reporter)
    groups = ([(f"--with {','.join(spec.essentials)}", essentials)] if essentials else []) + [
        (name, into_directory(entries, tree)) for name, entries in added
    ]
    # Collisions are judged where the entries land: two paths may be one through a base's link.
    landed = [(name, place(entries, tree)) for name, entries in groups]
    extras, widened = _for_target(spec, combine_adds(landed, [program_at.path]), entrypoint)
    files = list(files_layer(extras, tree))
    tree.add_entries(files)
    user = _user(spec.config, base, tree, reporter)
    by = [name for name, _ in groups]
    workdir = spec.config.workdir
    if workdir is not None and not tree.is_dir(workdir):
        # As BuildKit's WORKDIR: the directory is made, 0755, owned by the --user if one is given.
        uid, gid = user if spec.config.user is not None and user is not None else (0, 0)
        have = {f.path for f in files}
        made = [e for e in files_layer([Entry(workdir, "dir", 0o755, uid=uid, gid=gid)], tree) if e.path not in have]
        files += made
        tree.add_entries(made)
        by.append(f"WORKDIR {workdir}")
    (entry,), widened_program = _for_target(spec, [file_entry(Path(target.path), entrypoint)], entrypoint)
    program = program_layer(entry, tree)
    tree.add_entries(program)
    if widened or widened_program:
        changed = widened_program + widened
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        reporter.notice(f"for Lambda's unprivileged user, made readable by all (the program executable): {shown}")
    if spec.target == "lambda":
        user = aws_lambda.FUNCTION_USER  # Lambda runs the function as a user of its own, never root
    _check_runnable(spec, target, entrypoint, base, tree, user, reporter)
    if spec.target == "lambda":
        _check_lambda(spec, target, entrypoint, base, tree, reporter)
    return _Plan(target, base, tree, entrypoint, program, tuple(files), f"ADD {'; '.join(by)}")


def _user(changes: ConfigChanges, base: BaseImage | None, tree: FileTree, reporter: Reporter) -> tuple[int, int] | None:
    """The (uid, gid) the image runs its program as: ``--user``, else the base's ``User``, else
    root (None). A base user the image cannot resolve is left to the runtime."""
    if changes.user is not None:
        return user_ids(changes.user, tree)
    given = str((base.config.container.get("User") if base else None) or "")
    if not given:
        return None
    try:
        return user_ids(given, tree)
    except ZeroimageError:
        reporter.info(f"the base's user {given!r} is not in its /etc/passwd; not checking the program's mode for it")
        return None


def _check_runnable(
    spec: BuildSpec,
    target: Target,
    entrypoint: str,
    base: BaseImage | None,
    tree: FileTree,
    user: tuple[int, int] | None,
    reporter: Reporter,
) -> None:
    for problem in runcheck.problems(target.info, entrypoint, tree, target.platform.os, user=user):
        if base is None and problem.startswith(f"{entrypoint} is dynamically linked"):
            problem += (
                ". A FROM-scratch image has no loader or libraries: link it statically "
                "(e.g. CGO_ENABLED=0, -static, musl) or build on a base that has them (--from)"
            )
        if spec.strict:
            raise RunCheckError(problem)
        reporter.warn(problem)


def _check_lambda(
    spec: BuildSpec, target: Target, entrypoint: str, base: BaseImage | None, tree: FileTree, reporter: Reporter
) -> None:
    """What Lambda would never run, that the build cannot change: base files the program needs
    that Lambda's user cannot read, a program that does not speak the Runtime API on a base
    without a runtime client."""
    warnings = []
    unreadable = runcheck.unreadable(target.info, entrypoint, tree, aws_lambda.FUNCTION_USER)
    if unreadable:
        warnings.append(f"{entrypoint} needs {', '.join(unreadable)}, which Lambda's unprivileged user cannot read")
    if not aws_lambda.has_runtime_client(tree) and not aws_lambda.speaks_runtime_api(Path(target.path)):
        warnings.append(
            f"{target.path} never mentions AWS_LAMBDA_RUNTIME_API and the base has no runtime interface "
            "client (/lambda-entrypoint.sh): it will not answer invocations (use aws-lambda-go, Rust's "
            "lambda_runtime or the C++ runtime, or a public.ecr.aws/lambda/provided base)"
        )
    for warning in warnings:
        if spec.strict:
            raise RunCheckError(warning)
        reporter.warn(warning)


def _check_plans(spec: BuildSpec, plans: Sequence[_Plan], layer_options: LayerOptions) -> None:
    """What only the plans tell: one entrypoint for all platforms, and Lambda's size limit."""
    entrypoints = sorted({plan.entrypoint for plan in plans})
    if len(entrypoints) > 1:
        raise UsageError(
            f"the programs would go to {', '.join(entrypoints)}: choose one path in the image with "
            "--entrypoint-path PATH (naming the file, not its directory)"
        )
    if spec.target == "lambda":
        _check_lambda_size(plans, layer_options)


def _check_lambda_size(plans: Sequence[_Plan], layer_options: LayerOptions) -> None:
    """Lambda's 10 GiB, uncompressed, all layers together: known before anything is uploaded."""
    for plan in plans:
        new = sum(tar_size(entries, layer_options.mtime) for entries in (plan.program, plan.files) if entries)
        problem = aws_lambda.size_problem(plan.tree.layers_size + new)
        if problem:
            raise InputError(f"--target lambda: {problem}")


def _config(spec: BuildSpec, plan: _Plan, layers: Sequence[tuple[str, str]], created: str) -> ImageConfig:
    """The image's config: the base's (or scratch's, with Docker's default PATH), for the
    program's platform, with the new layers, the entrypoint and the requested changes, each
    recorded in the history as ``docker history`` shows a Dockerfile's."""
    base = plan.base
    platform = image_platform(plan.target.platform, base.config.platform if base else None)
    if base is None:
        config = ImageConfig.scratch(platform).with_container(Env=[f"PATH={DEFAULT_PATH}"])
    else:
        config = base.config.with_platform(platform)
    for diff_id, created_by in layers:
        config = config.with_layer(diff_id, created, created_by, comment="zeroimage")
    config = apply_changes(config.with_entrypoint([plan.entrypoint]).with_created(created), spec.config, plan.tree)
    for created_by in history_of(spec.config, plan.entrypoint):
        config = config.with_history(created, created_by, comment="zeroimage")
    return config


def _what(target: Target, program: Sequence[Entry]) -> str:
    return f"{target.name} ({target.platform}) as {program[-1].path}"


# -- making and writing --------------------------------------------------------------------------


def _registry_layers(
    spec: BuildSpec, sinks: Sequence[Sink], options: TransportOptions, reporter: Reporter
) -> RegistryLayers | None:
    """For a build that only pushes: the layers its registries already hold — under the tags it
    pushes to, and the --cache-from images — asked for from now on, so that a layer already
    there is neither compressed nor uploaded (None when there is nothing to ask)."""
    if not spec.cache_from and all(sink.needs_layer_files for sink in sinks):
        return None  # no registry to ask (imported only when there is one: it loads the HTTP client)
    from zeroimage.transports.registry.reuse import ClientOf, RegistryLayers
    from zeroimage.transports.registry.sink import RegistrySink

    pushes = [sink for sink in sinks if isinstance(sink, RegistrySink)]
    clients: dict[str, ClientOf] = {sink.registry: partial(getattr, sink, "client") for sink in pushes}
    references: list[tuple[Reference, ClientOf]] = [
        (ref, clients[ref.registry]) for sink in pushes for ref in sink.references if not ref.digest
    ]
    references += [(ref, clients.get(ref.registry)) for ref in spec.cache_from]
    if not references:
        return None
    return RegistryLayers(references, spec.insecure_registries, reporter, options.budget)


def _formats(spec: BuildSpec, sinks: Sequence[Sink]) -> list[ImageFormat]:
    """The formats the outputs need: OCI archives and layouts are OCI whatever ``--format``."""
    needed = dict.fromkeys(sink.fixed_format or spec.format for sink in sinks)
    return list(needed) or [spec.format]


def _write_all(
    sinks: Sequence[Sink], fmt: ImageFormat, graphs: dict[ImageFormat, ImageGraph], reporter: Reporter
) -> list[WriteResult]:
    """Hand each sink its graph. A stored layer found corrupt while it is copied has been removed
    from the store: the sink's write is done once more, and the layer's blob makes it again."""
    written: list[WriteResult] = []
    for sink in sinks:
        graph = graphs[sink.fixed_format or fmt]
        reporter.info(f"writing {sink.description}")
        try:
            written += sink.write(graph, reporter)
        except CorruptBlob:  # the blob's opener says so, and makes it again
            written += sink.write(graph, reporter)  # a failed write undid itself
    return written


class _Background:
    """The first program's layer, made while the base is resolved, listed and checked. A failure
    of either side stops the build; :meth:`stop` cancels the layer (if the build fails first,
    or the plan turns out to need another layer)."""

    def __init__(self, producer: LayerProducer, entries: tuple[Entry, ...], target: Target) -> None:
        self.entries = entries
        self.cancel = Cancellation()
        self._made: MadeLayer | None = None
        self._failure: BaseException | None = None
        self._worker = Worker(lambda: self._run(producer, target), "first-layer")
        self._worker.start()

    def _run(self, producer: LayerProducer, target: Target) -> None:
        try:
            self._made = producer.make(self.entries, _what(target, self.entries), self.cancel, target.platform)
        except BaseException as exc:  # noqa: BLE001 - raised in the build's thread by result()
            self._failure = exc

    def result(self) -> MadeLayer:
        self._worker.wait(interruptible=True)
        if self._failure is not None:
            raise self._failure
        assert self._made is not None
        return self._made

    def stop(self) -> None:
        if not self._worker.done:
            self.cancel.set()
            self._worker.wait()


def _make_layers(plan: _Plan, producer: LayerProducer, first: _Background | None) -> tuple[MadeLayer, MadeLayer | None]:
    """The plan's program layer, and its extra files' layer if it has one. The layer ``first``
    made ahead is taken when it is the one the plan asks for, and cancelled when it is not."""
    if first is not None and plan.program == first.entries:
        program = first.result()
    else:
        if first is not None:
            first.stop()
        program = producer.make(plan.program, _what(plan.target, plan.program), None, plan.target.platform)
    if not plan.files:
        return program, None
    return program, producer.make(plan.files, f"{len(plan.files)} added files", None, plan.target.platform)


def _platform_result(
    plan: _Plan, config: ImageConfig, manifest: Descriptor, layers: Sequence[tuple[MadeLayer, str, str]]
) -> PlatformResult:
    return PlatformResult(
        platform=config.platform,
        manifest=manifest,
        program=Path(plan.target.path),
        entrypoint=plan.entrypoint,
        binary=plan.target.info,
        base=plan.base.descriptor if plan.base else None,
        layers=tuple(
            LayerResult(m.built.descriptor, m.built.diff_id, m.origin, holds, m.reused_from) for m, holds, _ in layers
        ),
    )


def _taps(sinks: Sequence[Sink], reporter: Reporter) -> list[LayerTap]:
    """One tap per sink that takes a new layer while it is compressed (a registry uploads it,
    an archive file writes it in)."""
    return [tap for sink in sinks if (tap := sink.layer_tap(reporter)) is not None]


@contextmanager
def _opened(location: Location, options: TransportOptions) -> Iterator[Source]:
    source = open_source(location, options)
    try:
        yield source
    finally:
        source.close()


@contextmanager
def _store(use_cache: bool) -> Iterator[BlobStore]:
    if use_cache:
        yield BlobStore(default_cache_dir())
    else:
        with BlobStore.temporary() as store:
            yield store


def _base_name(location: Location | None) -> str:
    if location is None:
        return ""
    if location.reference is not None and location.transport == "docker":
        return str(location.reference)
    return str(location)
