"""The options of a build, each declared once.

A field of :class:`BuildOptions` is one option: the type the build gets, its default, the flag
that sets it on the command line, its help, and the conversion that turns what a caller gives —
a command line's strings, or a Python caller's values — into what the build gets. The
``zeroimage build`` command (:mod:`zeroimage.cli`) and the keywords of :func:`zeroimage.build`
(:mod:`zeroimage.api`) are both made from these declarations, and :meth:`BuildOptions.parse` is
the one step that validates them. Adding an option is one field here, plus what it does.

What a caller may give an option is checked by its *kind* (a Python caller can pass anything; the
command line passes strings): one line naming the keyword for a wrong type, such as a ``str``
where a list is meant (``cmd="serve"`` would otherwise be five arguments). Values are then
converted by the option's own function, whose errors name the flag.

Conversions import what they need when they run, so that ``zeroimage --help`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zeroimage.errors import UsageError

if TYPE_CHECKING:
    from zeroimage.customize import ConfigChanges
    from zeroimage.image import ImageFormat
    from zeroimage.layers.compress import Compression, LayerOptions
    from zeroimage.oci import Platform
    from zeroimage.reference import Reference
    from zeroimage.targets import Target
    from zeroimage.transports import Location, PullPolicy

#: How an option's value is given: what a Python caller may pass, what the command line makes.
Kind = Literal["text", "path", "number", "switch", "texts", "paths", "pairs"]
#: Kinds given many times on the command line (a list in Python).
REPEATED: frozenset[Kind] = frozenset({"texts", "paths", "pairs"})

SbomFormat = Literal["spdx", "cyclonedx"]
SignatureFormat = Literal["bundle", "legacy", "both"]

_OPTION = "zeroimage.option"


@dataclass(frozen=True)
class Declared:
    """How one option is spelt and checked (the metadata of a :class:`BuildOptions` field)."""

    flags: tuple[str, ...]  # on the command line, e.g. ("-o", "--output"); () for Python only
    help: str
    kind: Kind
    metavar: str | None = None
    choices: tuple[str, ...] = ()  # the values it takes, checked before ``convert``
    #: What a Python caller may put in a list besides strings (``expose=[8080]``, ``add=[(src, dest)]``).
    items: tuple[type, ...] = ()
    convert: Callable[[Any], Any] | None = None
    #: Show the default in ``--help``.
    show_default: bool = False
    #: A Python caller may give one value where a list is meant (``zeroimage.build("./app")``).
    one: bool = False

    @property
    def accepts(self) -> str:
        """What a Python caller may pass, in words (for ``help(zeroimage.build)``)."""
        extra = " or ".join(t.__name__ for t in self.items)
        return {
            "text": "str" + (f" (one of {', '.join(self.choices)})" if self.choices else ""),
            "path": "str or os.PathLike",
            "number": "int",
            "switch": "bool",
            "texts": "list of str" + (f" or {extra}" if extra else ""),
            "paths": "list of str or os.PathLike",
            "pairs": "mapping of str to str, or list of 'KEY=VALUE' str",
        }[self.kind]


def option(
    *flags: str,
    help: str,  # noqa: A002 - click's name for it
    kind: Kind = "text",
    default: Any = None,
    metavar: str | None = None,
    choices: tuple[str, ...] = (),
    items: tuple[type, ...] = (),
    convert: Callable[[Any], Any] | None = None,
    show_default: bool = False,
    one: bool = False,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare an option: a dataclass field whose metadata says how it is given and checked
    (``factory`` makes a default that is not a plain value)."""
    declared = Declared(flags, help, kind, metavar, choices, items, convert, show_default, one)
    if factory is not None:
        return field(default_factory=factory, metadata={_OPTION: declared})
    return field(default=default, metadata={_OPTION: declared})


def declared(item: Field[Any]) -> Declared:
    value: Declared = item.metadata[_OPTION]
    return value


# -- conversions ---------------------------------------------------------------------------------
# Each takes what the kind's check leaves (a str, a Path, a tuple of them …) and gives what the
# build gets; a wrong value is a UsageError naming the flag.


def _source(value: str) -> Location:
    from zeroimage.transports import parse_source

    return parse_source(value)


def _archive(value: Path) -> Location:
    from zeroimage.transports import Location

    return Location("oci-archive", path=value)


def _platforms(values: tuple[str, ...]) -> tuple[tuple[Path | None, Platform], ...]:
    """``OS/ARCH[/VARIANT]`` (one program) or ``OS/ARCH[/VARIANT]=PATH`` entries."""
    from zeroimage.platform import parse_platform

    out: list[tuple[Path | None, Platform]] = []
    for value in values:
        text, sep, path = value.partition("=")
        if sep and not path:
            raise UsageError(f"--platform {value!r}: no program after '='; write OS/ARCH=PATH")
        out.append((Path(path) if sep else None, parse_platform(text)))
    return tuple(out)


def _outputs(values: tuple[str | Path, ...]) -> tuple[Location, ...]:
    """A str in ``-o``'s syntax (a transport name, or a path); a path object is an OCI archive's
    path, colons and all."""
    from zeroimage.transports import Location, parse_output

    return tuple(
        Location("oci-archive", path=value, bare=True) if isinstance(value, Path) else parse_output(value)
        for value in values
    )


def _pushes(values: tuple[str, ...]) -> tuple[Location, ...]:
    from zeroimage.transports import parse_location

    out = []
    for value in values:
        location = parse_location(value, "docker")
        if not location.is_registry:
            raise UsageError(f"--push takes a registry reference, not {value!r}; use -o for {location.transport}:")
        out.append(location)
    return tuple(out)


def _references(flag: str) -> Callable[[tuple[str, ...]], tuple[Reference, ...]]:
    def convert(values: tuple[str, ...]) -> tuple[Reference, ...]:
        from zeroimage.transports import parse_location

        out = []
        for value in values:
            location = parse_location(value, "docker")
            if location.reference is None or not location.is_registry:
                raise UsageError(f"{flag} takes a registry reference, not {value!r}")
            out.append(location.reference)
        return tuple(out)

    return convert


def _pairs(flag: str, env: bool = False) -> Callable[[tuple[str, ...]], tuple[tuple[str, str], ...]]:
    def convert(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        from zeroimage.customize import parse_pairs

        return parse_pairs(values, flag, env=env)

    return convert


def _workdir(value: str) -> str:
    from zeroimage.customize import parse_workdir

    return parse_workdir(value)


def _user(value: str) -> str:
    from zeroimage.customize import parse_user

    return parse_user(value)


def _ports(values: tuple[str | int, ...]) -> tuple[str, ...]:
    from zeroimage.customize import parse_port

    return tuple(parse_port(str(value)) for value in values)


def _signal(value: str) -> str:
    from zeroimage.customize import parse_signal

    return parse_signal(value)


def _adds(values: tuple[str | tuple[Any, ...], ...]) -> tuple[tuple[Path, str], ...]:
    from zeroimage.essentials import parse_add

    out = []
    for value in values:
        if isinstance(value, str):
            out.append(parse_add(value))
            continue
        if len(value) != 2 or not isinstance(value[0], str | os.PathLike) or not isinstance(value[1], str):
            raise UsageError(f"add: expected 'SRC:DEST' strings or (source path, destination) pairs, not {value!r}")
        source, dest = Path(path_value(value[0], "add")), text_value(value[1], "add")
        if not dest.startswith("/"):
            raise UsageError(f"add: the destination {dest[:80]!r} must be an absolute path in the image")
        out.append((source, dest))
    return tuple(out)


def _chown(value: str) -> tuple[int, int]:
    from zeroimage.essentials import parse_chown

    return parse_chown(value)


def _essentials(values: tuple[str, ...]) -> tuple[str, ...]:
    from zeroimage.essentials import parse_essentials

    return parse_essentials(values)


def _target(value: str) -> Target:
    from zeroimage.targets import target_named

    return target_named(value)


def _default_target() -> Target:
    from zeroimage.targets import ANYWHERE

    return ANYWHERE


def _epoch(value: int) -> int:
    if value < 0:
        raise UsageError(f"SOURCE_DATE_EPOCH must not be negative, not {value}")
    return _check_epoch(value, str(value))


# -- the options ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """Everything a build is asked to do, validated: made by :meth:`parse` from a command line's
    or a Python caller's values (or directly, from values of these types, in tests)."""

    programs: tuple[Path, ...] = option(
        help="The programs to put in the image, one per platform (their platforms read from their ELF headers).",
        kind="paths",
        default=(),
        one=True,
        convert=lambda values: tuple(Path(v) for v in values),
    )
    base: Location | None = option(
        "--from",
        metavar="SOURCE",
        help="Base image: REF, docker://REF, oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker-archive:PATH "
        "(an existing file or directory is opened as what it is). Default: FROM scratch.",
        convert=_source,
    )
    from_archive: Location | None = option(
        "--from-archive",
        metavar="PATH",
        kind="path",
        help="Base image from an OCI archive (same as --from oci-archive:PATH).",
        convert=_archive,
    )
    platform: tuple[tuple[Path | None, Platform], ...] = option(
        "--platform",
        metavar="OS/ARCH[/VARIANT][=PROGRAM]",
        kind="texts",
        default=(),
        help="Platform of the program when its ELF header cannot tell (default: from the header); "
        "OS/ARCH=PROGRAM for one of several programs. Repeatable.",
        convert=_platforms,
    )
    outputs: tuple[Location, ...] = option(
        "-o",
        "--output",
        metavar="DEST",
        kind="paths",
        default=(),
        help="Write the image: PATH or oci-archive:PATH[:TAG], oci:DIR[:TAG], docker-archive:PATH[:NAME:TAG], "
        "docker-daemon:NAME:TAG; - (or docker-archive:-) for standard output. Repeatable. "
        "Default: ./PROGRAM.tar unless --push is given.",
        convert=_outputs,
    )
    push: tuple[Location, ...] = option(
        "--push",
        metavar="REF",
        kind="texts",
        default=(),
        help="Push the image to a registry. Repeatable.",
        convert=_pushes,
    )
    entrypoint_path: str | None = option(
        "--entrypoint-path",
        metavar="PATH",
        help="Path of the program in the image (default: /NAME); a PATH ending in / or naming a directory "
        "of the base takes the program inside it, as COPY does.",
    )
    format: ImageFormat = option(
        "--format",
        choices=("oci", "docker"),
        default="oci",
        show_default=True,
        help="Media types of a push and of Docker outputs: OCI, or Docker v2s2 for registries that display "
        "OCI poorly (OCI archives and layouts are always OCI).",
    )
    compression: Compression = option(
        "--compression",
        choices=("gzip", "zstd", "none"),
        default="gzip",
        show_default=True,
        help="Compression of the new layers.",
    )
    compression_level: int | None = option(
        "--compression-level",
        metavar="N",
        kind="number",
        help="gzip 0-3 (ISA-L, default 1), zstd 1-19 (default 3).",
    )
    insecure_registry: tuple[str, ...] = option(
        "--insecure-registry",
        metavar="HOST[:PORT]",
        kind="texts",
        default=(),
        help="Allow plain HTTP to this registry when it does not speak TLS. Repeatable.",
    )
    env: tuple[tuple[str, str], ...] = option(
        "--env",
        metavar="KEY=VALUE",
        kind="pairs",
        default=(),
        help="Set an environment variable; $VAR and ${VAR} expand as ENV does ('PATH=/opt/bin:$PATH'). Repeatable.",
        convert=_pairs("--env", env=True),
    )
    labels: tuple[tuple[str, str], ...] = option(
        "--label",
        metavar="KEY=VALUE",
        kind="pairs",
        default=(),
        help="Set a config label. Repeatable.",
        convert=_pairs("--label"),
    )
    annotations: tuple[tuple[str, str], ...] = option(
        "--annotation",
        metavar="KEY=VALUE",
        kind="pairs",
        default=(),
        help="Set a manifest (and index) annotation. Repeatable.",
        convert=_pairs("--annotation"),
    )
    workdir: str | None = option(
        "--workdir",
        metavar="DIR",
        help="Working directory of the container (made if the base lacks it).",
        convert=_workdir,
    )
    user: str | None = option(
        "--user",
        metavar="USER[:GROUP]",
        help="User to run as; names are resolved in the image's /etc/passwd.",
        convert=_user,
    )
    cmd: tuple[str, ...] = option(
        "--cmd", metavar="ARG", kind="texts", default=(), help="Default argument after the entrypoint. Repeatable."
    )
    expose: tuple[str, ...] = option(
        "--expose",
        metavar="PORT[/PROTO]",
        kind="texts",
        items=(int,),
        default=(),
        help="Declare a port. Repeatable.",
        convert=_ports,
    )
    stop_signal: str | None = option(
        "--stop-signal", metavar="SIGNAL", help="Signal that stops the container (e.g. SIGINT).", convert=_signal
    )
    add: tuple[tuple[Path, str], ...] = option(
        "--add",
        metavar="SRC:DEST",
        kind="texts",
        items=(tuple,),
        default=(),
        help="Add a file or directory tree (in a layer of its own). Repeatable.",
        convert=_adds,
    )
    chown: tuple[int, int] | None = option(
        "--chown", metavar="UID[:GID]", help="Owner of the files from --add (default 0:0).", convert=_chown
    )
    essentials: tuple[str, ...] = option(
        "--with",
        metavar="LIST",
        kind="texts",
        default=(),
        help="Essentials for FROM-scratch images: ca-certs, tzdata, users, tmp, or all (comma-separated).",
        convert=_essentials,
    )
    target: Target = option(
        "--target",
        choices=("lambda",),
        factory=_default_target,
        help="Make and check the image for where it will run: lambda (AWS Lambda: one platform, gzip, "
        "files readable by its unprivileged user, at most 10 GiB).",
        convert=_target,
    )
    pull: PullPolicy = option(
        "--pull",
        choices=("always", "missing", "never"),
        default="missing",
        show_default=True,
        help="When to ask the registry for a base seen before: always; missing (one request resolves the tag, "
        "the rest comes from the cache); never (offline, from the cache alone).",
    )
    cache_from: tuple[Reference, ...] = option(
        "--cache-from",
        metavar="REF",
        kind="texts",
        default=(),
        help="An image whose layers a push may reuse, by content, instead of compressing and uploading them "
        "(the tags pushed to are always looked at). Repeatable.",
        convert=_references("--cache-from"),
    )
    strict: bool = option(
        "--strict",
        kind="switch",
        default=False,
        help="Fail, instead of warning, when the program could not start in the image.",
    )
    no_cache: bool = option(
        "--no-cache", kind="switch", default=False, help="Do not reuse or keep layers in the local cache."
    )
    digest_file: Path | None = option(
        "--digest-file", metavar="FILE", kind="path", help="Write the image digest to this file."
    )
    sbom: SbomFormat | None = option(
        "--sbom",
        choices=("spdx", "cyclonedx"),
        help="Attach a software bill of materials to each image manifest, as an OCI referrer: SPDX 2.3 or "
        "CycloneDX 1.6 JSON, read from the programs themselves (Go build info, cargo auditable's crate list), "
        "the files added and the base's package database.",
    )
    sbom_file: Path | None = option(
        "--sbom-file",
        metavar="PATH",
        kind="path",
        help="Also write the SBOM to PATH; for several platforms, PATH holds {platform} "
        "(e.g. sbom-{platform}.spdx.json: linux-arm64, linux-arm-v7).",
    )
    sign_key: Path | None = option(
        "--sign-key",
        metavar="KEY",
        kind="path",
        help="Sign the image (an index and each of its manifests) with this ECDSA P-256 private key: PEM "
        "(PKCS#8 or SEC1, encrypted or not) or cosign generate-key-pair's; its password from COSIGN_PASSWORD.",
    )
    signature_format: SignatureFormat = option(
        "--signature-format",
        choices=("bundle", "legacy", "both"),
        default="both",
        show_default=True,
        help="How signatures are stored: bundle (a Sigstore bundle as an OCI referrer, as cosign 3 does), "
        "legacy (cosign's sha256-<hex>.sig tag, which cosign 2 and Kyverno read), or both.",
    )
    provenance: bool = option(
        "--provenance",
        kind="switch",
        default=False,
        help="Attach SLSA v1 build provenance (the programs, files and base by digest, the build's parameters, "
        "the CI run that built it), signed with --sign-key.",
    )
    source_date_epoch: int | None = option(
        kind="number",
        help="The time of every file and of the image, in seconds since 1970 (default: the SOURCE_DATE_EPOCH "
        "environment variable, else 0 for files and the programs' newest modification time for the image).",
        convert=_epoch,
    )

    # -- the one validation step -----------------------------------------------------------------

    @classmethod
    def parse(cls, **given: Any) -> BuildOptions:
        """The options from what a caller gives: each value checked against its kind (a wrong type
        is a UsageError naming the keyword), converted (a wrong value names the flag), then the
        rules between options checked. Options not given keep their defaults."""
        known = {item.name: item for item in fields(cls)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}: the options are {', '.join(known)}")
        values: dict[str, Any] = {}
        for name, value in given.items():
            spec = declared(known[name])
            checked = _check_kind(value, name, spec)
            if spec.choices and checked is not None and checked not in spec.choices:
                flag = max(spec.flags, key=len) if spec.flags else name
                *most, last = spec.choices
                choose = f"choose {', '.join(most)} or {last}" if most else f"the one choice is {last}"
                raise UsageError(f"{flag} {checked!r}: {choose}")
            values[name] = spec.convert(checked) if spec.convert is not None and checked is not None else checked
        if values.get("source_date_epoch") is None:
            values["source_date_epoch"] = _environment_epoch()
        return cls(**values)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """The rules between options (each alone was checked by :meth:`parse`): options are valid
        from the moment they exist, however they were made."""
        if self.base is not None and self.from_archive is not None:
            raise UsageError("--from and --from-archive both name a base: give one")
        self.requests  # noqa: B018 - pairs the programs with their platforms, or says why not
        self.layer  # noqa: B018 - the compression level fits the compression
        if self.compression == "zstd":
            docker = [o for o in self.destinations if o.transport in ("docker-archive", "docker-daemon")]
            if self.format == "docker":
                raise UsageError("--format docker cannot carry zstd layers; use gzip")
            if docker:
                raise UsageError(
                    f"{docker[0]} cannot carry zstd layers: docker load (Docker Engine before 23, and the "
                    "docker-archive format) takes gzip; drop --compression zstd, or write an OCI output "
                    "(-o oci-archive:PATH, --push)"
                )
        if self.provenance and self.sign_key is None:
            raise UsageError("--provenance is a signed statement: give --sign-key KEY too")
        if self.sbom_file is not None:
            if self.sbom is None:
                raise UsageError("--sbom-file writes the SBOM: choose its format with --sbom spdx or --sbom cyclonedx")
            if len(self.requests) > 1 and "{platform}" not in str(self.sbom_file):
                raise UsageError(
                    f"--sbom-file {self.sbom_file}: this image has {len(self.requests)} platforms, each its own "
                    "SBOM: put {platform} in the path (e.g. sbom-{platform}.json)"
                )
        self.target.check_request(self)

    # -- what the build reads, made of several options --------------------------------------------

    @property
    def source(self) -> Location | None:
        """The base's location (``--from`` or ``--from-archive``), or None: FROM scratch."""
        return self.base or self.from_archive

    @cached_property
    def requests(self) -> tuple[ProgramRequest, ...]:
        """Each program and the platform it was given explicitly, if any."""
        return _pair_platforms(self.programs, self.platform)

    @property
    def destinations(self) -> tuple[Location, ...]:
        """Every output: ``-o`` and ``--push``, in that order; ``./PROGRAM.tar`` without either."""
        chosen = (*self.outputs, *self.push)
        if chosen or not self.requests:
            return chosen
        return _outputs((Path(f"{self.requests[0].path.name}.tar"),))

    @cached_property
    def layer(self) -> LayerOptions:
        from zeroimage.layers.compress import LayerOptions

        return LayerOptions(compression=self.compression, level=self.compression_level)

    @property
    def config(self) -> ConfigChanges:
        from zeroimage.customize import ConfigChanges

        return ConfigChanges(
            env=self.env,
            labels=self.labels,
            annotations=self.annotations,
            workdir=self.workdir,
            user=self.user,
            cmd=self.cmd,
            expose=self.expose,
            stop_signal=self.stop_signal,
        )

    @property
    def use_cache(self) -> bool:
        return not self.no_cache


@dataclass(frozen=True)
class ProgramRequest:
    """A program to put in the image, and the platform it is for when given explicitly."""

    path: Path
    platform: Platform | None = None


def options_fields() -> Iterator[tuple[str, Declared, Any]]:
    """Every option: its keyword, its declaration and its default."""
    for item in fields(BuildOptions):
        yield item.name, declared(item), None if item.default is MISSING else item.default


# -- checks of what a Python caller gives (the other API functions' too) ---------------------------


def text_value(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{name}: expected a str, not {_shown(value)}")
    if "\0" in value:
        raise UsageError(f"{name}: {value[:60]!r} holds a NUL character")
    return value


def path_value(value: object, name: str) -> str:
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise UsageError(f"{name}: expected a path (str or os.PathLike), not {_shown(value)}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise UsageError(f"{name}: expected a path (str or os.PathLike), not {_shown(value)}")
    return text_value(text, name)


def texts_value(value: object, name: str) -> tuple[str, ...]:
    """A list of str a Python caller gave as ``name`` (checked as :func:`text_value` checks each)."""
    return tuple(text_value(item, name) for item in _items(value, name, "str"))


def _items(value: object, name: str, what: str) -> list[object]:
    if isinstance(value, str | bytes | os.PathLike) or not isinstance(value, Sequence):
        raise UsageError(f"{name}: expected a list of {what}, not {_shown(value)}; write {name}=[...]")
    return list(value)


def _check_kind(value: object, name: str, spec: Declared) -> object:
    """``value`` as the option's kind takes it (str, Path, int, bool, or a tuple of them), or a
    UsageError naming the keyword."""
    if value is None:
        if spec.kind in REPEATED or spec.kind == "switch":
            raise UsageError(f"{name}: expected {spec.accepts}, not None")
        return None
    kind = spec.kind
    if kind == "text":
        return text_value(value, name)
    if kind == "path":
        return Path(path_value(value, name))
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name}: expected an int, not {_shown(value)}")
        return value
    if kind == "switch":
        if not isinstance(value, bool):
            raise UsageError(f"{name}: expected True or False, not {_shown(value)}")
        return value
    if kind == "paths":
        if spec.one and isinstance(value, str | os.PathLike):
            value = [value]
        # A str keeps its transport syntax (an output's "oci:DIR"); a path object is a path.
        return tuple(
            text_value(item, name) if isinstance(item, str) else Path(path_value(item, name))
            for item in _items(value, name, "paths")
        )
    if kind == "pairs":
        if isinstance(value, Mapping):
            pairs = []
            for key, item in value.items():
                pairs.append(f"{text_value(key, name)}={text_value(item, name)}")
            return tuple(pairs)
        return tuple(text_value(item, name) for item in _items(value, name, "'KEY=VALUE' strings (or a mapping)"))
    # texts
    out: list[object] = []
    for item in _items(value, name, "str"):
        if isinstance(item, str):
            out.append(text_value(item, name))
        elif spec.items and isinstance(item, spec.items) and not isinstance(item, bool):
            out.append(item)
        else:
            allowed = " or ".join(["str", *(t.__name__ for t in spec.items)])
            raise UsageError(f"{name}: expected a list of {allowed}, not one holding {_shown(item)}")
    return tuple(out)


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


# -- rules between options -----------------------------------------------------------------------


def _pair_platforms(
    programs: Sequence[Path], platforms: Sequence[tuple[Path | None, Platform]]
) -> tuple[ProgramRequest, ...]:
    """Pair each program with its explicit platform: ``OS/ARCH`` (one program) or
    ``OS/ARCH=PATH`` (any number; one file may serve several platforms, e.g. a script)."""
    bare = [platform for path, platform in platforms if path is None]
    explicit = [(path, platform) for path, platform in platforms if path is not None]
    if len(bare) > 1:
        shown = ", ".join(str(p) for p in bare)
        if len(programs) == 1 and not explicit:
            raise UsageError(
                f"--platform is given {len(bare)} times ({shown}) for one program: an image of several platforms "
                "takes one binary per platform (--platform OS/ARCH=PATH for each)"
            )
        raise UsageError(f"--platform {shown}: give each program its platform as --platform OS/ARCH[/VARIANT]=PATH")
    if bare and len(programs) > 1:
        raise UsageError("with several binaries, give each its platform as --platform OS/ARCH[/VARIANT]=PATH")
    named = {os.path.normpath(path) for path, _ in explicit}
    pairs = [ProgramRequest(p, bare[0] if bare else None) for p in programs if os.path.normpath(p) not in named]
    pairs += [ProgramRequest(path, platform) for path, platform in explicit]
    if not pairs:
        raise UsageError("no program given: zeroimage build [OPTIONS] PROGRAM")
    return tuple(pairs)


#: The latest SOURCE_DATE_EPOCH taken: the end of year 9999, the last an RFC 3339 time can say.
MAX_EPOCH = 253402300799


def _check_epoch(value: int, shown: str) -> int:
    if value > MAX_EPOCH:
        raise UsageError(
            f"SOURCE_DATE_EPOCH {shown[:40]} is after the year 9999, the last an image's time can say "
            "(it counts seconds since 1970, not milliseconds)"
        )
    return value


def _environment_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {value[:40]!r}")
    if len(value) > 20:
        return _check_epoch(MAX_EPOCH + 1, value)
    return _check_epoch(int(value), value)
