"""Where images are read from and written to, as skopeo names them, parsed into a :class:`Location`,
and the checks every output passes before a build does any work.

    docker://REF                      a registry (a bare REF means this for --from and --push)
    oci:DIR[:TAG]                     an OCI layout directory
    oci-archive:PATH[:TAG]            an OCI layout in a tar (a bare PATH means this for -o)
    docker-archive:PATH[:NAME:TAG]    what ``docker save`` writes / ``docker load`` reads
    docker-daemon:NAME:TAG            a running Docker Engine (output only)

As in skopeo, the path ends at the first ``:`` after the transport name; a file whose name has a
colon is written ``./name:x.tar``. ``-`` as an archive's path is standard output. A source given
without a transport that names an existing file or directory is opened as what it is (an OCI
archive, a docker-archive, or an OCI layout), not looked up in a registry.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from zeroimage.errors import InputError, InvalidReference, OutputError, RegistryError, UsageError
from zeroimage.layers.entries import MAX_PATH, shown
from zeroimage.layers.walk import walk
from zeroimage.reference import Reference, parse_reference

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "docker-daemon")
STDOUT = Path("-")
_TRANSPORT_LIKE = re.compile(r"[a-z][a-z0-9-]*")

#: The tag of ``oci:DIR:TAG`` and ``oci-archive:PATH:TAG``: the image-spec's grammar of
#: ``org.opencontainers.image.ref.name`` (annotations.md), which skopeo and umoci check before
#: they open a layout by name — so that every tag written here opens in both. ``:``, ``@``, ``/``
#: and ``+`` are in it (``oci:DIR:example.com/app:v1`` is a tag, as the path ends at the first
#: ``:``); ``..``, ``__``, ``---``, white space and control characters are not.
_OCI_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_OCI_REF_NAME = re.compile(rf"{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*", re.ASCII)
#: The longest tag an OCI layout takes: room for any Docker reference with a sha256 digest
#: (a 255-character name, a 128-character tag, ``@sha256:`` and 64 digits: 455), no more.
MAX_OCI_TAG = 512


@dataclass(frozen=True)
class Location:
    transport: str
    path: Path | None = None
    tag: str | None = None
    reference: Reference | None = None
    #: Given without a transport name (``app.tar``, ``alpine``): a registry error then says
    #: which transports the user may have meant.
    bare: bool = False

    def __str__(self) -> str:
        if self.transport == "docker":
            return f"docker://{self.reference}"
        if self.transport == "docker-daemon":
            return f"docker-daemon:{self.tag}"
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")

    @property
    def is_registry(self) -> bool:
        return self.transport == "docker"

    @property
    def is_stdout(self) -> bool:
        return self.path == STDOUT


def parse_location(text: str, default: str) -> Location:
    """Parse ``text``; a string with no known transport prefix uses ``default``.

    Refused (InvalidReference, a usage error, naming the part that is wrong): a NUL or a lone
    surrogate anywhere (:func:`_check_text`), a path longer than
    :data:`~zeroimage.layers.entries.MAX_PATH` bytes, an OCI tag outside the image-spec's
    grammar or longer than :data:`MAX_OCI_TAG` (:func:`check_oci_tag`), a docker-archive or
    docker-daemon NAME:TAG that is not a reference by Docker's grammar or names a digest."""
    _check_text(text)
    return _parse_location(text, default)


def _parse_location(text: str, default: str) -> Location:
    """:func:`parse_location` of a ``text`` already checked by :func:`_check_text`."""
    transport, sep, rest = text.partition(":")
    bare = False
    if text.startswith("docker://"):
        transport, rest = "docker", text[len("docker://") :]
    elif not sep or transport not in TRANSPORTS:
        transport, rest, bare = default, text, True
    if not rest:
        raise InvalidReference(f"invalid location {text[:200]!r}: nothing after '{transport}:'")
    if transport == "docker":
        return Location("docker", reference=parse_reference(rest), bare=bare)
    if transport == "docker-daemon":
        reference = _docker_name(text, transport, rest)
        return Location("docker-daemon", tag=str(reference), reference=reference)
    path, _, tag = rest.partition(":")
    if transport == "docker-archive" and tag:
        reference = _docker_name(text, transport, tag)
        return Location(transport, path=_path(text, path), tag=str(reference), reference=reference, bare=bare)
    if tag:
        check_oci_tag(tag, f"invalid location {text[:200]!r}")
    return Location(transport, path=_path(text, path), tag=tag or None, bare=bare)


def check_oci_tag(tag: str, context: str) -> None:
    """Refuse (InvalidReference, after ``context``) a tag an OCI layout cannot hold by the
    image-spec's grammar, which skopeo and umoci enforce: letters and digits, joined by one of
    ``. _ - : @ +`` or by ``--``, in components joined by ``/``; at most :data:`MAX_OCI_TAG`."""
    if len(tag) > MAX_OCI_TAG:
        raise InvalidReference(f"{context}: the tag is {len(tag)} characters long, more than {MAX_OCI_TAG}")
    if not _OCI_REF_NAME.fullmatch(tag):
        raise InvalidReference(
            f"{context}: the tag {tag[:100]!r} is not an OCI reference name: letters and digits, separated "
            "by one of . _ - : @ + or by --, in components joined by / (e.g. v1.2, stable, example.com/app:v1)"
        )


def _docker_name(text: str, transport: str, name: str) -> Reference:
    """The NAME[:TAG] of a docker-archive or docker-daemon location: by Docker's grammar
    (:func:`parse_reference`), without a digest (neither Docker nor skopeo takes one there)."""
    reference = parse_reference(name)
    if reference.digest:
        raise InvalidReference(f"invalid location {text[:200]!r}: {transport}: takes NAME[:TAG], not a digest")
    return reference


def _text_problem(text: str) -> str | None:
    """What no file name, and so no location, may hold (None: nothing): a NUL (the system
    would end the name there), or a character the file system cannot encode (a lone surrogate,
    which only Python code can pass: the command line's arguments always encode)."""
    if "\0" in text:
        return "it contains a NUL character"
    try:
        os.fsencode(text)
    except UnicodeError:
        return "it holds a character no file name can (a lone surrogate)"
    return None


def _path_problem(path: str) -> str | None:
    """:func:`_text_problem`, or a path longer than :data:`~zeroimage.layers.entries.MAX_PATH`
    bytes (Linux's PATH_MAX, less its NUL)."""
    if problem := _text_problem(path):
        return problem
    return f"its path is longer than {MAX_PATH} bytes" if len(os.fsencode(path)) > MAX_PATH else None


def _check_text(text: str) -> None:
    """Refuse a location's text holding what no location may (:func:`_text_problem`),
    whatever its transport."""
    if problem := _text_problem(text):
        raise InvalidReference(f"invalid location {text[:200]!r}: {problem}")


def _path(text: str, path: str) -> Path:
    """The path of the location ``text`` (checked by :func:`_check_text`): refused when empty
    or too long."""
    if not path:
        raise InvalidReference(f"invalid location {text[:200]!r}: no path")
    if problem := _path_problem(path):
        raise InvalidReference(f"invalid location {text[:200]!r}: {problem}")
    return Path(path)


def archive_location(path: str | os.PathLike[str]) -> Location:
    """The OCI archive at ``path``, taken as a path whatever it holds (``--from-archive PATH``,
    the default ``./PROGRAM.tar``): never split at a colon, as ``oci-archive:PATH`` text is."""
    text = os.fspath(path)
    _check_text(text)
    return Location("oci-archive", path=_path(text, text), bare=True)


def parse_output(text: str) -> Location:
    """An ``-o`` destination: a known transport, or a path (an OCI archive). Refused, with the
    fix: an unknown transport name (``oci-archiv:x.tar``), and what is plainly a registry
    reference (``127.0.0.1:5000/app:v1``, ``ghcr.io/me/app:v1``), which belongs to ``--push``."""
    _check_text(text)
    prefix, sep, _ = text.partition(":")
    local = text.startswith(("./", "../", "/")) or not sep and "/" not in text
    if not local and not text.startswith("docker://") and prefix not in TRANSPORTS:
        if _looks_like_registry(text):
            raise UsageError(
                f"-o {text[:200]!r} looks like a registry reference: push it with --push {text} "
                f"(for a file of that name, write ./{text})"
            )
        if sep and _TRANSPORT_LIKE.fullmatch(prefix):
            close = difflib.get_close_matches(prefix, TRANSPORTS, n=1)
            hint = f"did you mean {close[0]}:? " if close else ""
            raise UsageError(
                f"-o {text[:200]!r}: unknown transport {prefix[:100]!r} ({hint}transports are {', '.join(TRANSPORTS)}; "
                f"for a file whose name has a colon, write ./{text})"
            )
    if local:
        return Location("oci-archive", path=_path(text, text), bare=True)  # ./name:x.tar is a file of that name
    return _parse_location(text, "oci-archive")


def _looks_like_registry(text: str) -> bool:
    """A reference whose first component names a registry host (``.``, ``:`` or localhost) and
    whose would-be parent directory does not exist here."""
    first, slash, _ = text.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return False
    try:
        parse_reference(text)
    except InvalidReference:
        return False
    return not Path(text).parent.is_dir()


def parse_source(text: str) -> Location:
    """A ``--from`` or ``inspect`` source. Without a transport name, an existing local file or
    directory is opened as what its content says it is; anything else is a registry reference."""
    _check_text(text)
    prefix = text.partition(":")[0]
    if not text.startswith("docker://") and prefix not in TRANSPORTS and os.path.exists(text):
        path = Path(text)
        if path.is_dir():
            return Location("oci", path=path, bare=True)
        return Location(_archive_kind(path), path=path, bare=True)  # (a FIFO or a device is refused there)
    try:
        return _parse_location(text, "docker")
    except InvalidReference:
        if prefix not in TRANSPORTS and _looks_like_a_path(text):
            raise InputError(f"{shown(text)}: no such file or directory") from None
        raise


def _looks_like_a_path(text: str) -> bool:
    """What no image reference is, but a path plainly is: ``/…``, ``./…``, ``../…``, ``~/…``,
    or a name holding a backslash."""
    return text.startswith(("/", "./", "../", "~")) or "\\" in text


def _archive_kind(path: Path) -> str:
    """``oci-archive`` for a tar holding an OCI layout (Docker 25's ``docker save`` writes one
    beside its manifest.json), ``docker-archive`` for a tar with only a manifest.json."""
    from zeroimage.transports.storage import TarFiles  # headers only, bounded: safe on any file

    files = TarFiles(path)
    if files.size("index.json") is None and files.size("manifest.json") is not None:
        return "docker-archive"
    return "oci-archive"


@contextmanager
def hinted(location: Location | None) -> Iterator[None]:
    """A registry error about a source given without a transport name says which local
    transports the user may have meant (``--from app.tar`` is looked up on Docker Hub)."""
    try:
        yield
    except RegistryError as exc:
        hint = source_hint(location) if location is not None else ""
        if hint and hint not in exc.message:
            exc.message += hint  # the same error (its type and fields kept), told more
            exc.args = (exc.message,)
        raise


def source_hint(location: Location) -> str:
    """What to add to a registry error about a source given without a transport name."""
    if not location.bare or location.reference is None:
        return ""
    return (
        f"; {location.reference} was looked up in a registry — for a local file, say oci-archive:PATH or "
        "docker-archive:PATH, for a layout directory oci:DIR"
    )


# -- outputs, checked before any work ----------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What a build reads from the local disk, which no output may overwrite."""

    programs: Sequence[Path] = ()
    added: Sequence[Path] = ()  # --add sources: files, or trees whose every file is an input
    base: Location | None = None


def check_outputs(
    outputs: Sequence[Location],
    digest_file: Path | None,
    inputs: Inputs,
    terminal: bool,
    others: Sequence[tuple[str, Path]] = (),
) -> None:
    """Refuse, before any work, every output that cannot be written or that would destroy an
    input: a program, an ``--add`` source (or a file inside an added tree), the base archive or
    layout, or another output. ``terminal``: standard output is a terminal. ``others``: more
    files the build writes (how to name each, its path), checked as ``digest_file`` is."""
    _check_names(inputs, digest_file)
    taken: dict[str, str] = {}
    read = _input_paths(inputs)
    files = [(str(o), o.path) for o in outputs if o.path is not None and o.transport != "oci" and not o.is_stdout]
    if digest_file is not None:
        files.append((f"--digest-file {digest_file}", digest_file))
    files.extend(others)
    layouts = _layouts(outputs, inputs)
    for name, path in files:
        real = _real(path)
        if real in read:
            raise UsageError(f"{name} would overwrite {read[real]}, an input of this build; write it elsewhere")
        inside = next((what for where, what in layouts.items() if real.startswith(where + os.sep)), None)
        if inside is not None:
            raise UsageError(f"{name} would overwrite a file of {inside}; write it elsewhere")
        if real in taken:
            raise UsageError(f"{name} and {taken[real]} are the same file; give each output its own")
        taken[real] = name
        _check_file(name, path)
    for output in outputs:
        if output.transport == "oci" and output.path is not None:
            _check_layout(output, inputs, read)
    to_stdout = [o for o in outputs if o.is_stdout]
    if len(to_stdout) > 1:
        raise UsageError("only one output can go to standard output")
    if to_stdout and terminal:
        raise UsageError(f"refusing to write {to_stdout[0]} to a terminal: redirect it (| docker load) or name a file")


def _check_names(inputs: Inputs, digest_file: Path | None) -> None:
    """Refuse a local path that no file can have (:func:`_path_problem`): the system calls that
    would be asked for it refuse it only once work has begun."""
    named = [("the program", p) for p in inputs.programs] + [("--add", a) for a in inputs.added]
    if inputs.base is not None and inputs.base.path is not None:  # (--from-archive is taken as it is)
        named.append(("the base", inputs.base.path))
    for what, path in [*named, *([("--digest-file", digest_file)] if digest_file is not None else [])]:
        if problem := _path_problem(os.fspath(path)):
            raise UsageError(f"{what} {os.fspath(path)[:200]!r}: {problem}")


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _input_paths(inputs: Inputs) -> dict[str, str]:
    """Every local input file, by real path, with how to name it."""
    found = {_real(p): f"the program {p}" for p in inputs.programs}
    for source in inputs.added:
        if source.is_dir() and not source.is_symlink():
            # Below a real directory, no symlink is entered: a file's real path is the tree's
            # real path and the file's path below it (one realpath per tree, not per file).
            real = _real(source)
            for directory, relative, _, names in walk(source, f"--add {shown(source)}"):
                for name in names:
                    path = Path(directory, name)
                    where = _real(path) if path.is_symlink() else os.path.join(real, relative, name)
                    found.setdefault(os.path.normpath(where), f"{shown(path)} (added with --add)")
        else:
            found.setdefault(_real(source), f"{source} (added with --add)")
    base = inputs.base
    if base is not None and base.path is not None and base.transport in ("oci-archive", "docker-archive"):
        found.setdefault(_real(base.path), f"the base {base}")
    return found


def _layouts(outputs: Sequence[Location], inputs: Inputs) -> dict[str, str]:
    """The layout directories of the build (the base's, the outputs'), by real path: no file
    output may be written inside one."""
    found = {_real(o.path): f"the layout {o}" for o in outputs if o.transport == "oci" and o.path is not None}
    base = inputs.base
    if base is not None and base.transport == "oci" and base.path is not None:
        found[_real(base.path)] = f"the base layout {base}"
    return found


def _check_file(name: str, path: Path) -> None:
    parent = path.parent
    if path.is_dir():
        raise UsageError(f"{name}: {path} is a directory; name a file")
    if not parent.is_dir():
        raise OutputError(f"cannot write {name}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {name}: directory {parent} is not writable")
    if path.exists() and not path.is_file():
        raise OutputError(f"cannot write {name}: {path} is not a regular file")


def _check_layout(output: Location, inputs: Inputs, read: dict[str, str]) -> None:
    assert output.path is not None
    path, real = output.path, _real(output.path)
    base = inputs.base
    same = base is not None and base.transport == "oci" and base.path is not None and _real(base.path) == real
    if same and base is not None and (base.tag or "latest") == (output.tag or "latest"):
        raise UsageError(f"{output} would replace the base image {base}; give the output another tag")
    inside = [what for where, what in read.items() if where.startswith(real + os.sep)]
    if inside and not (path / "index.json").is_file():
        raise UsageError(f"{output}: {path} holds {inside[0]}; write the layout elsewhere")
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{output}: {path} is not a directory")
        if not (path / "index.json").exists() and any(path.iterdir()):
            raise OutputError(f"cannot write {output}: {path} is not empty and is not an OCI layout (no index.json)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {output}: {path} is not writable")
    elif not path.parent.is_dir():
        raise OutputError(f"cannot write {output}: directory {path.parent} does not exist")
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {output}: directory {path.parent} is not writable")
