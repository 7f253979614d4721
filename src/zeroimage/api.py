"""The library's front door: everything the ``zeroimage`` command does, from Python.

:func:`build` takes every ``zeroimage build`` flag as a keyword, made from the one declaration of
the build's options (:mod:`zeroimage.options`): the long flag's name with ``-`` → ``_`` (``--from``
is ``base``, ``-o`` is ``outputs``, ``--with`` is ``essentials``, ``--label`` ``labels``,
``--annotation`` ``annotations``), a list for a repeatable flag, a mapping or a list of
``KEY=VALUE`` for ``env``, ``labels`` and ``annotations``, a ``str`` or ``pathlib.Path`` for a
path. :func:`inspect`, :func:`raw_manifest`, :func:`verify`, :func:`login`, :func:`logout` and
:func:`check_auth` are the other commands.

Nothing here prints, exits or installs a signal handler: errors are
:class:`~zeroimage.errors.ZeroimageError` subclasses, and progress goes to a reporter or a
callback.
"""

from __future__ import annotations

import inspect as _inspect
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeroimage.describe import Inspection
from zeroimage.errors import UsageError
from zeroimage.options import Declared, options_fields, path_value, text_value, texts_value
from zeroimage.pipeline import BuildResult
from zeroimage.progress import CallbackReporter, Event, Reporter
from zeroimage.reference import Reference

if TYPE_CHECKING:
    from zeroimage.image import Source
    from zeroimage.oci import Descriptor
    from zeroimage.signing.verification import Verification
    from zeroimage.store import BlobStore

PathLike = str | os.PathLike[str]


def build(
    programs: PathLike | Sequence[PathLike],
    *,
    reporter: Reporter | None = None,
    progress: Callable[[Event], None] | None = None,
    **options: Any,
) -> BuildResult:
    """Build an image holding ``programs`` (one per platform) and write it to every output.

    Without ``outputs`` or ``push``, the image goes to ``./PROGRAM.tar``. Warnings, steps and
    progress go to ``reporter`` (a :class:`~zeroimage.progress.Reporter`) or, one
    :class:`~zeroimage.progress.Event` at a time, to the function ``progress``; by default
    nowhere. A wrong type or value is a :class:`~zeroimage.errors.UsageError` naming the keyword.
    """
    from zeroimage.options import BuildOptions
    from zeroimage.pipeline import build as run

    if reporter is not None and progress is not None:
        raise UsageError("give a reporter or a progress function, not both")
    parsed = BuildOptions.parse(programs=programs, **options)
    return run(parsed, CallbackReporter(progress) if progress is not None else reporter)


def inspect(source: PathLike, *, insecure_registry: Sequence[str] = (), target: str | None = None) -> Inspection:
    """What is in the image at ``source`` (any ``--from`` form; a path opens as what it holds):
    its root document and, for each image under it, its platform, manifest and config — what
    ``zeroimage inspect --json`` prints is its :meth:`~zeroimage.describe.Inspection.to_json`.
    ``target="lambda"`` also says what AWS Lambda would refuse of it (``problems``; empty: nothing
    seen)."""
    from dataclasses import replace

    from zeroimage.describe import describe
    from zeroimage.rootfs import ListingCache
    from zeroimage.store import BlobStore, default_cache_dir
    from zeroimage.targets import target_named

    policy = target_named(text_value(target, "target")) if target is not None else None
    store = BlobStore(default_cache_dir()) if policy is not None else None
    with _opened(source, insecure_registry, store) as opened:
        info = describe(opened)
        if policy is None:
            return info
        assert store is not None
        problems = policy.problems(opened, ListingCache(store))
        return replace(info, target=policy.name, problems=tuple(problems))


def raw_manifest(source: PathLike, *, insecure_registry: Sequence[str] = ()) -> bytes:
    """The exact bytes of the top-level manifest or index at ``source`` (``inspect --raw``)."""
    with _opened(source, insecure_registry, None) as opened:
        return opened.document(opened.root())


def login(registry: str = "docker.io", *, username: str, password: str, insecure_registry: Sequence[str] = ()) -> str:
    """Check ``username`` and ``password`` (or token) against ``registry`` and store them as Docker
    does — through the configured credential helper, else in config.json (mode 0600). Nothing is
    stored when the registry refuses them. Returns where they were stored."""
    from zeroimage.reference import parse_registry
    from zeroimage.transports.registry import client_for
    from zeroimage.transports.registry.credentials import Credential, CredentialStore

    name = parse_registry(text_value(registry, "registry"))
    if not text_value(username, "username"):
        raise UsageError("no username")
    if not text_value(password, "password"):
        raise UsageError("the password is empty")
    credential = Credential(username=username, password=password)
    client = client_for(name, texts_value(insecure_registry, "insecure_registry"))
    try:
        client.set_credential(credential)
        client.login_check()
    finally:
        client.close()
    return CredentialStore().store(name, credential)


def logout(registry: str = "docker.io") -> bool:
    """Remove the stored credentials for ``registry``; False when there were none."""
    from zeroimage.reference import parse_registry
    from zeroimage.transports.registry.credentials import CredentialStore

    return CredentialStore().erase(parse_registry(text_value(registry, "registry")))


def check_auth(reference: str, *, insecure_registry: Sequence[str] = ()) -> Reference:
    """Check, without pushing anything, that the stored credentials may push to ``reference``'s
    repository (an upload session is started and cancelled); returns the reference. An
    :class:`~zeroimage.errors.AuthError` says why not."""
    from zeroimage.transports import parse_location
    from zeroimage.transports.registry import RegistrySink

    location = parse_location(text_value(reference, "reference"), "docker")
    if location.reference is None or not location.is_registry:
        raise UsageError(f"check-auth takes a registry reference, not {reference!r}")
    sink = RegistrySink([location.reference], texts_value(insecure_registry, "insecure_registry"))
    try:
        sink.check_push_access()
    finally:
        sink.discard()
    return location.reference


def verify(source: PathLike, *, key: PathLike, insecure_registry: Sequence[str] = ()) -> Verification:
    """Check, offline against the public ``key`` (cosign's ``cosign.pub``, or any PEM EC P-256
    public key), what is attached to the image at ``source``: its referrers (the Referrers API or
    the tag schema in a registry; the layout's own in an OCI archive or layout) and cosign's
    legacy ``sha256-<hex>.sig`` signature. ``.ok`` is whether a valid signature of the image
    itself by that key was found; ``.reason()`` says so, or why not, in one line;
    ``.attachments`` lists everything found (signatures, SBOMs, provenance) and what came of it."""
    from zeroimage.errors import InputError, NotFoundError
    from zeroimage.signing import SIMPLE_SIGNING_MEDIA_TYPE, load_verifying_key, signature_tag
    from zeroimage.signing.bundle import BUNDLE_MEDIA_TYPES
    from zeroimage.signing.verification import OTHER, SIGNATURE, Attachment, LegacyImage, Referrer, verify_attachments

    verifying = load_verifying_key(Path(path_value(key, "key")))
    with _opened(source, insecure_registry, None) as opened:
        root = opened.root()
        manifest = opened.document(root)
        budget = _Budget(MAX_VERIFIED_BYTES)
        referrers: list[Referrer] = []
        unread: list[Attachment] = []  # listed by someone, but gone or not what it says: one line each
        for desc in opened.referrers(root.digest)[:MAX_VERIFIED_REFERRERS]:
            try:
                raw = opened.document(desc)
                referrers.append(Referrer(desc.digest, raw, _blobs_of(opened, desc, raw, BUNDLE_MEDIA_TYPES, budget)))
            except (NotFoundError, InputError) as exc:
                unread.append(Attachment(OTHER, f"referrer {desc.digest}", "", False, f"cannot be read: {exc.message}"))
        legacy = None
        tag = signature_tag(root.digest)
        try:
            tagged = opened.tagged(tag)
            if tagged is not None:
                raw = opened.document(tagged)
                legacy = LegacyImage(raw, _blobs_of(opened, tagged, raw, {SIMPLE_SIGNING_MEDIA_TYPE}, budget))
        except (NotFoundError, InputError) as exc:
            unread.append(Attachment(SIGNATURE, tag, "legacy", False, f"cannot be read: {exc.message}"))
        return verify_attachments(
            root.digest, verifying, referrers=referrers, legacy=legacy, subject_manifest=manifest, unread=unread
        )


#: Referrers of one image that verify reads (each its manifest and its layers, bounded).
MAX_VERIFIED_REFERRERS = 64
#: What verify reads of signatures (bundles, legacy payloads) in all: a bundle made with a key is
#: a few kB. SBOMs and other documents are listed by their manifests, never read.
MAX_VERIFIED_BYTES = 16 * 1024 * 1024


class _Budget:
    """The bytes verify may still read."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def charge(self, size: int, what: str) -> None:
        from zeroimage.errors import InputError

        if size > self.left:
            raise InputError(f"{what}: verify reads at most {MAX_VERIFIED_BYTES} bytes of signatures in all")
        self.left -= size


def _blobs_of(
    source: Source, desc: Descriptor, raw: bytes, wanted: Collection[str], budget: _Budget
) -> dict[str, bytes]:
    """The layers of the artifact ``desc`` (its manifest: ``raw``) that verification reads —
    those of a media type in ``wanted`` (a bundle, a legacy payload) —, each verified and charged
    to ``budget``."""
    from zeroimage.files import CHUNK
    from zeroimage.oci import Manifest, parse_document

    manifest = parse_document(raw, f"{source.description} {desc.digest}", desc.media_type)
    if not isinstance(manifest, Manifest):
        return {}
    blobs: dict[str, bytes] = {}
    for layer in manifest.layers[:MAX_VERIFIED_REFERRERS]:
        if layer.media_type not in wanted or layer.digest in blobs:
            continue
        budget.charge(layer.size, f"{source.description} {layer.digest}")
        stream = source.blob(layer).open()
        try:
            blobs[layer.digest] = b"".join(iter(lambda: stream.read(CHUNK), b""))  # noqa: B023 - read at once
        finally:
            stream.close()
    return blobs


# -- helpers -------------------------------------------------------------------------------------


@contextmanager
def _opened(source: PathLike, insecure: Sequence[str], store: BlobStore | None) -> Iterator[Source]:
    """The source a caller names, closed on leaving; a registry error about a source given
    without a transport says which local transports were meant."""
    from zeroimage.transports import TransportOptions, open_source, parse_source
    from zeroimage.transports.locations import hinted

    location = parse_source(path_value(source, "source"))
    options = TransportOptions(insecure_registries=texts_value(insecure, "insecure_registry"), store=store)
    with hinted(location):
        opened = open_source(location, options)
        try:
            yield opened
        finally:
            opened.close()
            options.close()


# -- build's keywords, made from the options' declaration, for help() and IDEs -------------------

_TYPES: Mapping[str, Any] = {
    "text": "str | None",
    "path": "str | os.PathLike[str] | None",
    "number": "int | None",
    "switch": "bool",
    "texts": "Sequence[str]",
    "paths": "Sequence[str | os.PathLike[str]]",
    "pairs": "Mapping[str, str] | Sequence[str]",
}


def _flag(name: str, spec: Declared) -> str:
    if not spec.flags:
        return "(Python only)"
    long = max(spec.flags, key=len)
    return f"{long} {spec.metavar}" if spec.metavar else long


def _document(function: Callable[..., Any]) -> None:
    """Give ``function`` the signature and the parameter list of every build option."""
    parameters = [
        _inspect.Parameter(
            "programs", _inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str | os.PathLike[str] | Sequence[...]"
        )
    ]
    lines = ["", "Parameters (each is the ``zeroimage build`` flag shown):", ""]
    for name, spec, default in options_fields():
        if name == "programs":
            lines.append(f"programs : {spec.accepts}\n    {spec.help}")
            continue
        shown = list(default) if isinstance(default, tuple) else default
        parameters.append(
            _inspect.Parameter(name, _inspect.Parameter.KEYWORD_ONLY, default=shown, annotation=_TYPES[spec.kind])
        )
        lines.append(f"{name} : {spec.accepts}  — {_flag(name, spec)}\n    {spec.help}")
    for name, annotation in (("reporter", "Reporter | None"), ("progress", "Callable[[Event], None] | None")):
        parameters.append(
            _inspect.Parameter(name, _inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        )
    function.__signature__ = _inspect.Signature(parameters, return_annotation="BuildResult")  # type: ignore[attr-defined]
    function.__doc__ = (function.__doc__ or "") + "\n    ".join(["", *"\n".join(lines).splitlines()]) + "\n"


_document(build)
