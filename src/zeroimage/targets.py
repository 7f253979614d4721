"""Where an image will run (``--target``), as a policy the build consults at fixed points.

The build knows nothing of any platform's rules: it asks its target, in this order —

    check_request   what the options alone decide (before anything is read)
    check_platform  each program's platform
    check_base      a base image, from its manifest and config (before its layers are read)
    adjust          the entries the build adds (modes a platform's user needs)
    check_plan      each platform's image as planned (warnings; errors raise)
    check_size      its size uncompressed, all layers together
    check_result    the image made, before it is written anywhere

:data:`ANYWHERE` has no rules of its own; :mod:`zeroimage.aws_lambda` has Lambda's.
``zeroimage inspect --target`` asks :meth:`Target.problems` of an existing image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zeroimage.errors import UsageError

if TYPE_CHECKING:
    from zeroimage.elf import BinaryInfo
    from zeroimage.image import BaseImage, Source
    from zeroimage.layers.entries import Entry
    from zeroimage.oci import Descriptor, Platform
    from zeroimage.options import BuildOptions
    from zeroimage.rootfs import FileTree, ListingCache


class Target:
    """Anywhere an OCI runtime runs the image (Docker, containerd, Podman, Kubernetes): no rules
    beyond the build's own. Subclasses are platforms with rules of their own."""

    name = ""
    #: Whether the build may make the first layer while it still reads and checks the base
    #: (False: nothing is made before every check has passed).
    makes_layers_early = True
    #: The (uid, gid) the platform runs the program as, whatever the image says; None: the
    #: image's user.
    runs_as: tuple[int, int] | None = None

    def check_request(self, options: BuildOptions) -> None:
        """Refuse what the options alone make impossible here (UsageError)."""

    def check_platform(self, platform: Platform) -> None:
        """Refuse a program's platform that cannot run here."""

    def check_base(self, base: BaseImage) -> None:
        """Refuse a base from its manifest and config, before its layers are read."""

    def adjust(self, entries: Sequence[Entry], program: str) -> tuple[list[Entry], list[str]]:
        """The entries the build adds, as the platform needs them (``program``: the entrypoint's
        path in the image), and what was changed, one item each, for :meth:`adjusted`."""
        return list(entries), []

    def adjusted(self, changed: Sequence[str]) -> str:
        """The notice that tells the user what :meth:`adjust` changed."""
        return ""

    def check_plan(self, program: Path, info: BinaryInfo, entrypoint: str, tree: FileTree) -> list[str]:
        """What will keep the planned image from working here (warnings; --strict makes them
        errors), from the program and the filesystem the image will have."""
        return []

    def check_size(self, uncompressed: int) -> None:
        """Refuse an image whose layers add up to more than the platform takes."""

    def check_result(self, root: Descriptor) -> None:
        """Refuse the image made (its root document) before it is written anywhere."""

    def problems(self, source: Source, listings: ListingCache) -> list[str]:
        """What the platform would refuse of an existing image (``zeroimage inspect --target``)."""
        return []


ANYWHERE = Target()
#: The targets by their ``--target`` names.
NAMES = ("lambda",)


def target_named(name: str) -> Target:
    if name == "lambda":
        from zeroimage.aws_lambda import AWS_LAMBDA

        return AWS_LAMBDA
    raise UsageError(f"unknown target {name!r}: the one target is lambda (AWS Lambda)")
