"""What AWS Lambda accepts of a container image, known before the upload (``--target lambda``):
the :class:`AwsLambda` target policy the build consults (see :mod:`zeroimage.targets`).

Lambda is stricter than Docker, containerd or Podman, and says so only at deployment time:

* one platform, ``linux/amd64`` (Lambda's ``x86_64``) or ``linux/arm64``, in a plain image
  manifest — an image index (buildx's default attestation index among them) is refused;
* gzip layers only;
* every layer holds an entry for each parent directory of its entries (``MissingParentDirectory``);
* the function runs as an unprivileged user, not root: what it needs must be readable (and the
  program executable) by others;
* at most 10 GiB uncompressed, all layers together;
* the program must speak Lambda's Runtime API (it reads ``AWS_LAMBDA_RUNTIME_API``), unless the
  base brings a runtime interface client (AWS's ``lambda/provided`` bases carry
  ``/lambda-entrypoint.sh``), or it will never answer an invocation.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from zeroimage import runcheck
from zeroimage.elf import BinaryInfo
from zeroimage.errors import InputError, UsageError
from zeroimage.image import BaseImage, Source, candidates, load_image
from zeroimage.layers.entries import Entry
from zeroimage.oci import Descriptor, Platform
from zeroimage.oci import mediatypes as mt
from zeroimage.rootfs import FileTree, ListingCache
from zeroimage.runcheck import access_problem
from zeroimage.targets import Target

if TYPE_CHECKING:
    from zeroimage.options import BuildOptions

#: Lambda's names for the platforms it runs.
ARCHITECTURES = {"amd64": "x86_64", "arm64": "arm64"}
#: The largest image Lambda takes: 10 GB uncompressed, all layers together (GiB, as AWS counts).
MAX_UNCOMPRESSED = 10 << 30
#: A uid and gid no image file belongs to: Lambda's function user is neither root nor an owner.
FUNCTION_USER = (993, 990)
#: What a program reads to find Lambda's Runtime API; and what a base with a runtime client has.
RUNTIME_API = b"AWS_LAMBDA_RUNTIME_API"
RUNTIME_CLIENTS = ("/lambda-entrypoint.sh",)
GZIP_LAYERS = frozenset({mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP})


class AwsLambda(Target):
    """AWS Lambda's rules, checked before anything is uploaded."""

    name = "lambda"
    makes_layers_early = False  # an error before any upload: nothing is made before every check
    runs_as = FUNCTION_USER  # Lambda runs the function as a user of its own, never root

    def check_request(self, options: BuildOptions) -> None:
        programs = len(options.requests)
        if programs != 1:
            raise UsageError(
                f"--target lambda: a Lambda function runs one platform, and this build has {programs} programs; "
                "build one image per architecture (x86_64 and arm64 are separate functions)"
            )
        if options.compression != "gzip":
            raise UsageError(
                f"--target lambda: Lambda accepts only gzip layers, not {options.compression}; drop --compression"
            )

    def check_platform(self, platform: Platform) -> None:
        if platform.os != "linux" or platform.architecture not in ARCHITECTURES:
            raise UsageError(
                f"--target lambda: Lambda runs linux/amd64 (x86_64) and linux/arm64 programs, not {platform}"
            )

    def check_base(self, base: BaseImage) -> None:
        refused = layer_problems([b.descriptor.media_type for b in base.layers], f"the base {base.where}")
        if refused:
            raise InputError(refused[0])

    def adjust(self, entries: Sequence[Entry], program: str) -> tuple[list[Entry], list[str]]:
        return widen(entries, program)

    def adjusted(self, changed: Sequence[str]) -> str:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        return f"for Lambda's unprivileged user, made readable by all (the program executable): {shown}"

    def check_plan(self, program: Path, info: BinaryInfo, entrypoint: str, tree: FileTree) -> list[str]:
        """What Lambda would never run that the build cannot change: base files the program
        needs that Lambda's user cannot read, a program that does not speak the Runtime API on a
        base without a runtime client."""
        warnings = []
        unreadable = runcheck.unreadable(info, entrypoint, tree, FUNCTION_USER)
        if unreadable:
            warnings.append(f"{entrypoint} needs {', '.join(unreadable)}, which Lambda's unprivileged user cannot read")
        if not has_runtime_client(tree) and not speaks_runtime_api(program):
            warnings.append(
                f"{program} never mentions AWS_LAMBDA_RUNTIME_API and the base has no runtime interface "
                "client (/lambda-entrypoint.sh): it will not answer invocations (use aws-lambda-go, Rust's "
                "lambda_runtime or the C++ runtime, or a public.ecr.aws/lambda/provided base)"
            )
        return warnings

    def check_size(self, uncompressed: int) -> None:
        problem = size_problem(uncompressed)
        if problem:
            raise InputError(f"--target lambda: {problem}")

    def check_result(self, root: Descriptor) -> None:
        if root.media_type not in mt.MANIFESTS:
            raise UsageError(f"--target lambda: Lambda takes one image manifest, not {root.media_type}")

    def problems(self, source: Source, listings: ListingCache) -> list[str]:
        return problems_of(source, listings)


AWS_LAMBDA = AwsLambda()


def layer_problems(media_types: Sequence[str], where: str) -> list[str]:
    """Layers Lambda would refuse for their compression (the base's cannot be changed here)."""
    bad = sorted({m for m in media_types if m not in GZIP_LAYERS})
    return [f"{where} has layers Lambda refuses (only gzip is accepted): {', '.join(bad)}"] if bad else []


def widen(entries: Sequence[Entry], program: str) -> tuple[list[Entry], list[str]]:
    """The build's entries as Lambda's unprivileged user needs them: every file readable by all
    (directories searchable), the program executable by all. Returns them and what changed."""
    out: list[Entry] = []
    changed: list[str] = []
    for entry in entries:
        if entry.kind == "symlink":
            out.append(entry)
            continue
        wanted = 0o555 if entry.kind == "dir" or entry.path == program else 0o444
        mode = entry.mode | wanted
        if mode != entry.mode:
            changed.append(f"{entry.path} {entry.mode & 0o7777:04o}→{mode & 0o7777:04o}")
            entry = replace(entry, mode=mode)
        out.append(entry)
    return out, changed


def speaks_runtime_api(program: Path) -> bool:
    """Whether the program mentions the Runtime API's variable (aws-lambda-go, Rust's
    lambda_runtime and the C++ runtime all read it): a scan of its bytes."""
    with open(program, "rb") as handle:
        try:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return data.find(RUNTIME_API) >= 0
        except ValueError:  # an empty file cannot be mapped
            return False


def has_runtime_client(tree: FileTree) -> bool:
    return any(tree.exists(path) for path in RUNTIME_CLIENTS)


def problems_of(source: Source, listings: ListingCache) -> list[str]:
    """What Lambda would refuse of the image at ``source`` (empty: nothing zeroimage can see):
    its root's type, its platform, its layers' compression and parents, its size, and whether
    its unprivileged user may run its entrypoint."""
    root = source.root()
    out: list[str] = []
    if root.media_type in mt.INDEXES:
        out.append(
            "it is an image index (a manifest list), not one image manifest: Lambda refuses it "
            "(buildx's attestations make one too); push one platform's image"
        )
    for candidate in candidates(source, root):
        if candidate.platform is not None and candidate.platform.os == "unknown":
            continue  # an attestation: part of the index, judged above
        image = load_image(source, candidate)
        where = f"the {image.platform} image" if root.media_type in mt.INDEXES else "the image"
        out += _image_problems(image, where, listings)
    return out


def _image_problems(image: BaseImage, where: str, listings: ListingCache) -> list[str]:
    if image.platform.os != "linux" or image.platform.architecture not in ARCHITECTURES:
        told = where if where != "the image" else f"the image is for {image.platform}"
        return [f"{told}: Lambda runs only linux/amd64 (x86_64) and linux/arm64"]
    out = layer_problems([blob.descriptor.media_type for blob in image.layers], where)
    tree = FileTree()
    for number, blob in enumerate(image.layers, 1):
        listing = listings.listing(blob)
        if listing.orphan_count:
            more = f" (and {listing.orphan_count - 1} more)" if listing.orphan_count > 1 else ""
            out.append(
                f"layer {number} of {where} ({blob.descriptor.digest}) holds /{listing.orphans[0]} without an "
                f"entry for its parent directory{more}: Lambda refuses it (MissingParentDirectory)"
            )
        tree.apply(listing)
        tree.layers_size += listing.size
    size = size_problem(tree.layers_size)
    if size:
        out.append(f"{where}: {size}")
    container = image.config.container
    command = [*(container.get("Entrypoint") or []), *(container.get("Cmd") or [])]
    if not command or not isinstance(command[0], str):
        out.append(f"{where} has no entrypoint or command: Lambda has nothing to run")
    elif command[0].startswith("/"):
        denied = access_problem(command[0], tree, FUNCTION_USER)
        if denied:
            out.append(f"{where}: {denied} (Lambda runs the function as an unprivileged user)")
    return out


def size_problem(uncompressed: int) -> str:
    if uncompressed <= MAX_UNCOMPRESSED:
        return ""
    return (
        f"the image is {uncompressed / (1 << 30):.1f} GiB uncompressed; "
        f"Lambda takes at most {MAX_UNCOMPRESSED >> 30} GiB"
    )
