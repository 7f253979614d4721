"""The build pipeline, start to end, and nothing else:

BuildSpec → pick each program's platform → make the first program's layer, and meanwhile
            resolve the base, list it and check that each program will run in it
          → make the other new layers (each once) → derive config + manifest (+ index)
            in each format the outputs need → hand each output its graph
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from zeroimage import runcheck
from zeroimage.cancel import Cancellation, Worker
from zeroimage.customize import ConfigChanges, apply_changes
from zeroimage.elf import BinaryInfo, inspect_binary
from zeroimage.errors import PlatformError, RunCheckError, UsageError
from zeroimage.essentials import add_entries, essential_entries
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
    index_of,
    load_base,
)
from zeroimage.layers.compress import LayerOptions
from zeroimage.layers.entries import Entry, clean_image_path, file_entry
from zeroimage.layers.producer import LayerProducer, MadeLayer, Origin
from zeroimage.oci import Descriptor, ImageConfig, Platform, rfc3339
from zeroimage.oci import mediatypes as mt
from zeroimage.platform import host_platform
from zeroimage.progress import NullReporter, Reporter
from zeroimage.rootfs import FileTree, ListingCache, base_tree
from zeroimage.store import BlobStore, CorruptBlob, default_cache_dir
from zeroimage.transports import Location, TransportOptions, open_sinks, open_source


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
    chown: tuple[int, int] = (0, 0)
    essentials: tuple[str, ...] = ()
    strict: bool = False
    digest_file: Path | None = None


@dataclass(frozen=True)
class LayerResult:
    """A layer the build added: what it is, what it holds, and where it came from — made now,
    or taken from the local cache."""

    descriptor: Descriptor
    diff_id: str
    origin: Origin
    holds: str  # "program" or "files"


@dataclass(frozen=True)
class PlatformResult:
    platform: Platform
    manifest: Descriptor
    program: Path
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
class _Target:
    program: Program
    info: BinaryInfo
    platform: Platform


@dataclass(frozen=True)
class _Plan:
    """One platform's image before its layers are made."""

    target: _Target
    base: BaseImage | None
    tree: FileTree | None
    program: Entry
    files: tuple[Entry, ...]  # the extra files' layer ("" when none)


def build(spec: BuildSpec, reporter: Reporter | None = None) -> BuildResult:
    """Run the whole build and write every output. Prints nothing; warnings go to ``reporter``."""
    reporter = reporter or NullReporter()
    if not spec.programs:
        raise UsageError("no program to put in the image")
    targets = _targets(spec)
    entrypoint = _entrypoint_path(spec)
    epoch = spec.source_date_epoch
    created = rfc3339(epoch if epoch is not None else int(time.time()))
    options = TransportOptions(mtime=epoch or 0, insecure_registries=spec.insecure_registries)
    layer_options = replace(spec.layer, mtime=epoch or 0)
    if spec.format == "docker" and mt.to_docker(layer_options.media_type) is None:
        raise UsageError(f"--format docker cannot carry {layer_options.compression} layers; use gzip")
    sinks = open_sinks(spec.outputs, options)
    extras = essential_entries(spec.essentials) + [
        e for source, dest in spec.adds for e in add_entries(source, dest, *spec.chown)
    ]

    with ExitStack() as stack:
        for sink in sinks:
            stack.callback(sink.discard)  # after a failure: no half-written output stays behind
        store = stack.enter_context(_store(spec.use_cache))
        # Local outputs keep new layers in the store: an unchanged rebuild copies them from there.
        producer = LayerProducer(
            store, layer_options, reporter, lambda: _taps(sinks, reporter), any(s.needs_layer_files for s in sinks)
        )
        programs = [file_entry(t.program.path, entrypoint) for t in targets]
        first = _Background(lambda cancel: producer.make([programs[0]], _label(targets[0], entrypoint), cancel))
        stack.callback(first.stop)
        source = stack.enter_context(_opened(spec.base, options)) if spec.base else None
        listings = ListingCache(store.root)
        plans = [
            _plan(
                spec,
                target,
                program,
                load_base(source, target.platform, _base_name(spec.base)) if source else None,
                extras,
                entrypoint,
                listings,
                reporter,
            )
            for target, program in zip(targets, programs, strict=True)
        ]
        made: list[MadeLayer] = []
        images: dict[ImageFormat, list[ImageGraph]] = {fmt: [] for fmt in _formats(spec, sinks)}
        primary: ImageFormat = spec.format if spec.format in images else next(iter(images))
        results = []
        for index, plan in enumerate(plans):
            if index == 0:
                program_layer = first.result()
            else:
                program_layer = producer.make([plan.program], _label(plan.target, entrypoint))
            files_layer = producer.make(plan.files, f"{len(plan.files)} added files") if plan.files else None
            made += [program_layer] + ([files_layer] if files_layer else [])
            layers = (
                [(files_layer, "files"), (program_layer, "program")] if files_layer else [(program_layer, "program")]
            )
            history = [(m, _created_by(plan, holds, entrypoint)) for m, holds in layers]
            config = _config(spec, plan, history, entrypoint, created)
            new = [NewLayer(producer.blob(m), m.built.diff_id) for m, _ in layers]
            for fmt, graphs in images.items():
                graphs.append(append(plan.base, new, config, fmt, dict(spec.config.annotations)))
            results.append(
                PlatformResult(
                    platform=config.platform,
                    manifest=images[primary][-1].root,
                    program=plan.target.program.path,
                    binary=plan.target.info,
                    base=plan.base.descriptor if plan.base else None,
                    layers=tuple(
                        LayerResult(m.built.descriptor, m.built.diff_id, m.origin, holds) for m, holds in layers
                    ),
                )
            )
        order = tuple(dict.fromkeys(m.built.descriptor.digest for m in made))
        graphs_by_format = {
            fmt: replace(index_of(graphs, fmt, dict(spec.config.annotations)), new=order)
            for fmt, graphs in images.items()
        }
        written = _write_all(sinks, spec.format, graphs_by_format, producer, reporter)
        root = graphs_by_format[primary]
    if spec.digest_file is not None:
        with atomic_write(spec.digest_file) as out:
            out.write(root.root.digest.encode() + b"\n")
    return BuildResult(
        root=root.root,
        platforms=tuple(results),
        outputs=tuple(written),
        base=str(spec.base) if spec.base else None,
    )


def _label(target: _Target, entrypoint: str) -> str:
    return f"{target.program.path.name} ({target.platform}) as {entrypoint}"


def _formats(spec: BuildSpec, sinks: Sequence[Sink]) -> list[ImageFormat]:
    """The formats the outputs need: OCI archives and layouts are OCI whatever ``--format``."""
    needed = dict.fromkeys(sink.fixed_format or spec.format for sink in sinks)
    return list(needed) or [spec.format]


def _write_all(
    sinks: Sequence[Sink],
    fmt: ImageFormat,
    graphs: dict[ImageFormat, ImageGraph],
    producer: LayerProducer,
    reporter: Reporter,
) -> list[WriteResult]:
    """Hand each sink its graph. A stored layer found corrupt while it is copied has been removed
    from the store: it is made again, and that sink's write done again, once."""
    written: list[WriteResult] = []
    for sink in sinks:
        graph = graphs[sink.fixed_format or fmt]
        reporter.info(f"writing {sink.description}")
        try:
            written += sink.write(graph, reporter)
        except CorruptBlob as exc:
            reporter.warn(f"{exc}; making it again")
            sink.discard()
            written += sink.write(graph, reporter)
    return written


class _Background:
    """The first program's layer, made while the base is resolved, listed and checked: it does
    not depend on the base, and on a registry base that takes round trips (and, the first time,
    the base's layers). A failure of either side stops the build; :meth:`stop` cancels the layer
    if the build fails first."""

    def __init__(self, make: Callable[[Cancellation], MadeLayer]) -> None:
        self.cancel = Cancellation()
        self._made: MadeLayer | None = None
        self._failure: BaseException | None = None
        self._worker = Worker(lambda: self._run(make), "first-layer")
        self._worker.start()

    def _run(self, make: Callable[[Cancellation], MadeLayer]) -> None:
        try:
            self._made = make(self.cancel)
        except BaseException as exc:  # noqa: BLE001 - raised in the build's thread by result()
            self._failure = exc

    def result(self) -> MadeLayer:
        self._worker.wait()
        if self._failure is not None:
            raise self._failure
        assert self._made is not None
        return self._made

    def stop(self) -> None:
        if not self._worker.done:
            self.cancel.set()
            self._worker.wait()


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


def _targets(spec: BuildSpec) -> list[_Target]:
    targets: list[_Target] = []
    for program in spec.programs:
        info = inspect_binary(program.path)
        detected = info.platform
        if program.platform is not None:
            platform = program.platform
            if detected is not None and (detected.architecture != platform.architecture or platform.os != "linux"):
                raise PlatformError(f"--platform {platform} contradicts {program.path}, an ELF binary for {detected}")
        elif detected is not None:
            platform = detected
        elif info.format in ("elf",):
            raise PlatformError(f"cannot tell the architecture of {program.path} from its ELF header; give --platform")
        elif len(spec.programs) == 1:
            platform = host_platform()
        else:
            raise PlatformError(f"{program.path} is not an ELF binary: give its platform with --platform OS/ARCH=PATH")
        targets.append(_Target(program, info, platform))
    seen: dict[str, Path] = {}
    for target in targets:
        key = str(target.platform)
        if key in seen:
            raise UsageError(f"{seen[key]} and {target.program.path} are both for {key}: one binary per platform")
        seen[key] = target.program.path
    return targets


def _entrypoint_path(spec: BuildSpec) -> str:
    if spec.entrypoint_path:
        return clean_image_path(spec.entrypoint_path)
    names = {p.path.name for p in spec.programs}
    if len(names) > 1:
        raise UsageError(
            f"the binaries have different names ({', '.join(sorted(names))}): "
            "choose one path in the image with --entrypoint-path"
        )
    return clean_image_path("/" + names.pop())


def _plan(
    spec: BuildSpec,
    target: _Target,
    program: Entry,
    base: BaseImage | None,
    extras: list[Entry],
    entrypoint: str,
    listings: ListingCache,
    reporter: Reporter,
) -> _Plan:
    tree = _filesystem(target, base, bool(extras), spec, listings)
    files = _without_existing_dirs(_with_parents(extras, tree), tree)
    if tree is not None:
        tree.add_entries([*files, program])
        _check_runnable(target, entrypoint, base, tree, spec.strict, reporter)
    return _Plan(target, base, tree, program, tuple(files))


def _filesystem(
    target: _Target, base: BaseImage | None, has_extras: bool, spec: BuildSpec, listings: ListingCache
) -> FileTree | None:
    """The base's filesystem when anything needs it (placing extra files, resolving a user name,
    checking a dynamic program or script); None otherwise, so static builds never list a base."""
    info = target.info
    needed = (
        has_extras
        or spec.config.user_needs_lookup
        or info.format in ("script", "macho", "pe")
        or (info.format == "elf" and not info.static)
    )
    if not needed:
        return None
    return base_tree(base.layers, listings) if base is not None else FileTree()


def _with_parents(entries: list[Entry], tree: FileTree | None) -> list[Entry]:
    """Add directory entries for parents that neither the base nor the entries have."""
    if not entries:
        return entries
    have = {e.path for e in entries}
    parents: list[Entry] = []
    for entry in entries:
        parent = posixpath.dirname(entry.path)
        while parent not in ("/", "") and parent not in have:
            have.add(parent)
            if tree is None or not tree.is_dir(parent):
                parents.append(Entry(parent, "dir", 0o755))
            parent = posixpath.dirname(parent)
    return parents + entries


def _without_existing_dirs(entries: list[Entry], tree: FileTree | None) -> list[Entry]:
    """Directories the base already has keep the base's mode and owner: no entry for them."""
    if tree is None:
        return entries
    return [e for e in entries if not (e.kind == "dir" and tree.is_dir(e.path))]


def _check_runnable(
    target: _Target, entrypoint: str, base: BaseImage | None, tree: FileTree, strict: bool, reporter: Reporter
) -> None:
    for problem in runcheck.problems(target.info, entrypoint, tree, target.platform.os):
        if base is None and target.info.format == "elf":
            problem += (
                ". A FROM-scratch image has no loader or libraries: link it statically "
                "(e.g. CGO_ENABLED=0, -static, musl) or build on a base that has them (--from)"
            )
        if strict:
            raise RunCheckError(problem)
        reporter.warn(problem)


def _created_by(plan: _Plan, holds: str, entrypoint: str) -> str:
    if holds == "files":
        return f"zeroimage build: ADD {len(plan.files)} files"
    return f"zeroimage build: COPY {plan.target.program.path.name} {entrypoint}"


def _config(
    spec: BuildSpec, plan: _Plan, layers: list[tuple[MadeLayer, str]], entrypoint: str, created: str
) -> ImageConfig:
    """The image's config: the base's (or scratch's), for the program's platform, with the new
    layers, the entrypoint and the requested changes."""
    base = plan.base
    platform = base.platform if base else plan.target.platform
    config = base.config if base else ImageConfig.scratch(platform)
    config = config.with_platform(platform if base is None else _keep_os_details(base.config.platform, platform))
    for layer, created_by in layers:
        config = config.with_layer(layer.built.diff_id, created, created_by)
    return apply_changes(config.with_entrypoint([entrypoint]).with_created(created), spec.config, plan.tree)


def _keep_os_details(base: Platform, chosen: Platform) -> Platform:
    """The platform of the base entry, with os.version/os.features of the base config."""
    return Platform(
        os=chosen.os,
        architecture=chosen.architecture,
        variant=chosen.variant,
        os_version=chosen.os_version or base.os_version,
        os_features=chosen.os_features or base.os_features,
    )


def _base_name(location: Location | None) -> str:
    if location is None:
        return ""
    if location.reference is not None and location.transport == "docker":
        return str(location.reference)
    return str(location)
