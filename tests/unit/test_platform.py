"""Platform value, parsing, normalisation and selection (containerd's rules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroimage.errors import InvalidPlatform, PlatformError, UsageError
from zeroimage.oci.platform import Platform
from zeroimage.platform import (
    KNOWN_ARCHITECTURES,
    KNOWN_OSES,
    KNOWN_VARIANTS,
    _machine_platform,
    compatible_platforms,
    host_platform,
    match_rank,
    normalize,
    parse_platform,
    select_platform,
    variant_older,
)

# The index of Docker Hub's hello-world, in its order.
HELLO_WORLD = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm", "os": "linux", "variant": "v5"},
    {"architecture": "arm", "os": "linux", "variant": "v7"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
    {"architecture": "386", "os": "linux"},
    {"architecture": "mips64le", "os": "linux"},
    {"architecture": "ppc64le", "os": "linux"},
    {"architecture": "riscv64", "os": "linux"},
    {"architecture": "s390x", "os": "linux"},
    {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.587"},
    {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.2686"},
]
HELLO = [Platform.from_dict(d) for d in HELLO_WORLD]


def P(os: str, arch: str, variant: str = "", **kw: str) -> Platform:
    return Platform(os=os, architecture=arch, variant=variant, **kw)  # type: ignore[arg-type]


# --- the value type -------------------------------------------------------------------------


def test_str() -> None:
    assert str(P("linux", "arm64")) == "linux/arm64"
    assert str(P("linux", "arm", "v7")) == "linux/arm/v7"
    assert str(P("windows", "amd64", os_version="10.0.17763.1")) == "windows/amd64"


def test_to_dict_key_order_and_omissions() -> None:
    p = Platform("windows", "amd64", "v2", "10.0.17763.1", ("win32k",))
    d = p.to_dict()
    assert list(d) == ["architecture", "os", "os.version", "os.features", "variant"]
    assert d["os.features"] == ["win32k"]
    assert P("linux", "amd64").to_dict() == {"architecture": "amd64", "os": "linux"}
    assert Platform.from_dict(d) == p


def test_from_dict_lenient_on_missing_and_unknown_fields() -> None:
    assert Platform.from_dict({"os": "linux", "architecture": "amd64", "features": ["sse4"]}) == P("linux", "amd64")
    assert Platform.from_dict({"os.features": None, "variant": None}) == P("", "")


@pytest.mark.parametrize(
    "bad",
    [
        {"os": 1, "architecture": "amd64"},
        {"os": "linux", "architecture": None, "variant": 7},
        {"os": "linux", "architecture": "amd64", "os.features": "win32k"},
        {"os": "linux", "architecture": "amd64", "os.features": [1]},
        {"os": "linux", "architecture": "amd64", "os.version": 10},
        ["linux", "amd64"],
        "linux/amd64",
    ],
)
def test_from_dict_rejects_wrong_types(bad: object) -> None:
    with pytest.raises(ValueError):
        Platform.from_dict(bad)  # type: ignore[arg-type]


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", P("linux", "amd64")),
        ("linux/arm/v7", P("linux", "arm", "v7")),
        ("linux/arm", P("linux", "arm", "v7")),
        ("linux/arm/6", P("linux", "arm", "v6")),
        ("linux/arm64/v8", P("linux", "arm64")),
        ("linux/arm64/v8.2", P("linux", "arm64", "v8.2")),
        ("linux/aarch64", P("linux", "arm64")),
        ("arm64", P("linux", "arm64")),
        ("aarch64", P("linux", "arm64")),
        ("armhf", P("linux", "arm", "v7")),
        ("armel", P("linux", "arm", "v6")),
        ("x86_64", P("linux", "amd64")),
        ("i686", P("linux", "386")),
        ("windows/amd64", P("windows", "amd64")),
        ("Linux/AMD64", P("linux", "amd64")),
        ("macos/arm64", P("darwin", "arm64")),
        ("  linux/s390x  ", P("linux", "s390x")),
        ("linux/amd64/v3", P("linux", "amd64", "v3")),
        ("linux/amd64/v1", P("linux", "amd64")),
        ("linux/ppc64el", P("linux", "ppc64le")),
        ("linux/loongarch64", P("linux", "loong64")),
    ],
)
def test_parse(text: str, expected: Platform) -> None:
    assert parse_platform(text) == expected


def test_parse_lone_os_is_this_machine() -> None:
    assert parse_platform("linux") == host_platform()
    assert parse_platform("windows").architecture == host_platform().architecture
    assert parse_platform("windows").os == "windows"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty platform"),
        ("   ", "empty platform"),
        ("linux/", "empty part"),
        ("/amd64", "empty part"),
        ("linux//v7", "empty part"),
        ("linux/arm/v7/extra", "too many parts"),
        ("linux/amd 64", "may hold only"),
        ("windows(10.0)/amd64", "may hold only"),
        ("linux/foo", "architecture 'foo' is not one of amd64, arm64, "),
        ("foo/amd64", "operating system 'foo' is not one of linux, windows"),
        ("arm64/v8", "write linux/arm64/v8"),
        ("foo", "'foo' is neither an operating system nor an architecture"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidPlatform) as info:
        parse_platform(text)
    assert message in str(info.value)
    assert info.value.exit_code == 2  # a usage error ...
    assert isinstance(info.value, UsageError) and isinstance(info.value, PlatformError)  # ... and a platform one


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("linux/arm/v9", "arm has no variant 'v9'; its variants are v5, v6, v7, v8"),
        ("linux/arm/v4", "arm has no variant 'v4'"),
        ("linux/arm/v7l", "arm has no variant 'v7l'"),
        ("linux/arm/9", "arm has no variant '9'"),
        ("linux/amd64/v5", "amd64 has no variant 'v5'; its variants are v1, v2, v3, v4"),
        ("linux/amd64/v0", "amd64 has no variant 'v0'"),
        ("linux/amd64/3", "amd64 has no variant '3'"),
        ("linux/x86_64/v9", "amd64 has no variant 'v9'"),
        ("linux/arm64/v7", "arm64 has no variant 'v7'; its variants are v8, v8.1, v8.2, "),
        ("linux/arm64/v8.10", "arm64 has no variant 'v8.10'"),
        ("linux/arm64/v9.6", "arm64 has no variant 'v9.6'"),
        ("linux/arm64/v10", "arm64 has no variant 'v10'"),
        ("linux/aarch64/V7", "arm64 has no variant 'V7'"),
        ("linux/s390x/v2", "s390x has no variants"),
        ("linux/386/sse2", "386 has no variants"),
        ("linux/riscv64/rva22u64", "riscv64 has no variants"),
        ("windows/amd64/v5", "amd64 has no variant 'v5'"),
    ],
)
def test_unknown_variants_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidPlatform, match=f"^unknown platform {text!r}: {message}"):
        parse_platform(text)


@pytest.mark.parametrize(
    ("text", "variant"),
    [
        *[(f"linux/arm/{v}", v) for v in ("v5", "v6", "v7", "v8")],
        *[(f"linux/arm64/v8.{n}", f"v8.{n}") for n in range(1, 10)],
        *[(f"linux/arm64/v9.{n}", f"v9.{n}") for n in range(1, 6)],
        ("linux/arm64/v9", "v9"),
        ("linux/arm64/v9.0", "v9"),
        ("linux/arm64/v8.0", ""),
        *[(f"linux/amd64/{v}", v) for v in ("v2", "v3", "v4")],
        ("linux/amd64/v1", ""),
        ("linux/i386/anything", ""),  # containerd drops an i386 variant
    ],
)
def test_known_variants_are_accepted(text: str, variant: str) -> None:
    assert parse_platform(text).variant == variant


def test_cli_refuses_an_unknown_variant_as_a_usage_error(tmp_path: Path) -> None:
    program = tmp_path / "app"
    program.write_bytes(b"#!/bin/sh\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zeroimage",
            "build",
            "--platform",
            "linux/arm/v9",
            "-o",
            str(tmp_path / "x.tar"),
            str(program),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "zeroimage: error: unknown platform 'linux/arm/v9': arm has no variant 'v9'; its variants are v5, v6, v7, v8"
    ]
    assert not (tmp_path / "x.tar").exists()


def test_parse_error_names_the_input() -> None:
    with pytest.raises(PlatformError, match=r"^unknown platform 'linux/foo': architecture 'foo' is not one of"):
        parse_platform("linux/foo")


def test_known_names() -> None:
    assert {"linux", "windows", "darwin"} <= set(KNOWN_OSES)
    assert KNOWN_ARCHITECTURES[:2] == ("amd64", "arm64")
    assert {"386", "arm", "ppc64le", "s390x", "riscv64", "mips64le", "loong64"} <= set(KNOWN_ARCHITECTURES)


# --- normalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("Linux", "AMD64", ""), ("linux", "amd64", "")),
        (("macos", "arm64", ""), ("darwin", "arm64", "")),
        (("linux", "x86_64", "v1"), ("linux", "amd64", "")),
        (("linux", "x86-64", "v2"), ("linux", "amd64", "v2")),
        (("linux", "amd64", "v1"), ("linux", "amd64", "")),
        (("linux", "i386", "v7"), ("linux", "386", "")),
        (("linux", "i686", ""), ("linux", "386", "")),
        (("linux", "aarch64", "8"), ("linux", "arm64", "")),
        (("linux", "arm64", "v8"), ("linux", "arm64", "")),
        (("linux", "arm64", "v8.0"), ("linux", "arm64", "")),
        (("linux", "arm64", "v8.1"), ("linux", "arm64", "v8.1")),
        (("linux", "arm64", "9"), ("linux", "arm64", "v9")),
        (("linux", "arm64", "v9.0"), ("linux", "arm64", "v9")),
        (("linux", "armhf", ""), ("linux", "arm", "v7")),
        (("linux", "armel", ""), ("linux", "arm", "v6")),
        (("linux", "arm", ""), ("linux", "arm", "v7")),
        (("linux", "arm", "7"), ("linux", "arm", "v7")),
        (("linux", "arm", "5"), ("linux", "arm", "v5")),
        (("linux", "arm", "6"), ("linux", "arm", "v6")),
        (("linux", "arm", "8"), ("linux", "arm", "v8")),
        (("linux", "ARM", "V6"), ("linux", "arm", "v6")),
        (("linux", "s390x", ""), ("linux", "s390x", "")),
        (("linux", "mips64el", ""), ("linux", "mips64le", "")),
    ],
)
def test_normalize(given: tuple[str, str, str], expected: tuple[str, str, str]) -> None:
    assert normalize(P(*given)) == P(*expected)


def test_normalize_keeps_os_version_and_sorts_features() -> None:
    p = normalize(Platform("windows", "amd64", "", "10.0.17763.1", ("b", "a", "b")))
    assert p == Platform("windows", "amd64", "", "10.0.17763.1", ("a", "b"))


# --- compatibility --------------------------------------------------------------------------


def strs(ps: list[Platform]) -> list[str]:
    return [str(p) for p in ps]


@pytest.mark.parametrize(
    ("want", "expected"),
    [
        ("linux/arm64", ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v8", ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v6", ["linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v5", ["linux/arm/v5"]),
        ("linux/amd64", ["linux/amd64", "linux/386"]),
        (
            "linux/amd64/v4",
            ["linux/amd64/v4", "linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"],
        ),
        ("linux/386", ["linux/386"]),
        ("linux/s390x", ["linux/s390x"]),
        (
            "linux/arm64/v8.2",
            ["linux/arm64/v8.2", "linux/arm64/v8.1", "linux/arm64", "linux/arm/v8", "linux/arm/v7"],
        ),
        ("linux/arm64/v9", ["linux/arm64/v9", "linux/arm64/v8.5", "linux/arm64/v8.4", "linux/arm64/v8.3"]),
        ("linux/arm64/v9.1", ["linux/arm64/v9.1", "linux/arm64/v9", "linux/arm64/v8.6", "linux/arm64/v8.5"]),
    ],
)
def test_compatible_platforms(want: str, expected: list[str]) -> None:
    got = strs(compatible_platforms(parse_platform(want)))
    assert got[: len(expected)] == expected
    if "arm64/v" not in want:
        assert got == expected


def test_compatible_platforms_end_of_arm64_v9() -> None:
    got = strs(compatible_platforms(parse_platform("linux/arm64/v9")))
    assert got[-6:] == [
        "linux/arm64/v8.1",
        "linux/arm64",
        "linux/arm/v8",
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert len(got) == len(set(got))


def test_compatible_platforms_of_the_last_arm64_v9() -> None:
    """v9.5 runs v8.9 at most (containerd caps v8.(x+5) at the last v8), never a v8.10."""
    got = strs(compatible_platforms(parse_platform("linux/arm64/v9.5")))
    assert got[:7] == [
        "linux/arm64/v9.5",
        "linux/arm64/v9.4",
        "linux/arm64/v9.3",
        "linux/arm64/v9.2",
        "linux/arm64/v9.1",
        "linux/arm64/v9",
        "linux/arm64/v8.9",
    ]
    assert all(parse_platform(p) for p in got)  # every one a known platform


@pytest.mark.parametrize(
    ("given", "needed", "older"),
    [
        ("linux/arm/v6", "linux/arm/v7", True),
        ("linux/arm/v5", "linux/arm/v8", True),
        ("linux/arm/v7", "linux/arm/v8", True),
        ("linux/arm", "linux/arm/v8", True),  # arm alone is v7
        ("linux/arm/v7", "linux/arm/v7", False),
        ("linux/arm/v8", "linux/arm/v6", False),
        ("linux/arm/v7", "linux/arm/v5", False),
        ("linux/amd64", "linux/amd64/v3", True),
        ("linux/amd64/v4", "linux/amd64/v2", False),
        ("linux/arm64", "linux/arm64/v8.2", True),
        ("linux/arm64/v9", "linux/arm64/v8.5", False),
        ("linux/arm64/v9", "linux/arm64/v8.6", True),  # v9.0 has v8.5's features, not v8.6's
        ("linux/arm64/v8.2", "linux/arm64/v9", True),
        ("linux/arm64", "linux/arm/v7", False),  # another architecture: a contradiction, not "older"
        ("linux/amd64", "linux/arm/v7", False),
        ("windows/arm/v6", "linux/arm/v7", False),
    ],
)
def test_variant_older(given: str, needed: str, older: bool) -> None:
    given_p, needed_p = parse_platform(given), parse_platform(needed)
    assert variant_older(given_p, needed_p) is older


def test_variant_older_when_the_program_does_not_say() -> None:
    """An ARM ELF without .ARM.attributes gives linux/arm with no variant: nothing to compare."""
    assert variant_older(parse_platform("linux/arm/v5"), Platform("linux", "arm")) is False
    assert variant_older(Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7")) is True  # not normalised


def test_compatible_platforms_keep_os_fields_and_normalise() -> None:
    want = Platform("Windows", "x86_64", "", "10.0.17763", ("win32k",))
    got = compatible_platforms(want)
    assert got[0] == Platform("windows", "amd64", "", "10.0.17763", ("win32k",))
    assert all(p.os_version == "10.0.17763" and p.os_features == ("win32k",) for p in got)


def test_match_rank() -> None:
    arm64 = parse_platform("linux/arm64")
    assert match_rank(arm64, P("linux", "arm64", "v8")) == 0
    assert match_rank(arm64, P("linux", "aarch64")) == 0
    assert match_rank(arm64, P("linux", "arm", "v7")) == 2
    assert match_rank(arm64, P("linux", "arm")) == 2
    assert match_rank(arm64, P("linux", "amd64")) is None
    assert match_rank(arm64, P("windows", "arm64")) is None
    assert match_rank(P("linux", "arm", "v6"), P("linux", "arm", "v7")) is None
    assert match_rank(P("linux", "amd64"), P("linux", "386")) == 1


def test_match_rank_os_version() -> None:
    want = P("windows", "amd64")
    assert match_rank(want, P("windows", "amd64", os_version="10.0.17763.2686")) == 0
    pinned = P("windows", "amd64", os_version="10.0.17763.2686")
    assert match_rank(pinned, P("windows", "amd64", os_version="10.0.17763.2686")) == 0
    assert match_rank(pinned, P("windows", "amd64", os_version="10.0.20348.587")) is None
    assert match_rank(pinned, P("windows", "amd64")) == 0
    build = P("windows", "amd64", os_version="10.0.17763")
    assert match_rank(build, P("windows", "amd64", os_version="10.0.17763.2686")) == 0
    assert match_rank(build, P("windows", "amd64", os_version="10.0.177630")) is None


def test_match_rank_os_features() -> None:
    assert match_rank(P("linux", "amd64"), Platform("linux", "amd64", os_features=("sse4",))) is None
    assert match_rank(Platform("linux", "amd64", os_features=("sse4",)), P("linux", "amd64")) == 0
    assert match_rank(P("windows", "amd64"), Platform("windows", "amd64", os_features=("win32k",))) == 0


# --- selection against hello-world ----------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "index"),
    [
        ("linux/amd64", 0),
        ("linux/arm64", 3),
        ("linux/arm64/v8", 3),
        ("linux/arm/v8", 2),
        ("linux/arm/v7", 2),
        ("linux/arm", 2),
        ("linux/arm/v6", 1),
        ("linux/arm/v5", 1),
        ("linux/386", 4),
        ("linux/mips64le", 5),
        ("linux/ppc64le", 6),
        ("linux/riscv64", 7),
        ("linux/s390x", 8),
        ("windows/amd64", 9),
        ("linux/amd64/v3", 0),
        ("linux/ppc64", None),
        ("linux/loong64", None),
        ("windows/arm64", None),
        ("darwin/amd64", None),
    ],
)
def test_select_hello_world(want: str, index: int | None) -> None:
    assert select_platform(parse_platform(want), HELLO) == index


def test_select_windows_by_version() -> None:
    want = P("windows", "amd64", os_version="10.0.17763.2686")
    assert select_platform(want, HELLO) == 10


def test_select_prefers_rank_then_order_and_skips_none() -> None:
    cands: list[Platform | None] = [
        None,
        P("linux", "arm", "v5"),
        P("linux", "arm", "v6"),
        P("linux", "arm", "v6"),
    ]
    assert select_platform(parse_platform("linux/arm/v7"), cands) == 2
    assert select_platform(parse_platform("linux/amd64"), [None, None]) is None
    assert select_platform(parse_platform("linux/amd64"), []) is None
    assert select_platform(parse_platform("linux/amd64"), [P("linux", "386"), P("linux", "amd64")]) == 1


# --- the host -------------------------------------------------------------------------------


def test_host_platform_is_linux_and_known() -> None:
    host = host_platform()
    assert host.os == "linux"
    assert host.architecture in KNOWN_ARCHITECTURES
    assert host == normalize(host)


@pytest.mark.parametrize(
    ("machine", "byteorder", "cpuinfo", "expected"),
    [
        ("x86_64", "little", "", "linux/amd64"),
        ("AMD64", "little", "", "linux/amd64"),
        ("i686", "little", "", "linux/386"),
        ("aarch64", "little", "CPU architecture: 8\n", "linux/arm64"),
        ("arm64", "little", "", "linux/arm64"),
        ("armv7l", "little", "", "linux/arm/v7"),
        ("armv7l", "little", "processor\t: 0\nCPU architecture: 7\n", "linux/arm/v7"),
        ("armv6l", "little", "", "linux/arm/v6"),
        (
            "armv7l",
            "little",
            "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n",
            "linux/arm/v6",
        ),
        ("armv8l", "little", "CPU architecture: 8\n", "linux/arm/v8"),
        ("armv5tel", "little", "CPU architecture: 5TE\n", "linux/arm/v5"),
        ("arm", "little", "", "linux/arm/v7"),
        ("ppc64le", "little", "", "linux/ppc64le"),
        ("ppc64", "big", "", "linux/ppc64"),
        ("s390x", "big", "", "linux/s390x"),
        ("riscv64", "little", "", "linux/riscv64"),
        ("mips64", "little", "", "linux/mips64le"),
        ("mips64", "big", "", "linux/mips64"),
        ("mips", "little", "", "linux/mipsle"),
        ("loongarch64", "little", "", "linux/loong64"),
    ],
)
def test_machine_platform(machine: str, byteorder: str, cpuinfo: str, expected: str) -> None:
    assert str(_machine_platform(machine, byteorder, lambda: cpuinfo)) == expected


def test_machine_platform_unknown() -> None:
    with pytest.raises(PlatformError, match="cannot tell which platform"):
        _machine_platform("vax", "little", lambda: "")


# --- properties -----------------------------------------------------------------------------

_words = st.sampled_from(
    [
        *KNOWN_OSES,
        *KNOWN_ARCHITECTURES,
        "x86_64",
        "aarch64",
        "armhf",
        "armel",
        "i386",
        "macos",
        "v7",
        "v8",
        "8",
        "v9.0",
        "v1",
        "v3",
        "V8",
        "Linux",
        "",
        " ",
        "foo",
        "7",
        "arm64",
        "arm",
        "v9",
        "v8.9",
        "v9.5",
        "s390x",
    ]
)
_texts = st.one_of(
    st.text(),
    st.text(alphabet="abcdlinuxarm64v78/._- ", max_size=30),
    st.lists(_words, min_size=1, max_size=4).map("/".join),
)


@given(_texts)
def test_parse_raises_only_invalid_platform(text: str) -> None:
    try:
        parse_platform(text)
    except InvalidPlatform as exc:
        assert str(exc) and exc.exit_code == 2


@given(_texts)
def test_parse_str_round_trip(text: str) -> None:
    try:
        p = parse_platform(text)
    except PlatformError:
        return
    assert parse_platform(str(p)) == p
    assert p.variant in KNOWN_VARIANTS.get(p.architecture, ("",))
    assert normalize(p) == p
    assert compatible_platforms(p)[0] == p
    assert match_rank(p, p) == 0


_field = st.text(max_size=12)


@given(st.builds(Platform, _field, _field, _field, _field, st.lists(_field, max_size=3).map(tuple)))
def test_dict_round_trip(p: Platform) -> None:
    d = p.to_dict()
    assert Platform.from_dict(d) == p
    assert all(v for v in d.values())


@given(
    st.dictionaries(
        st.sampled_from(["os", "architecture", "variant", "os.version", "os.features", "x"]),
        st.one_of(st.none(), st.integers(), st.text(), st.lists(st.one_of(st.text(), st.integers()))),
    )
)
def test_from_dict_raises_only_value_error(d: dict[str, object]) -> None:
    try:
        platform = Platform.from_dict(d)
    except ValueError:
        return
    assert Platform.from_dict(platform.to_dict()) == platform  # what it took, it keeps
