"""Package URLs: the purl specification's own build examples (its tests/types/*-test.json),
its type rules, and packageurl-python (an independent implementation) reading ours back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroimage.sbom import purl

packageurl = pytest.importorskip("packageurl")

#: "build" tests of the purl specification: components → the canonical string.
SPEC_BUILDS = [
    (
        ("golang", "context", "github.com/gorilla", "234fd47e07d1004f0aed9c", {}, ""),
        "pkg:golang/github.com/gorilla/context@234fd47e07d1004f0aed9c",
    ),
    (
        ("golang", "genproto", "google.golang.org", "", {}, "googleapis/api/annotations"),
        "pkg:golang/google.golang.org/genproto#googleapis/api/annotations",
    ),
    (
        ("golang", "context", "github.com/gorilla", "234fd47e07d1004f0aed9c", {}, "api"),
        "pkg:golang/github.com/gorilla/context@234fd47e07d1004f0aed9c#api",
    ),
    (
        ("deb", "curl", "debian", "7.50.3-1", {"arch": "i386", "distro": "jessie"}, ""),
        "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie",
    ),
    (("deb", "dpkg", "ubuntu", "1.19.0.4", {"arch": "amd64"}, ""), "pkg:deb/ubuntu/dpkg@1.19.0.4?arch=amd64"),
    (("deb", "attr", "debian", "1:2.4.47-2", {"arch": "source"}, ""), "pkg:deb/debian/attr@1:2.4.47-2?arch=source"),
    (
        ("deb", "attr", "debian", "1:2.4.47-2+b1", {"arch": "amd64"}, ""),
        "pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64",
    ),
    (("apk", "curl", "alpine", "7.83.0-r0", {"arch": "x86"}, ""), "pkg:apk/alpine/curl@7.83.0-r0?arch=x86"),
    (("cargo", "rand", "", "0.7.2", {}, ""), "pkg:cargo/rand@0.7.2"),
    (
        (
            "oci",
            "debian",
            "",
            "sha256:244fd47e07d10",
            {"arch": "amd64", "repository_url": "docker.io/library/debian", "tag": "latest"},
            "",
        ),
        "pkg:oci/debian@sha256:244fd47e07d10?arch=amd64&repository_url=docker.io%2Flibrary%2Fdebian&tag=latest",
    ),
    (
        (
            "oci",
            "static",
            "",
            "sha256:244fd47e07d10",
            {"repository_url": "gcr.io/distroless/static", "tag": "latest"},
            "",
        ),
        "pkg:oci/static@sha256:244fd47e07d10?repository_url=gcr.io%2Fdistroless%2Fstatic&tag=latest",
    ),
    (
        ("oci", "hello-wasm", "", "sha256:244fd47e07d10", {"tag": "v1"}, ""),
        "pkg:oci/hello-wasm@sha256:244fd47e07d10?tag=v1",
    ),
]


@pytest.mark.parametrize("components, expected", SPEC_BUILDS, ids=[e for _, e in SPEC_BUILDS])
def test_the_specification_s_build_examples(
    components: tuple[str, str, str, str, dict[str, str], str], expected: str
) -> None:
    type_, name, namespace, version, qualifiers, subpath = components
    assert (
        purl.build(type_, name, namespace=namespace, version=version, qualifiers=qualifiers, subpath=subpath)
        == expected
    )


def test_the_typed_builders_follow_each_type_s_rules() -> None:
    # golang: namespace and name lowercased; the main module's (devel) has no version; no namespace, no purl
    assert purl.golang("github.com/Azure/go-autorest", "v0.11.1+incompatible") == (
        "pkg:golang/github.com/azure/go-autorest@v0.11.1%2Bincompatible"
    )
    assert purl.golang("example.com/app", "(devel)") == "pkg:golang/example.com/app"
    assert purl.golang("app", "v1.0.0") == ""
    assert (
        purl.deb("Debian", "Curl", "7.50.3-1", arch="i386", distro="jessie")
        == "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"
    )
    assert purl.apk("alpine", "apk", "2.12.9-r3", arch="x86") == "pkg:apk/alpine/apk@2.12.9-r3?arch=x86"
    assert purl.cargo("clap", "2.33.0") == "pkg:cargo/clap@2.33.0"
    assert purl.oci("docker.io/library/Debian", "sha256:244fd47e07d10", arch="amd64", tag="latest") == (
        "pkg:oci/debian@sha256:244fd47e07d10?arch=amd64&repository_url=docker.io%2Flibrary%2FDebian&tag=latest"
    )
    assert purl.deb("debian", "", "1") == "" and purl.oci("", "sha256:x") == ""


def test_everything_but_letters_digits_and_dot_dash_underscore_tilde_colon_is_encoded() -> None:
    assert purl.encode("a-b_c.d~e:f") == "a-b_c.d~e:f"
    assert purl.encode("a b+c/d@e?f#g%h&i=j\x1b\x00é") == "a%20b%2Bc%2Fd%40e%3Ff%23g%25h%26i%3Dj%1B%00%C3%A9"


# packageurl-python strips white space around each component, which the specification does not
# ask: components that begin or end with white space are left out.
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda s: s == s.strip()
)


@given(
    namespace=st.lists(_TEXT.filter(lambda s: "/" not in s and s not in (".", "..")), min_size=1, max_size=3),
    name=_TEXT.filter(lambda s: "/" not in s),
    version=_TEXT,
    arch=_TEXT,
)
def test_packageurl_python_reads_ours_back(namespace: list[str], name: str, version: str, arch: str) -> None:
    """Whatever a database calls a package, an independent parser gets the same components back."""
    text = purl.deb("/".join(namespace), name, version, arch=arch)
    parsed = packageurl.PackageURL.from_string(text)
    assert (parsed.type, parsed.namespace, parsed.name, parsed.version) == (
        "deb",
        "/".join(namespace).lower(),
        name.lower(),
        version,
    )
    assert parsed.qualifiers == {"arch": arch}
