"""A base's distribution and packages, from bases built with umoci and listed as a build lists
them: a real dpkg status (checked against dpkg-query), distroless's status.d, Alpine's
installed database; and bases whose databases are hostile, within bounds."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
import tracemalloc
from pathlib import Path

import pytest

from tests.support.peers import require, run
from tests.support.sbom_inputs import listed_tree, umoci_base
from zeroimage import rootfs
from zeroimage.errors import InputError
from zeroimage.image import Blob
from zeroimage.layers.entries import Entry
from zeroimage.oci import Descriptor, sha256_digest
from zeroimage.oci.mediatypes import OCI_LAYER_GZIP
from zeroimage.rootfs import FileTree
from zeroimage.sbom import BaseContents, Distro, read_base
from zeroimage.sbom.base import parse_os_release

DATA = Path(__file__).parent.parent / "data"
DEBIAN_OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL="https://www.debian.org/"\n'
)
#: A package that was removed, its configuration files left: dpkg lists it, nobody has it.
REMOVED = (
    "Package: gone\nStatus: deinstall ok config-files\nPriority: optional\nSection: misc\n"
    "Maintainer: Nobody <nobody@example.org>\nArchitecture: amd64\nVersion: 1.0-1\n"
    "Conffiles:\n /etc/gone.conf 0123456789abcdef0123456789abcdef\nDescription: a removed package\n"
)


def host_status() -> bytes:
    status = Path("/var/lib/dpkg/status")
    if not status.is_file():
        pytest.skip("this host has no dpkg database")
    return status.read_bytes() + b"\n" + REMOVED.encode()


def dpkg_query(status: bytes, work: Path) -> set[tuple[str, str, str, str, str]]:
    """What dpkg itself lists of ``status``: installed packages' name, version, architecture,
    source name and source version."""
    require("dpkg-query")
    admin = work / "admin"
    admin.mkdir()
    (admin / "status").write_bytes(status)
    fields = "${Package}\t${Version}\t${Architecture}\t${db:Status-Status}\t${source:Package}\t${source:Version}\n"
    listed = run(["dpkg-query", f"--admindir={admin}", "-W", f"-f={fields}"]).stdout
    rows = [line.split("\t") for line in listed.splitlines()]
    return {(n, v, a, s, sv) for n, v, a, state, s, sv in rows if state not in ("not-installed", "config-files")}


def test_a_debian_base_lists_what_dpkg_lists(tmp_path: Path) -> None:
    """The host's real status file in a base (os-release a symlink, as in Debian's images):
    every installed package with its version, architecture and source, as dpkg-query says."""
    status = host_status()
    blobs = umoci_base(
        tmp_path,
        [
            {
                "var/lib/dpkg/status": status,
                "usr/lib/os-release": DEBIAN_OS_RELEASE,
                "etc/os-release": "->../usr/lib/os-release",
            }
        ],
    )
    expected = dpkg_query(status, tmp_path)
    for attempt in ("listed", "from the listing cache"):
        base = read_base(listed_tree(blobs, tmp_path / "cache"))
        assert base.warnings == (), attempt
        assert base.distro == Distro("debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)"), attempt
        ours = {
            (
                p.name,
                p.version,
                p.purl.partition("arch=")[2].partition("&")[0],
                p.source or p.name,
                p.source_version or p.version,
            )
            for p in base.packages
        }
        assert ours == expected, attempt
    libc = next(p for p in base.packages if p.name == "libc6")
    assert libc.purl.startswith(f"pkg:deb/debian/libc6@{libc.version.replace('+', '%2B')}?arch=")
    assert libc.purl.endswith("&distro=debian-12&upstream=glibc") and libc.supplier.startswith("GNU Libc Maintainers")


def test_the_cached_listing_keeps_a_fraction_of_the_database(tmp_path: Path) -> None:
    status = host_status()
    blobs = umoci_base(tmp_path, [{"var/lib/dpkg/status": status}])
    tree = listed_tree(blobs, tmp_path / "cache")
    found = tree.resolve("var/lib/dpkg/status")
    assert found is not None and found[1].content is not None
    assert len(found[1].content) < len(status) / 2
    (cached,) = (tmp_path / "cache" / "listings").iterdir()
    assert cached.read_bytes().startswith(b"zeroimage listing 5\n")


def test_kept_databases_count_against_the_text_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is kept of a database is counted in MAX_TEXT like every kept content."""
    blobs = umoci_base(tmp_path, [{"var/lib/dpkg/status": host_status()}])
    monkeypatch.setattr(rootfs, "MAX_TEXT", 60_000)
    with pytest.raises(InputError, match="more than zeroimage lists"):
        listed_tree(blobs)


STATUS_D = {
    "base-files": (
        "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n"
        "Maintainer: Santiago Vila <sanvila@debian.org>\nInstalled-Size: 341\nPriority: required\n"
        "Section: admin\nDescription: Debian base system miscellaneous files\n This package contains...\n"
    ),
    "libc6": (
        "Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nSource: glibc\n"
        "Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\nMulti-Arch: same\n"
        "Description: GNU C Library: Shared libraries\n"
    ),
    "libssl3": (
        "Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\nSource: openssl (3.0.11-1~deb12u1)\n"
        "Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>\n"
    ),
    "libc6.md5sums": "0123456789abcdef0123456789abcdef  lib/x86_64-linux-gnu/libc.so.6\n",
}


def test_a_distroless_base_lists_its_status_d(tmp_path: Path) -> None:
    """distroless: one paragraph a file in status.d (and .md5sums beside, which are not packages)."""
    files: dict[str, str | bytes | None] = {f"var/lib/dpkg/status.d/{n}": t for n, t in STATUS_D.items()}
    files["etc/os-release"] = 'PRETTY_NAME="Distroless"\nNAME="Debian GNU/Linux"\nID="debian"\nVERSION_ID="12"\n'
    base = read_base(listed_tree(umoci_base(tmp_path, [files])))
    assert base.warnings == ()
    assert [p.purl for p in base.packages] == [
        "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc",
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl%403.0.11-1~deb12u1",
    ]
    libssl = base.packages[2]
    assert (libssl.source, libssl.source_version) == ("openssl", "3.0.11-1~deb12u1")


ALPINE_INSTALLED = """C:Q1t5qk6l4Lr3uYd8Wb8k6Qh5oK1h0=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407587
I:662528
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705413347
c:13a1d2fc5d9c4b9f3e0a5e5d9b7c8a2d6e4f1a3b
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1yTfZAbz8GsZ3eIPNsXLTA5Xo/qQ=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1m0gzeFp3Wq9E7Lw0XLmPX8hY0Xs=
P:libcrypto3
V:3.1.4-r5
A:x86_64
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>
D:so:libc.musl-x86_64.so.1
p:so:libcrypto.so.3=3
F:lib
R:libcrypto.so.3
a:0:0:755

P:busybox
V:1.36.1-r15
A:x86_64
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>

P:weird-license
V:1.0-r0
A:x86_64
L:GPL2+ and custom
o:weird
"""


def test_an_alpine_base_lists_its_installed_database(tmp_path: Path) -> None:
    files = {
        "lib/apk/db/installed": ALPINE_INSTALLED,
        "etc/os-release": 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n',
    }
    base = read_base(listed_tree(umoci_base(tmp_path, [files])))
    assert base.warnings == () and base.distro is not None and base.distro.id == "alpine"
    by_name = {p.name: p for p in base.packages}
    assert sorted(by_name) == ["busybox", "libcrypto3", "musl", "weird-license"]
    assert by_name["musl"].purl == "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1"
    crypto = by_name["libcrypto3"]
    assert crypto.purl == "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=alpine-3.19.1&upstream=openssl"
    assert (crypto.licenses, crypto.source, crypto.supplier) == (
        ("Apache-2.0",),
        "openssl",
        "Ariadne Conill <ariadne@dereferenced.org>",
    )
    assert by_name["busybox"].supplier == "Sören Tempel <soeren+alpine@soeren-tempel.net>"


def test_a_whiteout_removes_the_database_and_a_later_layer_replaces_it(tmp_path: Path) -> None:
    status = "Package: first\nVersion: 1\nArchitecture: all\n"
    blobs = umoci_base(
        tmp_path,
        [
            {"var/lib/dpkg/status": status, "etc/os-release": DEBIAN_OS_RELEASE},
            {"var/lib/dpkg/status": None},
        ],
    )
    assert read_base(listed_tree(blobs)).packages == ()
    replaced = umoci_base(
        tmp_path / "second",
        [
            {"var/lib/dpkg/status": status},
            {"var/lib/dpkg/status": "Package: second\nVersion: 2\nArchitecture: all\n"},
        ],
    )
    assert [p.name for p in read_base(listed_tree(replaced)).packages] == ["second"]


def test_a_scratch_like_base_has_nothing_to_list(tmp_path: Path) -> None:
    """hello-world: one program, no os-release, no package database."""
    with tarfile.open(DATA / "hello-world-linux-arm64.tar") as archive:
        archive.extractall(tmp_path, filter="data")
    (entry,) = json.loads((tmp_path / "index.json").read_text())["manifests"]
    manifest = json.loads((tmp_path / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    blobs = []
    for layer in manifest["layers"]:
        path = tmp_path / "blobs/sha256" / layer["digest"][7:]
        blobs.append(Blob(Descriptor.from_dict(layer), lambda path=path: path.open("rb")))  # type: ignore[misc]
    assert read_base(listed_tree(blobs)) == BaseContents()


def gzip_layer(files: dict[str, bytes]) -> Blob:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    compressed = gzip.compress(raw.getvalue(), 1)
    return Blob(Descriptor(OCI_LAYER_GZIP, sha256_digest(compressed), len(compressed)), lambda: io.BytesIO(compressed))


def bounded(blob: Blob) -> tuple[BaseContents, int]:
    """read_base of a one-layer base, in a thread that must end within 60 s; and the peak memory."""
    outcome: list[BaseContents] = []
    tracemalloc.start()
    worker = threading.Thread(target=lambda: outcome.append(read_base(listed_tree([blob]))), daemon=True)
    worker.start()
    worker.join(60)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not worker.is_alive(), "reading the base did not end"
    return outcome[0], peak


def test_millions_of_paragraphs_are_not_read(tmp_path: Path) -> None:
    """3.2 million packages (73 MB): larger than a database zeroimage reads; said, not read."""
    paragraph = b"Package: a\nVersion: 1\n\n"
    huge = paragraph * (rootfs._MAX_DATABASE // len(paragraph) + 100_000)
    base, peak = bounded(gzip_layer({"var/lib/dpkg/status": huge}))
    assert base.packages == ()
    assert base.warnings == ("/var/lib/dpkg/status is larger than zeroimage reads: its packages are not described",)
    assert peak < len(huge) // 4, peak


def test_a_database_whose_kept_fields_are_too_large_is_not_kept() -> None:
    """Under the size read, but more than 2 MiB of kept fields: stops there, and says so."""
    huge = b"Package: a\nVersion: 1\n\n" * 100_000
    base, peak = bounded(gzip_layer({"var/lib/dpkg/status": huge}))
    assert base.packages == ()
    assert base.warnings == ("/var/lib/dpkg/status is larger than zeroimage reads: its packages are not described",)
    assert peak < 8 * rootfs._MAX_COMPACT, peak


def test_blank_paragraphs_and_endless_lines_cost_nothing() -> None:
    huge = (
        b"\n" * 500_000
        + b"Package: " + b"x" * (1 << 20) + b"\nVersion: 1\n\n"  # a name longer than any line kept
        + b"Package: ok\nVersion: 1\nDescription: " + b"y" * (1 << 20) + b"\n\n"
    )  # fmt: skip
    base, _ = bounded(gzip_layer({"var/lib/dpkg/status": huge}))
    assert [p.name for p in base.packages] == ["ok"]
    assert base.warnings == ("1 entries of the base's package databases have no name or version",)


def test_escape_sequences_in_names_are_data(tmp_path: Path) -> None:
    status = b"Package: evil\x1b]0;owned\x07\nVersion: 1\xff\nArchitecture: amd64\n"
    base, _ = bounded(gzip_layer({"var/lib/dpkg/status": status}))
    (package,) = base.packages
    assert package.name == "evil\x1b]0;owned\x07" and package.version == "1\ufffd"
    assert package.purl == "pkg:deb/debian/evil%1B%5D0%3Bowned%07@1%EF%BF%BD?arch=amd64"


@pytest.mark.parametrize(
    "text, distro",
    [
        (
            'ID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\nID_LIKE=debian\n',
            Distro("ubuntu", "22.04", "jammy", "", ("debian",)),
        ),
        ('# comment\nID=\'alpine\'\nPRETTY_NAME="Alpine \\"edge\\""\n', Distro("alpine", pretty_name='Alpine "edge"')),
        ("NAME=nothing\n", None),
    ],
)
def test_os_release(text: str, distro: Distro | None) -> None:
    assert parse_os_release(text) == distro


def test_an_ubuntu_base_names_its_packages_for_ubuntu() -> None:
    status = b"Package: bash\nStatus: install ok installed\nVersion: 5.1-6ubuntu1\nArchitecture: amd64\n"
    os_release = b'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n'
    base, _ = bounded(gzip_layer({"etc/os-release": os_release, "var/lib/dpkg/status": status}))
    assert [p.purl for p in base.packages] == ["pkg:deb/ubuntu/bash@5.1-6ubuntu1?arch=amd64&distro=ubuntu-22.04"]


def test_a_database_the_build_adds_is_read_as_a_base_s(tmp_path: Path) -> None:
    """``--add status:/var/lib/dpkg/status`` (from a file) and an os-release given as data: kept
    the same way, so the image's filesystem says what the base's would."""
    status = tmp_path / "status"
    status.write_text("Package: added\nVersion: 2\nArchitecture: all\nDescription: long\n text\n")
    tree = FileTree()
    tree.add_entries(
        [
            Entry("/var/lib/dpkg/status", "file", 0o644, source=status, size=status.stat().st_size),
            Entry("/etc/os-release", "file", 0o644, data=b"ID=debian\nVERSION_ID=12\n"),
        ]
    )
    assert tree.read_text("var/lib/dpkg/status") == "Package: added\nVersion: 2\nArchitecture: all\n"
    assert [p.purl for p in read_base(tree).packages] == ["pkg:deb/debian/added@2?arch=all&distro=debian-12"]


def test_a_deb_and_an_apk_of_one_name_version_and_arch_are_two_packages() -> None:
    """A base with both databases (a Debian with apk-tools, or the other way round) listing a
    ``zlib`` 1.3 of the same architecture: each ecosystem's package described (before: keyed by
    name, version and arch alone, the apk one was dropped as a duplicate)."""
    status = b"Package: zlib\nStatus: install ok installed\nVersion: 1.3\nArchitecture: x86_64\n"
    installed = b"P:zlib\nV:1.3\nA:x86_64\n"
    base, _ = bounded(gzip_layer({"var/lib/dpkg/status": status, "lib/apk/db/installed": installed}))
    assert [p.purl for p in base.packages] == [
        "pkg:apk/alpine/zlib@1.3?arch=x86_64",
        "pkg:deb/debian/zlib@1.3?arch=x86_64",
    ]
