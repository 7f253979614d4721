"""The build pipeline, start to end, and nothing else:

BuildSpec → pick each binary's platform → make the first program's layer, and meanwhile
            resolve the base, list it and check that each program will run in it
          → make the other new layers (each once) → derive config + manifest (+ index)
          → hand the graph to every sink
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zeroimage import runcheck
from zeroimage.cache import BlobStore, default_cache_dir
from zeroimage.cancel import Worker
from zeroimage.customize import ConfigChanges, apply_changes
from zeroimage.elf import BinaryInfo, inspect_binary
from zeroimage.errors import InputError, PlatformError, RunCheckError, UsageError
from zeroimage.essentials import add_entries, essential_entries
from zeroimage.files import Readable
from zeroimage.image import BaseImage, Blob, ImageGraph, LayerTap, Sink, Source, WriteResult, load_base
from zeroimage.layer import BuiltLayer, Cancel, Entry, LayerOptions, clean_image_path, file_entry
from zeroimage.oci import (
    BASE_DIGEST,
    BASE_NAME,
    CREATED,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    rfc3339,
    sha256_digest,
)
from zeroimage.oci import mediatypes as mt
from zeroimage.platform import host_platform
from zeroimage.progress import NullReporter, Reporter
from zeroimage.reference import Reference
from zeroimage.rootfs import FileTree, ListingCache, base_tree
from zeroimage.transports import Location, TransportOptions, open_sink, open_source


@dataclass(frozen=True)
class BinarySpec:
    """A program to put in the image, and the platform it is for when given explicitly."""

    path: Path
    platform: Platform | None = None


@dataclass(frozen=True)
class BuildSpec:
    """Everything a build needs to know; the CLI's flags land here and nowhere else."""

    binaries: tuple[BinarySpec, ...]
    base: Location | None = None
    outputs: tuple[Location, ...] = ()
    entrypoint_path: str | None = None
    image_format: str = "oci"
    layer: LayerOptions = field(default_factory=LayerOptions)
    source_date_epoch: int | None = None
    use_cache: bool = True
    insecure_registries: tuple[str, ...] = ()
    config: ConfigChanges = field(default_factory=ConfigChanges)
    adds: tuple[tuple[Path, str], ...] = ()
    chown: tuple[int, int] = (0, 0)
    essentials: tuple[str, ...] = ()
    strict: bool = False


@dataclass(frozen=True)
class PlatformResult:
    platform: Platform
    manifest: Descriptor
    layer: Descriptor
    diff_id: str
    layer_cached: bool
    binary: BinaryInfo
    base: Descriptor | None
    extra_layer: Descriptor | None = None


@dataclass(frozen=True)
class BuildResult:
    root: Descriptor
    platforms: tuple[PlatformResult, ...]
    outputs: tuple[WriteResult, ...]
    base: str | None


@dataclass(frozen=True)
class _Target:
    spec: BinarySpec
    info: BinaryInfo
    platform: Platform


def build(spec: BuildSpec, reporter: Reporter | None = None) -> BuildResult:
    """Run the whole build and write every output. Prints nothing; warnings go to ``reporter``."""
    reporter = reporter or NullReporter()
    if not spec.binaries:
        raise UsageError("no program to put in the image")
    if spec.image_format not in ("oci", "docker"):
        raise UsageError(f"unknown image format {spec.image_format!r}: use oci or docker")
    targets = _targets(spec)
    entrypoint = _entrypoint_path(spec)
    epoch = spec.source_date_epoch
    created = rfc3339(epoch if epoch is not None else int(time.time()))
    options = TransportOptions(mtime=epoch or 0, insecure_registries=spec.insecure_registries)
    layer_options = LayerOptions(
        compression=spec.layer.compression, level=spec.layer.level, mtime=epoch or 0, threads=spec.layer.threads
    )
    if spec.image_format == "docker" and mt.to_docker(layer_options.media_type) is None:
        raise UsageError(f"--format docker cannot carry {layer_options.compression} layers; use gzip")
    sinks = _open_sinks(spec.outputs, options)

    extras = [e for source, dest in spec.adds for e in add_entries(source, dest, *spec.chown)]
    extras = essential_entries(spec.essentials) + extras

    with ExitStack() as stack:
        for sink in sinks:
            if hasattr(sink, "discard"):
                stack.push(_discard_on_failure(sink))
            elif hasattr(sink, "close"):
                stack.callback(sink.close)  # after a failure: no half-written output stays behind
        store = stack.enter_context(_store(spec.use_cache))
        # Local outputs keep new layers in the cache: an unchanged rebuild copies them from there.
        keep = any(getattr(sink, "needs_layer_files", True) for sink in sinks)
        binaries = [file_entry(t.spec.path, entrypoint) for t in targets]
        reporter.info(f"adding {targets[0].spec.path} as {entrypoint} for {targets[0].platform}")
        first = _Background(
            lambda cancel: store.layer([binaries[0]], layer_options, reporter, _taps(sinks, reporter), keep, cancel)
        )
        stack.callback(first.stop)
        source = stack.enter_context(_opened(spec.base, options)) if spec.base else None
        bases = [load_base(source, t.platform) if source else None for t in targets]
        listings = ListingCache(store.root)
        documents: dict[str, bytes] = {}
        blobs: dict[str, Blob] = {}
        plans = []
        for target, base, binary in zip(targets, bases, binaries, strict=True):
            tree = _filesystem(target, base, bool(extras), spec, listings)
            new_extras = _without_existing_dirs(_with_parents(extras, tree), tree)
            if tree is not None:
                tree.add_entries([*new_extras, binary])
                _check_runnable(target, entrypoint, base, tree, spec.strict, reporter)
            plans.append((target, base, tree, new_extras, binary))
        results = []
        new: dict[str, None] = {}  # the layers made, in the order made
        for index, (target, base, tree, new_extras, binary) in enumerate(plans):
            if index == 0:
                layer, cached = first.result()
            else:
                reporter.info(f"adding {target.spec.path} as {entrypoint} for {target.platform}")
                layer, cached = store.layer([binary], layer_options, reporter, _taps(sinks, reporter), keep)
            if cached:
                reporter.info(f"layer {layer.descriptor.digest} unchanged (cache)")
            new[layer.descriptor.digest] = None
            new_layers = []
            extra_layer = None
            if new_extras:
                extra_layer, _ = store.layer(new_extras, layer_options, reporter, _taps(sinks, reporter), keep)
                new_layers.append((extra_layer, f"zeroimage build: ADD {len(new_extras)} files", new_extras))
            new_layers.append((layer, f"zeroimage build: COPY {target.spec.path.name} {entrypoint}", [binary]))
            for built, _, entries in new_layers:
                blobs[built.descriptor.digest] = _layer_blob(store, built, entries, layer_options, reporter)
                new[built.descriptor.digest] = None
            manifest_desc = _add_image(documents, blobs, spec, target, base, new_layers, entrypoint, created, tree)
            results.append(
                PlatformResult(
                    platform=manifest_desc.platform or target.platform,
                    manifest=manifest_desc,
                    layer=layer.descriptor,
                    diff_id=layer.diff_id,
                    layer_cached=cached,
                    binary=target.info,
                    base=base.descriptor if base else None,
                    extra_layer=extra_layer.descriptor if extra_layer else None,
                )
            )
        graph = ImageGraph(_root(documents, spec, [r.manifest for r in results]), documents, blobs, tuple(new))
        written = []
        for sink in sinks:
            reporter.info(f"writing {sink.description}")
            result = sink.write(graph, reporter)
            written.extend(result if isinstance(result, list) else [result])
    return BuildResult(
        root=graph.root,
        platforms=tuple(results),
        outputs=tuple(written),
        base=str(spec.base) if spec.base else None,
    )


class _Background:
    """The first program's layer, made while the base is resolved, listed and checked: it does
    not depend on the base, and on a registry base that takes round trips (and, the first time,
    the base's layers). A failure of either side stops the build; :meth:`stop` cancels the layer
    if the build fails first."""

    def __init__(self, make: Callable[[Cancel], tuple[BuiltLayer, bool]]) -> None:
        self.cancel = Cancel()
        self._made: tuple[BuiltLayer, bool] | None = None
        self._failure: BaseException | None = None
        self._worker = Worker(lambda: self._run(make), "first-layer")
        self._worker.start()

    def _run(self, make: Callable[[Cancel], tuple[BuiltLayer, bool]]) -> None:
        try:
            self._made = make(self.cancel)
        except BaseException as exc:  # noqa: BLE001 - raised in the build's thread by result()
            self._failure = exc

    def result(self) -> tuple[BuiltLayer, bool]:
        self._worker.wait()
        if self._failure is not None:
            raise self._failure
        assert self._made is not None
        return self._made

    def stop(self) -> None:
        if not self._worker.done:
            self.cancel.set()
            self._worker.wait()


def _taps(sinks: list[Sink], reporter: Reporter) -> list[LayerTap]:
    """Sinks that take a new layer while it is compressed (a registry uploads it once, to the
    first of its repositories; an archive file writes it in)."""
    return [sink.layer_tap(reporter) for sink in sinks if hasattr(sink, "layer_tap")]


def _open_sinks(outputs: tuple[Location, ...], options: TransportOptions) -> list[Any]:
    """A sink per output, except that the references of one registry share one RegistrySink."""
    references: dict[str, list[Reference]] = {}
    for location in outputs:
        if location.is_registry and location.reference is not None:
            references.setdefault(location.reference.registry, []).append(location.reference)
    sinks: list[Any] = []
    for location in outputs:
        reference = location.reference
        if location.is_registry and reference is not None:
            if reference.registry in references:
                from zeroimage.transports.registry import RegistrySink  # not for builds without a push

                sinks.append(RegistrySink(references.pop(reference.registry), options.insecure_registries))
        else:
            sinks.append(open_sink(location, options))
    return sinks


def _discard_on_failure(sink: Any) -> Callable[..., None]:
    def exit_(kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            sink.close()
        else:
            sink.discard()

    return exit_


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
    for binary in spec.binaries:
        info = inspect_binary(binary.path)
        detected = info.platform
        if binary.platform is not None:
            platform = binary.platform
            if detected is not None and (detected.architecture != platform.architecture or platform.os != "linux"):
                raise PlatformError(f"--platform {platform} contradicts {binary.path}, an ELF binary for {detected}")
        elif detected is not None:
            platform = detected
        elif info.format in ("elf",):
            raise PlatformError(f"cannot tell the architecture of {binary.path} from its ELF header; give --platform")
        elif len(spec.binaries) == 1:
            platform = host_platform()
        else:
            raise PlatformError(f"{binary.path} is not an ELF binary: give its platform with --platform OS/ARCH=PATH")
        targets.append(_Target(binary, info, platform))
    seen: dict[str, Path] = {}
    for target in targets:
        key = str(target.platform)
        if key in seen:
            raise UsageError(f"{seen[key]} and {target.spec.path} are both for {key}: one binary per platform")
        seen[key] = target.spec.path
    return targets


def _entrypoint_path(spec: BuildSpec) -> str:
    if spec.entrypoint_path:
        return clean_image_path(spec.entrypoint_path)
    names = {b.path.name for b in spec.binaries}
    if len(names) > 1:
        raise UsageError(
            f"the binaries have different names ({', '.join(sorted(names))}): "
            "choose one path in the image with --entrypoint-path"
        )
    return clean_image_path("/" + names.pop())


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


def _layer_descriptor(desc: Descriptor, image_format: str) -> Descriptor:
    if image_format == "docker":
        docker = mt.to_docker(desc.media_type)
        if docker is None:
            raise UsageError(f"--format docker cannot carry a layer of type {desc.media_type}")
        return desc.with_changes(media_type=docker)
    return desc.with_changes(media_type=mt.to_oci(desc.media_type))


def _add_image(
    documents: dict[str, bytes],
    blobs: dict[str, Blob],
    spec: BuildSpec,
    target: _Target,
    base: BaseImage | None,
    new_layers: list[tuple[BuiltLayer, str, list[Entry]]],
    entrypoint: str,
    created: str,
    tree: FileTree | None,
) -> Descriptor:
    docker = spec.image_format == "docker"
    platform = base.platform if base else target.platform
    config = base.config if base else ImageConfig.scratch(platform)
    config = config.with_platform(platform if base is None else _keep_os_details(base.config.platform, platform))
    for layer, created_by, _ in new_layers:
        config = config.with_layer(layer.diff_id, created, created_by)
    config = apply_changes(config.with_entrypoint([entrypoint]).with_created(created), spec.config, tree)
    config_bytes = config.to_bytes()
    config_desc = Descriptor(
        mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes)
    )
    documents[config_desc.digest] = config_bytes

    layers: list[Descriptor] = []
    for blob in base.layers if base else ():
        layers.append(_layer_descriptor(blob.descriptor, spec.image_format))
        blobs.setdefault(blob.descriptor.digest, blob)
    for layer, _, _ in new_layers:
        new_layer = _layer_descriptor(layer.descriptor, spec.image_format)
        layers.append(new_layer)
        blobs[new_layer.digest] = replace(blobs[new_layer.digest], descriptor=new_layer)

    annotations: dict[str, str] = {}
    if not docker:
        annotations[CREATED] = created
        if base is not None and spec.base is not None:
            annotations[BASE_NAME] = _base_name(spec.base)
            annotations[BASE_DIGEST] = base.descriptor.digest
        annotations.update(spec.config.annotations)
    manifest = Manifest(
        config=config_desc,
        layers=tuple(layers),
        media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        annotations=annotations,
    )
    raw = manifest.to_bytes()
    desc = Descriptor(manifest.media_type, sha256_digest(raw), len(raw), platform=config.platform)
    documents[desc.digest] = raw
    return desc


def _layer_blob(
    store: BlobStore, layer: BuiltLayer, entries: list[Entry], options: LayerOptions, reporter: Reporter
) -> Blob:
    """A new layer as a blob: its file in the store; or, when a push kept only its identity and
    a sink still needs its bytes (the streamed upload failed, or the registry lacks an unchanged
    layer), the same bytes made again — compression is deterministic, and the digest checked."""
    desc = layer.descriptor
    path = store.path(desc.digest)

    def opener() -> Readable:
        if not store.has(desc):
            again, _ = store.layer(entries, options, reporter, keep=True)
            if again.descriptor.digest != desc.digest:
                raise InputError(f"{', '.join(e.path for e in entries)} changed during the build; try again")
        return open(path, "rb")

    return Blob(desc, opener, path=path if store.has(desc) else None)


def _keep_os_details(base: Platform, chosen: Platform) -> Platform:
    """The platform of the base entry, with os.version/os.features of the base config."""
    return Platform(
        os=chosen.os,
        architecture=chosen.architecture,
        variant=chosen.variant,
        os_version=chosen.os_version or base.os_version,
        os_features=chosen.os_features or base.os_features,
    )


def _base_name(location: Location) -> str:
    if location.reference is not None and location.transport == "docker":
        return str(location.reference)
    return str(location)


def _root(documents: dict[str, bytes], spec: BuildSpec, manifests: list[Descriptor]) -> Descriptor:
    if len(manifests) == 1:
        return manifests[0]
    docker = spec.image_format == "docker"
    index = Index(
        manifests=tuple(manifests),
        media_type=mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX,
        annotations=dict(spec.config.annotations),
    )
    raw = index.to_bytes()
    desc = Descriptor(index.media_type, sha256_digest(raw), len(raw))
    documents[desc.digest] = raw
    return desc
