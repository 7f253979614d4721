"""Platform names: parsing ``os/arch[/variant]``, normalising, and choosing among candidates.

The rules are those of containerd's ``platforms`` package, which Docker, BuildKit and most
registries' clients share:

* names are normalised before they are compared (``aarch64`` is ``arm64``, ``arm`` alone is
  ``arm/v7``, ``arm64/v8`` is plain ``arm64``, ``x86_64`` is ``amd64``, ...);
* a wanted platform also accepts older compatible ones, best first: ``arm64`` runs
  ``arm/v8`` down to ``arm/v5``, ``arm/v7`` runs ``arm/v6`` and ``arm/v5``, ``amd64/v3`` runs
  ``amd64/v2`` and ``amd64``, and ``amd64`` runs ``386``;
* a wanted platform with no ``os.version`` accepts any version.

Unlike containerd, a platform with no OS given is Linux, never the host's OS: zeroimage builds
Linux images wherever it runs. And unlike containerd's parser, which takes any variant, a
variant its matcher gives no meaning to (``arm/v9``, ``amd64/v5``, ``arm64/v7``, ``s390x/v2``)
is refused: written into an image, it would match no runtime's platform.
"""

from __future__ import annotations

import platform as _stdlib_platform
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from zeroimage.errors import InvalidPlatform, PlatformError
from zeroimage.oci.platform import Platform

__all__ = [
    "KNOWN_ARCHITECTURES",
    "KNOWN_OSES",
    "Platform",
    "compatible_platforms",
    "host_platform",
    "match_rank",
    "normalize",
    "parse_platform",
    "select_platform",
    "variant_older",
]

#: Operating systems Go knows (GOOS), the names OCI platforms use.
KNOWN_OSES: tuple[str, ...] = (
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "aix",
    "android",
    "dragonfly",
    "hurd",
    "illumos",
    "ios",
    "js",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "zos",
)

#: Architectures Go knows (GOARCH), the most common first.
KNOWN_ARCHITECTURES: tuple[str, ...] = (
    "amd64",
    "arm64",
    "arm",
    "386",
    "ppc64le",
    "s390x",
    "riscv64",
    "mips64le",
    "mips64",
    "mipsle",
    "mips",
    "loong64",
    "ppc64",
    "amd64p32",
    "armbe",
    "arm64be",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "s390",
    "sparc",
    "sparc64",
    "wasm",
)

_OS_ALIASES = {"macos": "darwin"}

# Other spellings of architectures (uname, Debian, LLVM) whose variant they fix or drop.
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "ppc64el": ("ppc64le", None),
    "mips64el": ("mips64le", None),
    "mipsel": ("mipsle", None),
    "loongarch64": ("loong64", None),
}

#: The variants containerd's matcher knows (its ``platformVector``), normalised; "" is none.
#: Other architectures have no variants.
KNOWN_VARIANTS: dict[str, tuple[str, ...]] = {
    "arm": ("v5", "v6", "v7", "v8"),
    "arm64": ("", *(f"v8.{n}" for n in range(1, 10)), "v9", *(f"v9.{n}" for n in range(1, 6))),
    "amd64": ("", "v2", "v3", "v4"),
}
#: How a user may write the variant that normalises to none.
_DEFAULT_VARIANT = {"amd64": "v1", "arm64": "v8"}

_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")
_VERSION = re.compile(r"v([0-9]{1,4})(?:\.([0-9]{1,4}))?")


def normalize(p: Platform) -> Platform:
    """The canonical spelling of a platform, so that equal platforms compare equal.

    OS names are lowercased (``macos`` is ``darwin``); architectures and variants are lowercased
    and their aliases resolved: ``x86_64`` is ``amd64`` (``v1`` is no variant), ``i386``/``i686``
    are ``386``, ``aarch64`` is ``arm64`` (``8``, ``v8``, ``v8.0`` are no variant; ``9``,
    ``v9.0`` are ``v9``), ``armhf`` is ``arm/v7``, ``armel`` is ``arm/v6``, ``arm`` with no
    variant or ``7`` is ``arm/v7`` and ``5``, ``6``, ``8`` are ``v5``, ``v6``, ``v8``.
    """
    os_name = p.os.lower()
    os_name = _OS_ALIASES.get(os_name, os_name)
    arch, variant = p.architecture.lower(), p.variant.lower()
    alias = _ARCH_ALIASES.get(arch)
    if alias is not None:
        arch = alias[0]
        if alias[1] is not None:
            variant = alias[1]
    if arch == "amd64" and variant == "v1":
        variant = ""
    elif arch == "arm64":
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    features = tuple(sorted(set(p.os_features)))
    return replace(p, os=os_name, architecture=arch, variant=variant, os_features=features)


def _is_known_os(name: str) -> bool:
    return name in KNOWN_OSES


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant]``, or a lone ``arch`` (Linux) or ``os`` (this machine's arch).

    The result is normalised. InvalidPlatform (a usage error) says what is wrong with anything
    else, unknown variants included.
    """
    spec = text.strip()
    if not spec:
        raise InvalidPlatform("empty platform: expected os/architecture[/variant], e.g. linux/amd64")
    parts = spec.split("/")
    if len(parts) > 3:
        raise InvalidPlatform(f"invalid platform {text!r}: too many parts, expected os/architecture[/variant]")
    for part in parts:
        if not part:
            raise InvalidPlatform(f"invalid platform {text!r}: empty part, expected os/architecture[/variant]")
        if not _COMPONENT.fullmatch(part):
            raise InvalidPlatform(
                f"invalid platform {text!r}: {part!r} may hold only letters, digits, '_', '.' and '-'"
            )

    if len(parts) == 1:
        word = normalize(Platform(os=parts[0], architecture=""))
        if _is_known_os(word.os):
            return replace(host_platform(), os=word.os)
        p = normalize(Platform(os="linux", architecture=parts[0]))
        if p.architecture in KNOWN_ARCHITECTURES:
            return p
        raise InvalidPlatform(
            f"unknown platform {text!r}: {parts[0]!r} is neither an operating system nor an "
            f"architecture; architectures are {', '.join(KNOWN_ARCHITECTURES)}"
        )

    p = normalize(Platform(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else ""))
    if not _is_known_os(p.os):
        hint = ""
        if len(parts) == 2 and normalize(Platform("", parts[0])).architecture in KNOWN_ARCHITECTURES:
            hint = f" ({parts[0]!r} is an architecture: write linux/{spec})"
        raise InvalidPlatform(
            f"unknown platform {text!r}: operating system {parts[0]!r} is not one of {', '.join(KNOWN_OSES)}{hint}"
        )
    if p.architecture not in KNOWN_ARCHITECTURES:
        raise InvalidPlatform(
            f"unknown platform {text!r}: architecture {parts[1]!r} is not one of {', '.join(KNOWN_ARCHITECTURES)}"
        )
    known = KNOWN_VARIANTS.get(p.architecture, ("",))
    if p.variant not in known:
        if known == ("",):
            raise InvalidPlatform(f"unknown platform {text!r}: {p.architecture} has no variants")
        names = ", ".join(v or _DEFAULT_VARIANT[p.architecture] for v in known)
        given = parts[2] if len(parts) == 3 else p.variant
        raise InvalidPlatform(
            f"unknown platform {text!r}: {p.architecture} has no variant {given!r}; its variants are {names}"
        )
    return p


def _version(variant: str) -> tuple[int, int] | None:
    """``vN`` or ``vN.M`` as (N, M); None for anything else."""
    m = _VERSION.fullmatch(variant)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def _arm64_variant(major: int, minor: int) -> str:
    return f"v{major}" if minor == 0 else f"v{major}.{minor}"


def _fallback_variants(arch: str, variant: str) -> list[tuple[str, str]]:
    """(architecture, variant) pairs after the wanted one, best first (containerd's order)."""
    out: list[tuple[str, str]] = []
    if arch == "amd64":
        level = _version(variant or "v1")
        if level is not None and level[1] == 0:
            out += [("amd64", f"v{n}") for n in range(level[0] - 1, 0, -1)]
        out.append(("386", ""))
    elif arch == "arm":
        level = _version(variant)
        if level is not None and level[1] == 0:
            out += [("arm", f"v{n}") for n in range(level[0] - 1, 4, -1)]
    elif arch == "arm64":
        level = _version(variant or "v8")
        if level is not None and level[0] >= 8:
            major, minor = level
            if major == 9:
                # v9.x diverged from v8.(x+5): it also runs v9.(x-1)..v9 and v8.(x+5)..v8,
                # v8.9 being the last v8.
                out += [("arm64", _arm64_variant(9, n)) for n in range(minor - 1, -1, -1)]
                major, minor = 8, min(minor + 5, 9)
                out.append(("arm64", _arm64_variant(8, minor)))
            out += [("arm64", _arm64_variant(major, n)) for n in range(minor - 1, -1, -1)]
        out += [("arm", f"v{n}") for n in range(8, 4, -1)]
    return out


def compatible_platforms(want: Platform) -> list[Platform]:
    """The platforms that can stand in for ``want``, best first, ``want`` itself first.

    All are normalised and keep ``want``'s os, os.version and os.features.
    """
    first = normalize(want)
    out = [first]
    for arch, variant in _fallback_variants(first.architecture, first.variant):
        p = normalize(replace(first, architecture=arch, variant=variant))
        if p not in out:
            out.append(p)
    return out


def variant_older(given: Platform, needed: Platform) -> bool:
    """Whether ``given`` (an explicit ``--platform``) is too old a variant for a program that
    ``needed`` says it needs: ``arm/v6`` given for an ARMv7 program, ``arm64/v8.2`` for one
    built for ``v9``. "Too old" is containerd's rule: ``needed`` is not among the platforms
    ``given`` can run (:func:`compatible_platforms`). False when ``needed`` names no variant
    (the program does not say) or the two differ in OS or architecture (a contradiction, not
    an older variant).
    """
    if not needed.variant:
        return False
    want, need = normalize(given), normalize(needed)
    if (want.os, want.architecture) != (need.os, need.architecture):
        return False
    return all(p.variant != need.variant for p in compatible_platforms(want) if p.architecture == need.architecture)


def _os_version_matches(want: str, have: str) -> bool:
    if not want or not have:
        return True
    return have == want or have.startswith(want + ".")


def _matches(want: Platform, have: Platform) -> bool:
    """Whether normalised ``have`` is exactly the normalised ``want``."""
    if (want.os, want.architecture, want.variant) != (have.os, have.architecture, have.variant):
        return False
    if not _os_version_matches(want.os_version, have.os_version):
        return False
    features = set(have.os_features)
    if have.os == "windows":
        features.discard("win32k")
    return features <= set(want.os_features)


def _rank(vector: Sequence[Platform], have: Platform) -> int | None:
    have = normalize(have)
    for rank, candidate in enumerate(vector):
        if _matches(candidate, have):
            return rank
    return None


def match_rank(want: Platform, have: Platform) -> int | None:
    """How well ``have`` serves ``want``: 0 exactly, higher for a worse fallback, None not at all.

    ``os.version``: any matches when ``want`` or ``have`` has none; otherwise ``have`` must be
    ``want``'s version or start with it (``10.0.17763`` accepts ``10.0.17763.5458``).
    ``os.features`` of ``have`` must all be wanted (``win32k`` is ignored on Windows).
    """
    return _rank(compatible_platforms(want), have)


def select_platform(want: Platform, candidates: Sequence[Platform | None]) -> int | None:
    """Index of the candidate that best serves ``want`` (the earliest of equals), or None.

    None candidates (index entries without a platform) never match.
    """
    vector = compatible_platforms(want)
    best: tuple[int, int] | None = None
    for index, candidate in enumerate(candidates):
        if candidate is None:
            continue
        rank = _rank(vector, candidate)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, index)
    return None if best is None else best[1]


_ARM_CPU_ARCHITECTURES = {
    "8": "v8",
    "aarch64": "v8",
    "7": "v7",
    "7m": "v7",
    "6": "v6",
    "6tej": "v6",
    "5": "v5",
    "5t": "v5",
    "5te": "v5",
    "5tej": "v5",
}

_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "loong64": "loong64",
}


def _cpuinfo_field(cpuinfo: str, name: str) -> str:
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return ""


def _arm_variant(machine: str, cpuinfo: str) -> str:
    """The ARM variant the kernel reports (``CPU architecture``), else uname's ``armvN``."""
    variant = _ARM_CPU_ARCHITECTURES.get(_cpuinfo_field(cpuinfo, "cpu architecture").lower(), "")
    if not variant:
        m = re.match(r"armv([5-8])", machine)
        variant = f"v{m.group(1)}" if m else ""
    # Raspberry Pi ARMv6 kernels report "CPU architecture: 7".
    if variant == "v7" and _cpuinfo_field(cpuinfo, "model name").lower().startswith("armv6-compatible"):
        variant = "v6"
    return variant


def _machine_platform(machine: str, byteorder: str, cpuinfo: Callable[[], str]) -> Platform:
    """The Linux platform of a machine, from uname's machine name (and /proc/cpuinfo on ARM)."""
    name = machine.strip().lower()
    little = byteorder == "little"
    if name in _MACHINES:
        return normalize(Platform(os="linux", architecture=_MACHINES[name]))
    if name == "mips64":
        return Platform(os="linux", architecture="mips64le" if little else "mips64")
    if name == "mips":
        return Platform(os="linux", architecture="mipsle" if little else "mips")
    if name.startswith("arm"):
        return normalize(Platform(os="linux", architecture="arm", variant=_arm_variant(name, cpuinfo())))
    raise PlatformError(
        f"cannot tell which platform this machine is (machine {machine!r}); name the platform explicitly"
    )


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", "rb") as f:
            return f.read(65536).decode("utf-8", "replace")
    except OSError:
        return ""


def host_platform() -> Platform:
    """``linux/<this machine's architecture>``, normalised, whatever OS zeroimage runs on."""
    return _machine_platform(_stdlib_platform.machine(), sys.byteorder, _read_cpuinfo)
