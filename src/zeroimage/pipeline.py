"""The build pipeline, start to end, and nothing else:

BuildOptions → check every output against every input → read each program's platform
          → make the first program's layer, and meanwhile resolve the base, list it and plan
            each platform's image (:mod:`zeroimage.plan`), checking that its program will run
          → make the other new layers (each once) → derive config + manifest (+ index)
            in each format the outputs need → hand each output its graph
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from zeroimage import runcheck
from zeroimage.attachments import Attacher, Checksums, PlatformFacts, checksum_of
from zeroimage.cancel import Cancellation, Worker
from zeroimage.customize import ConfigChanges, apply_changes, history_of, user_ids
from zeroimage.elf import BinaryInfo, inspect_binary
from zeroimage.errors import InputError, PlatformError, RunCheckError, UsageError, ZeroimageError
from zeroimage.essentials import add_entries, combine_adds, essential_entries
from zeroimage.files import atomic_write
from zeroimage.image import (
    Attachments,
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
from zeroimage.layers.entries import Entry, file_entry, modes_notice, shown
from zeroimage.layers.producer import LayerProducer, MadeLayer, Origin
from zeroimage.layers.reuse import RemoteLayer, ReusableLayers, prove
from zeroimage.layers.tar import tar_size
from zeroimage.oci import Descriptor, ImageConfig, Manifest, Platform, parse_document, rfc3339
from zeroimage.options import MAX_EPOCH, BuildOptions, ProgramRequest
from zeroimage.plan import (
    DEFAULT_PATH,
    Member,
    entrypoint_of,
    files_layer,
    image_platform,
    into_directory,
    place,
    program_layer,
)
from zeroimage.platform import variant_older
from zeroimage.progress import NullReporter, Reporter
from zeroimage.rootfs import FileTree, ListingCache, base_tree
from zeroimage.store import BlobStore, CorruptBlob, default_cache_dir
from zeroimage.transports import Location, TransportOptions, open_sinks, open_source
from zeroimage.transports.locations import Inputs, check_outputs, hinted

if TYPE_CHECKING:
    from zeroimage import sbom
    from zeroimage.signing import SigningKey


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
    #: What was attached (signatures, SBOMs, provenance), as referrers list them: each artifact's
    #: descriptor with its artifactType; :attr:`subjects` says which manifest each speaks of.
    attachments: tuple[Descriptor, ...] = ()
    subjects: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return self.root.digest


@dataclass(frozen=True)
class _Plan:
    """One platform's image before its layers are made."""

    member: Member
    base: BaseImage | None
    tree: FileTree
    entrypoint: str
    program: tuple[Entry, ...]  # the program's layer
    files: tuple[Entry, ...]  # the extra files' layer (empty: none)
    files_by: str  # what made the extra files, for the history
    base_packages: sbom.BaseContents | None = None  # what the base holds, for an SBOM


#: Makes the sinks of a build's destinations (the transports', unless a caller brings its own).
OpenSinks = Callable[[Sequence[Location], TransportOptions], Sequence[Sink]]


def build(options: BuildOptions, reporter: Reporter | None = None, open_outputs: OpenSinks = open_sinks) -> BuildResult:
    """Run the whole build and write every output. Prints nothing; warnings go to ``reporter``.
    ``open_outputs`` makes a sink of each destination (tests bring sinks of their own)."""
    reporter = reporter or NullReporter()
    _check_request(options, reporter)
    key = _signing_key(options)  # a wrong password or key is said before any work
    policy = options.target
    infos = [inspect_binary(p.path) for p in options.requests]
    epoch = options.source_date_epoch
    layer_options = replace(options.layer, mtime=epoch or 0)
    owner = options.chown or (0, 0)
    added = [(f"--add {source}:{dest}", add_entries(source, dest, *owner)) for source, dest in options.add]
    created = rfc3339(epoch if epoch is not None else _newest_mtime(options, added))
    transport = TransportOptions(mtime=epoch or 0, insecure_registries=options.insecure_registry, pull=options.pull)
    sinks = open_outputs(options.destinations, transport)
    _say_what_carries_no_attachments(options, sinks, reporter)

    with ExitStack() as stack:
        stack.callback(transport.close)
        checksums = _checksums(options, added)
        if checksums is not None:
            stack.callback(checksums.stop)
        for sink in sinks:
            stack.callback(sink.discard)  # after a failure: no half-written output stays behind
        store = stack.enter_context(_store(options.use_cache))
        # Local outputs keep new layers in the store: an unchanged rebuild copies them from there.
        keep = any(s.needs_layer_files for s in sinks)
        reusable = None if keep else _reusable_layers(options, sinks, transport, reporter)
        if reusable is not None:
            stack.callback(reusable.close)
        producer = LayerProducer(store, layer_options, reporter, lambda: _taps(sinks, reporter), keep, reusable)
        stack.enter_context(hinted(options.source))
        source = (
            stack.enter_context(_opened(options.source, replace(transport, store=store))) if options.source else None
        )
        members = _members(options, infos, source, reporter)
        for member in members:
            policy.check_platform(member.platform)
        # The first program's layer does not wait for the base: it is made from what it would be
        # if the base changed nothing (no directory at its path, parents 0755 and root's), and
        # made again if the plan says otherwise — unless the target wants every check passed
        # before anything is made.
        first = None
        if policy.makes_layers_early:
            first = _Background(producer, _program_guess(options, members[0]), members[0])
            stack.callback(first.stop)
        listings = ListingCache(store)
        plans = [
            _plan(options, member, _base(source, options.source, member), added, listings, reporter)
            for member in members
        ]
        _check_plans(options, plans, layer_options)
        images = _images(options, plans, producer, first, sinks, created)
        for graph in images.graphs.values():
            policy.check_result(graph.root)
        attacher = _attachments(options, key, plans, images, checksums, created, reporter)
        sbom_files = _sbom_files(options, images.platforms) if options.sbom_file is not None else []
        if attacher is not None:
            attacher.begin(images.graphs.values())
            stack.callback(attacher.stop)
        written = _write_all(sinks, options.format, images.graphs, reporter, attacher)
        root = images.graphs[images.primary].root
        if attacher is not None and sbom_files:
            _write_sbom_files(sbom_files, attacher.sboms(images.graphs[images.primary]))
    if options.digest_file is not None:
        with atomic_write(options.digest_file) as out:
            out.write(root.digest.encode() + b"\n")
    base = str(options.source) if options.source is not None else None
    attached = attacher.referrers(images.graphs[images.primary]) if attacher is not None else []
    return BuildResult(
        root=root,
        platforms=images.platforms,
        outputs=tuple(written),
        base=base,
        attachments=tuple(artifact.descriptor for artifact in attached),
        subjects=tuple(artifact.subject.digest for artifact in attached),
    )


# -- before any work -----------------------------------------------------------------------------


def _check_request(options: BuildOptions, reporter: Reporter) -> None:
    """Everything the request alone decides: refused before a byte is read or written."""
    # --sbom-file's folder now; its names, which {platform} makes, once the platforms are known
    sbom_file = [(f"--sbom-file {options.sbom_file}", options.sbom_file)] if options.sbom_file is not None else []
    check_outputs(options.destinations, options.digest_file, _inputs(options), sys.stdout.isatty(), sbom_file)
    _check_single_platform_outputs(options)
    _check_one_entrypoint(options)
    if options.chown is not None and not options.add:
        reporter.warn("--chown sets the owner of the files from --add, and there is no --add: it does nothing")
    if (notice := modes_notice()) is not None:
        reporter.warn(notice)


def _inputs(options: BuildOptions) -> Inputs:
    """What the build reads from the local disk, which nothing it writes may overwrite."""
    programs = [request.path for request in options.requests]
    return Inputs(programs, [source for source, _ in options.add], options.source)


def _check_single_platform_outputs(options: BuildOptions) -> None:
    """docker-archive and Docker Engine outputs hold one platform: say so before any work."""
    single = [o for o in options.destinations if o.transport in ("docker-archive", "docker-daemon")]
    if single and len(options.requests) > 1:
        raise UsageError(
            f"{single[0]} holds one platform, but this build has {len(options.requests)} programs: build one "
            "image per platform for Docker (one program per build), or write all platforms at once with "
            "-o oci-archive:PATH or --push"
        )


def _check_one_entrypoint(options: BuildOptions) -> None:
    names = sorted({p.path.name for p in options.requests})
    if len(names) > 1 and (options.entrypoint_path is None or options.entrypoint_path.endswith("/")):
        raise UsageError(
            f"the programs have different names ({', '.join(names)}): "
            "choose one path in the image with --entrypoint-path"
        )


def _newest_mtime(options: BuildOptions, added: Sequence[tuple[str, list[Entry]]]) -> int:
    """The default ``created``: the newest modification time among the programs and the added
    files, so that unchanged inputs give the same image (``SOURCE_DATE_EPOCH`` overrides it)."""
    paths = [p.path for p in options.requests] + [e.source for _, entries in added for e in entries if e.source]
    newest = 0
    for path in paths:
        try:
            mtime = int(os.stat(path).st_mtime)
        except OSError:
            continue  # reported where the file is read
        if mtime > MAX_EPOCH:
            raise InputError(
                f"{path} was last modified after the year 9999, which an image's time cannot say: "
                "set SOURCE_DATE_EPOCH (e.g. to $(git log -1 --format=%ct)), or touch it"
            )
        newest = max(newest, mtime)
    return newest


def _members(
    options: BuildOptions, infos: Sequence[BinaryInfo], source: Source | None, reporter: Reporter
) -> list[Member]:
    """Each program's platform: ``--platform``, else its ELF header; a program that is not ELF
    takes the base's platform when the base has one, else it must be named."""
    members: list[Member] = []
    for program, info in zip(options.requests, infos, strict=True):
        detected = info.platform
        given = program.platform
        if given is not None:
            if detected is not None and (detected.architecture != given.architecture or given.os != "linux"):
                raise PlatformError(f"--platform {given} contradicts {program.path}, an ELF binary for {detected}")
            if detected is not None and variant_older(given, detected):
                problem = (
                    f"--platform {given} is older than {program.path} needs: its ELF header says {detected.variant}"
                )
                if options.strict:
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
        members.append(Member(str(program.path), program.path.name, info, platform))
    seen: dict[str, str] = {}
    for member in members:
        key = str(member.platform)
        if key in seen:
            raise UsageError(f"{seen[key]} and {member.path} are both for {key}: one binary per platform")
        seen[key] = member.path
    return members


def _base_platform(program: ProgramRequest, info: BinaryInfo, source: Source | None) -> Platform:
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


def _program_guess(options: BuildOptions, member: Member) -> tuple[Entry, ...]:
    """The first program's layer as it is when the base changes nothing about it."""
    empty = FileTree()
    entrypoint = entrypoint_of(options.entrypoint_path, member.name, empty)
    program, _ = options.target.adjust([file_entry(Path(member.path), entrypoint)], entrypoint)
    return program_layer(program[0], empty)


def _base(source: Source | None, location: Location | None, member: Member) -> BaseImage | None:
    if source is None:
        return None
    return load_base(source, member.platform, _base_name(location), str(location))


def _plan(
    options: BuildOptions,
    member: Member,
    base: BaseImage | None,
    added: Sequence[tuple[str, list[Entry]]],
    listings: ListingCache,
    reporter: Reporter,
) -> _Plan:
    policy = options.target
    if base is not None:
        policy.check_base(base)  # from the manifest, before any layer is read
    tree = base_tree(base.layers, listings) if base is not None else FileTree()
    base_packages = None
    if options.sbom is not None and base is not None:
        from zeroimage.sbom import read_base  # only for an SBOM: it is not light

        base_packages = read_base(tree)
    entrypoint = entrypoint_of(options.entrypoint_path, member.name, tree)
    (program_at,) = place([Entry(entrypoint, "file", 0)], tree)  # where it lands, the image's links followed
    essentials = essential_entries(options.essentials, base=tree if base is not None else None, reporter=reporter)
    groups = ([(f"--with {','.join(options.essentials)}", essentials)] if essentials else []) + [
        (name, into_directory(entries, tree)) for name, entries in added
    ]
    # Collisions are judged where the entries land: two paths may be one through a base's link.
    landed = [(name, place(entries, tree)) for name, entries in groups]
    extras, adjusted = policy.adjust(combine_adds(landed, [program_at.path]), entrypoint)
    files = list(files_layer(extras, tree))
    tree.add_entries(files)
    user = _user(options.config, base, tree, reporter)
    by = [name for name, _ in groups]
    workdir = options.workdir
    if workdir is not None and not tree.is_dir(workdir):
        # As BuildKit's WORKDIR: the directory is made, 0755, owned by the --user if one is given.
        uid, gid = user if options.user is not None and user is not None else (0, 0)
        have = {f.path for f in files}
        made = [e for e in files_layer([Entry(workdir, "dir", 0o755, uid=uid, gid=gid)], tree) if e.path not in have]
        files += made
        tree.add_entries(made)
        by.append(f"WORKDIR {workdir}")
    (entry,), adjusted_program = policy.adjust([file_entry(Path(member.path), entrypoint)], entrypoint)
    program = program_layer(entry, tree)
    tree.add_entries(program)
    if adjusted or adjusted_program:
        reporter.notice(policy.adjusted(adjusted_program + adjusted))
    user = policy.runs_as or user
    problems = _runnable_problems(member, entrypoint, base, tree, user)
    problems += policy.check_plan(Path(member.path), member.info, entrypoint, tree)
    for problem in problems:
        if options.strict:
            raise RunCheckError(problem)
        reporter.warn(problem)
    return _Plan(member, base, tree, entrypoint, program, tuple(files), f"ADD {'; '.join(by)}", base_packages)


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


def _runnable_problems(
    member: Member, entrypoint: str, base: BaseImage | None, tree: FileTree, user: tuple[int, int] | None
) -> list[str]:
    """Why the program could not start in the image (its loader, libraries, interpreter, mode)."""
    problems = []
    for problem in runcheck.problems(member.info, entrypoint, tree, member.platform.os, user=user):
        if base is None and problem.startswith(f"{entrypoint} is dynamically linked"):
            problem += (
                ". A FROM-scratch image has no loader or libraries: link it statically "
                "(e.g. CGO_ENABLED=0, -static, musl) or build on a base that has them (--from)"
            )
        problems.append(problem)
    return problems


def _check_plans(options: BuildOptions, plans: Sequence[_Plan], layer_options: LayerOptions) -> None:
    """What only the plans tell: one entrypoint for all platforms, and the target's size limit
    (known before anything is uploaded)."""
    entrypoints = sorted({plan.entrypoint for plan in plans})
    if len(entrypoints) > 1:
        raise UsageError(
            f"the programs would go to {', '.join(entrypoints)}: choose one path in the image with "
            "--entrypoint-path PATH (naming the file, not its directory)"
        )
    for plan in plans:
        new = sum(tar_size(entries, layer_options.mtime) for entries in (plan.program, plan.files) if entries)
        options.target.check_size(plan.tree.layers_size + new)


def _config(options: BuildOptions, plan: _Plan, layers: Sequence[tuple[str, str]], created: str) -> ImageConfig:
    """The image's config: the base's (or scratch's, with Docker's default PATH), for the
    program's platform, with the new layers, the entrypoint and the requested changes, each
    recorded in the history as ``docker history`` shows a Dockerfile's."""
    base = plan.base
    platform = image_platform(plan.member.platform, base.config.platform if base else None)
    if base is None:
        config = ImageConfig.scratch(platform).with_container(Env=[f"PATH={DEFAULT_PATH}"])
    else:
        config = base.config.with_platform(platform)
    for diff_id, created_by in layers:
        config = config.with_layer(diff_id, created, created_by, comment="zeroimage")
    changes = options.config
    config = apply_changes(config.with_entrypoint([plan.entrypoint]).with_created(created), changes, plan.tree)
    for created_by in history_of(changes, plan.entrypoint):
        config = config.with_history(created, created_by, comment="zeroimage")
    return config


def _what(member: Member, program: Sequence[Entry]) -> str:
    return f"{member.name} ({member.platform}) as {program[-1].path}"


# -- making and writing --------------------------------------------------------------------------


def _reusable_layers(
    options: BuildOptions, sinks: Sequence[Sink], transport: TransportOptions, reporter: Reporter
) -> ReusableLayers | None:
    """For a build that only pushes: the layers of the images its outputs hold already (a
    registry's, under the tags it pushes to) and of the ``--cache-from`` images, asked for from
    now on, so that a layer already there is neither compressed nor uploaded (None when there is
    nothing to ask)."""
    sources = [source for sink in sinks for source in sink.layer_sources()]
    sources += [
        open_source(Location("docker", reference=ref), replace(transport, pull="always")) for ref in options.cache_from
    ]
    if not sources:
        return None
    return ReusableLayers(sources, reporter)


def _formats(options: BuildOptions, sinks: Sequence[Sink]) -> list[ImageFormat]:
    """The formats the outputs need: OCI archives and layouts are OCI whatever ``--format``."""
    needed = dict.fromkeys(sink.fixed_format or options.format for sink in sinks)
    return list(needed) or [options.format]


@dataclass(frozen=True)
class _Images:
    """The image in each format the outputs need (one graph each), the format results speak of,
    each platform's result, and the new layers, in the order made."""

    graphs: dict[ImageFormat, ImageGraph]
    primary: ImageFormat
    platforms: tuple[PlatformResult, ...]
    made: tuple[MadeLayer, ...]


def _images(
    options: BuildOptions,
    plans: Sequence[_Plan],
    producer: LayerProducer,
    first: _Background | None,
    sinks: Sequence[Sink],
    created: str,
) -> _Images:
    """Each plan's layers made, its config and manifest derived in every format the outputs need,
    and the platforms joined in an index when there are several."""
    made: list[MadeLayer] = []
    images: dict[ImageFormat, list[ImageGraph]] = {fmt: [] for fmt in _formats(options, sinks)}
    primary: ImageFormat = options.format if options.format in images else next(iter(images))
    annotations = dict(options.annotations)
    results = []
    for index, plan in enumerate(plans):
        program, files = _make_layers(plan, producer, first if index == 0 else None)
        made += [program, *([files] if files else [])]
        layers = [(files, "files", plan.files_by)] if files else []
        layers.append((program, "program", f"COPY {plan.member.name} {plan.entrypoint}"))
        config = _config(options, plan, [(m.built.diff_id, by) for m, _, by in layers], created)
        new = [NewLayer(producer.blob(m), m.built.diff_id) for m, _, _ in layers]
        for fmt, graphs in images.items():
            graphs.append(append(plan.base, new, config, fmt, annotations))
        results.append(_platform_result(plan, config, images[primary][-1].root, layers))
    order = tuple(dict.fromkeys(m.built.descriptor.digest for m in made))
    joined = {fmt: replace(index_of(graphs, fmt, annotations), new=order) for fmt, graphs in images.items()}
    return _Images(joined, primary, tuple(results), tuple(made))


def _write_all(
    sinks: Sequence[Sink],
    fmt: ImageFormat,
    graphs: dict[ImageFormat, ImageGraph],
    reporter: Reporter,
    attachments: Attachments | None,
) -> list[WriteResult]:
    """Hand each sink its graph (and the build's attachments, to a sink that takes them). A
    stored layer found corrupt while it is copied has been removed from the store: the sink's
    write is done once more, and the layer's blob makes it again."""
    written: list[WriteResult] = []
    for sink in sinks:
        graph = graphs[sink.fixed_format or fmt]
        reporter.info(f"writing {sink.description}")
        attached = attachments if sink.takes_attachments else None
        try:
            written += sink.write(graph, reporter, attached)
        except CorruptBlob:  # the blob's opener says so, and makes it again
            written += sink.write(graph, reporter, attached)  # a failed write undid itself
    return written


# -- what the build attaches: signatures, SBOMs, provenance ----------------------------------------


def _attachments(
    options: BuildOptions,
    key: SigningKey | None,
    plans: Sequence[_Plan],
    images: _Images,
    checksums: Checksums | None,
    created: str,
    reporter: Reporter,
) -> Attacher | None:
    """What the build attaches to the image, when it is asked to sign or describe it (made while
    the outputs take the image: see :meth:`Attacher.begin`). A layer reused from a registry is
    proved first, before any output is written."""
    if key is None and options.sbom is None:
        return None
    if key is not None:
        _prove_reused(images.made, reporter)  # before anything is written: a lie sends nothing

    def facts() -> dict[str, PlatformFacts]:
        return {
            str(result.platform): _facts(options, plan, result, checksums, reporter)
            for plan, result in zip(plans, images.platforms, strict=True)
        }

    return _attacher(options, key, facts, created)


def _signing_key(options: BuildOptions) -> SigningKey | None:
    """The key of --sign-key, its password from COSIGN_PASSWORD: loaded before any work, so that
    a wrong password or an unsupported key is said before anything is made or sent."""
    if options.sign_key is None:
        return None
    from zeroimage.signing import load_signing_key

    return load_signing_key(options.sign_key, os.environ.get("COSIGN_PASSWORD"))


def _say_what_carries_no_attachments(options: BuildOptions, sinks: Sequence[Sink], reporter: Reporter) -> None:
    asked = [name for name, on in (("signatures", options.sign_key), ("SBOMs", options.sbom)) if on]
    without = [sink.description for sink in sinks if not sink.takes_attachments]
    if asked and without:
        reporter.warn(
            f"{', '.join(without)} carr{'ies' if len(without) == 1 else 'y'} no {' or '.join(asked)}: Docker's "
            "formats have no place for them (pushes and OCI archives and layouts keep them)"
        )


def _checksums(options: BuildOptions, added: Sequence[tuple[str, list[Entry]]]) -> Checksums | None:
    """The programs' and added files' checksums, begun now if an SBOM or provenance names them."""
    if options.sbom is None and not options.provenance:
        return None
    wanted: dict[Path, tuple[str, ...]] = {request.path: ("sha256",) for request in options.requests}
    for _, entries in added:
        for entry in entries:
            if entry.source is not None and entry.kind == "file":
                wanted.setdefault(entry.source, _file_algorithms(options))
    return Checksums(wanted)


def _file_algorithms(options: BuildOptions) -> tuple[str, ...]:
    """What an added file's checksums are: SPDX wants SHA-1 beside SHA-256 of every file (its
    programs are packages, whose checksums are free: a large binary is not read twice over)."""
    return ("sha1", "sha256") if options.sbom == "spdx" else ("sha256",)


def _facts(
    options: BuildOptions, plan: _Plan, result: PlatformResult, checksums: Checksums | None, reporter: Reporter
) -> PlatformFacts:
    """What one platform's image holds, for its SBOM and provenance; what a program or the base
    says of itself that cannot be read is a warning (the SBOM says so too)."""
    from zeroimage import sbom

    def file(entry: Entry) -> sbom.File:
        if entry.data is not None:
            found = checksum_of(entry.data, _file_algorithms(options))
        else:
            assert entry.source is not None and checksums is not None
            found = checksums.of(entry.source)
        return sbom.File(entry.path, found.size, found.digests)

    path = Path(plan.member.path)
    (entry,) = [e for e in plan.program if e.source is not None]
    contents = sbom.read_program(path) if options.sbom is not None else sbom.ProgramContents()
    for warning in contents.warnings:
        reporter.warn(f"SBOM of {result.platform}: program {shown(path)}: {warning}")
    for warning in plan.base_packages.warnings if plan.base_packages else ():
        reporter.warn(f"SBOM of {result.platform}: {warning}")
    programs = (sbom.Program(file(entry), contents),) if checksums is not None else ()
    files = tuple(file(e) for e in plan.files if e.kind == "file") if checksums is not None else ()
    base = None
    if plan.base is not None:
        reference = options.source.reference if options.source is not None and options.source.is_registry else None
        base = sbom.BaseImage(
            name=plan.base.name,
            digest=plan.base.descriptor.digest,
            contents=plan.base_packages or sbom.BaseContents(),
            repository=reference.name if reference is not None else "",
            tag=reference.tag or "" if reference is not None else "",
        )
    return PlatformFacts(result.platform, programs, files, base)


def _attacher(
    options: BuildOptions, key: SigningKey | None, facts: Callable[[], dict[str, PlatformFacts]], created: str
) -> Attacher:
    """What the build attaches, named as the image is: its first push's repository, else its
    program's name — the same for every output, so that an archive and a push carry the very
    same artifacts."""
    push = next((o.reference for o in options.destinations if o.is_registry and o.reference is not None), None)
    name = push.name if push is not None else options.requests[0].path.name
    return Attacher(
        name=name,
        created=created,
        facts_of=facts,
        key=key,
        legacy_signatures=options.signature_format in ("legacy", "both"),
        bundles=options.signature_format in ("bundle", "both"),
        sbom=options.sbom,
        provenance=_parameters(options) if options.provenance else None,
        environment=os.environ,
        repository=push.name if push is not None else "",
        tag=push.tag or "" if push is not None else "",
    )


def _parameters(options: BuildOptions) -> dict[str, object]:
    """The build's request, as provenance records it: what was asked for, in the image's terms
    (programs by name, files by where they land), never the builder's own directories."""
    config = options.config
    chosen: dict[str, object] = {
        "programs": [request.path.name for request in options.requests],
        "platforms": [str(request.platform) for request in options.requests if request.platform is not None],
        "base": _base_name(options.source) or ("local" if options.source is not None else "scratch"),
        "entrypointPath": options.entrypoint_path,
        "env": [f"{k}={v}" for k, v in config.env],
        "labels": dict(config.labels),
        "annotations": dict(config.annotations),
        "workdir": config.workdir,
        "user": config.user,
        "cmd": list(config.cmd),
        "expose": list(config.expose),
        "stopSignal": config.stop_signal,
        "add": [dest for _, dest in options.add],
        "with": list(options.essentials),
        "target": options.target.name,
        "format": options.format,
        "compression": options.compression,
        "sourceDateEpoch": options.source_date_epoch,
    }
    return {key: value for key, value in chosen.items() if value not in (None, [], {}, "")}


def _prove_reused(made: Sequence[MadeLayer], reporter: Reporter) -> None:
    """A signature vouches for every layer under the digest it signs: a layer reused from a
    registry, compressed by someone else, is read whole and proved to be what its diff_id says."""
    for layer in made:
        if layer.origin == "registry" and layer.remote is not None:
            reporter.info(f"proving the reused layer {layer.built.descriptor.digest} before signing")
            prove(RemoteLayer(layer.remote, layer.reused_from), layer.built.diff_id)


def _sbom_files(options: BuildOptions, platforms: Sequence[PlatformResult]) -> list[tuple[Platform, Path]]:
    """``--sbom-file``: each platform's SBOM's path, ``{platform}`` in the template naming it,
    checked as every output is — before any output is written: it never overwrites a program,
    an input or another output."""
    assert options.sbom_file is not None
    template = str(options.sbom_file)
    files = [(p.platform, Path(template.replace("{platform}", str(p.platform).replace("/", "-")))) for p in platforms]
    named = [(f"--sbom-file {path}", path) for _, path in files]
    check_outputs(options.destinations, options.digest_file, _inputs(options), sys.stdout.isatty(), named)
    return files


def _write_sbom_files(files: Sequence[tuple[Platform, Path]], documents: Sequence[tuple[Platform, bytes]]) -> None:
    made = {str(platform): document for platform, document in documents}
    for platform, path in files:
        with atomic_write(path) as out:
            out.write(made[str(platform)])


class _Background:
    """The first program's layer, made while the base is resolved, listed and checked. A failure
    of either side stops the build; :meth:`stop` cancels the layer (if the build fails first,
    or the plan turns out to need another layer)."""

    def __init__(self, producer: LayerProducer, entries: tuple[Entry, ...], member: Member) -> None:
        self.entries = entries
        self.cancel = Cancellation()
        self._made: MadeLayer | None = None
        self._failure: BaseException | None = None
        self._worker = Worker(lambda: self._run(producer, member), "first-layer")
        self._worker.start()

    def _run(self, producer: LayerProducer, member: Member) -> None:
        try:
            self._made = producer.make(self.entries, _what(member, self.entries), self.cancel, member.platform)
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
        program = producer.make(plan.program, _what(plan.member, plan.program), None, plan.member.platform)
    if not plan.files:
        return program, None
    return program, producer.make(plan.files, f"{len(plan.files)} added files", None, plan.member.platform)


def _platform_result(
    plan: _Plan, config: ImageConfig, manifest: Descriptor, layers: Sequence[tuple[MadeLayer, str, str]]
) -> PlatformResult:
    return PlatformResult(
        platform=config.platform,
        manifest=manifest,
        program=Path(plan.member.path),
        entrypoint=plan.entrypoint,
        binary=plan.member.info,
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
    """The base's name as the image records it: a registry reference, which means the same on
    every machine (as BuildKit records it); a local archive or layout has no such name — its
    path is the builder's, and would make the same build differ between two directories."""
    if location is None or location.reference is None or location.transport != "docker":
        return ""
    return str(location.reference)
