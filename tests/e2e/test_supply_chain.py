"""Signatures, SBOMs and provenance (issue 21), end to end: the real CLI builds, pushes to the
real CNCF registry (no Referrers API: the tag schema) or through a double that has the API, or
writes OCI archives and layouts; what it attached is read back apart from zeroimage's code
(skopeo, raw HTTP, the layout's files) and judged by the verifiers others use — npm's
@sigstore/verify for the bundles, ``cryptography`` for cosign's legacy signatures, in-toto's
bindings for the statements, ``pyspdxtools`` and cyclonedx-python-lib for the SBOMs, ``go version
-m`` and dpkg's own status file for what the SBOMs must list — and the images still open and run
in skopeo, umoci, oci-image-tool and runc.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support import cli, peers
from tests.support.attached import (
    BUNDLE,
    COSIGN_SIGN,
    CYCLONEDX,
    EMPTY_DIGEST,
    REF_NAME,
    SLSA_PROVENANCE,
    SPDX,
    Attached,
    KeyPair,
    LayoutReader,
    RegistryReader,
    artifact,
    check_bundle,
    check_cyclonedx,
    check_legacy,
    check_slsa_predicate,
    check_spdx,
    dsse_statement,
    http,
    make_key,
    purls,
    put_manifest,
    referrers_tag,
    upload_blob,
)
from tests.support.containerd import Containerd
from tests.support.fleet import Recompressed, mark, pull, recompressed, requests_since
from tests.support.images import OCI_INDEX, OCI_MANIFEST, sha256_file
from tests.support.outcomes import digest_in, fingerprint, refused, requests_for
from tests.support.podman import Podman
from tests.support.programs import static_amd64_header
from tests.support.referrers_registry import ReferrersRegistry
from tests.support.registry import Registry, seed, start_registry
from tests.support.sbom_inputs import go_program

#: Every build fixes its time, as reproducible CI does.
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
HELLO = "Hello from a FROM-scratch image built by zeroimage!"
DATA = Path(__file__).parent.parent / "data"
#: The peak RSS the project allows a push (tests/e2e/test_hostile_registry.py: "a normal push
#: peaks near 60 MiB"; test_docker_daemon.py bounds a load the same).
PUSH_RSS_BOUND_KB = 100 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the module; each test uses repositories of its own."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@dataclass(frozen=True)
class Keys:
    ours: KeyPair
    other: KeyPair


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Our key pair and another's (a test that judges bundles skips without @sigstore/verify:
    `make sigstore-verifier`)."""
    folder = tmp_path_factory.mktemp("keys")
    return Keys(make_key(folder, "cosign"), make_key(folder, "other"))


def sign(keys: Keys) -> list[str]:
    return ["--sign-key", str(keys.ours.private)]


def referrers_of(reader: RegistryReader, repository: str, digest: str) -> dict[str, list[Attached]]:
    """The referrers the tag-schema index of ``digest`` lists, read and checked, by artifact type;
    every entry must describe its manifest as the spec asks."""
    index = json.loads(reader.manifest(repository, referrers_tag(digest)))
    assert index["mediaType"] == OCI_INDEX, index
    found: dict[str, list[Attached]] = {}
    for entry in index["manifests"]:
        got = artifact(reader, repository, entry["digest"], digest)
        assert (entry["mediaType"], entry["size"], entry["artifactType"]) == (
            OCI_MANIFEST,
            len(got.raw),
            got.artifact_type,
        ), entry
        assert entry.get("annotations", {}) == got.manifest.get("annotations", {}), entry
        found.setdefault(got.artifact_type, []).append(got)
    return found


def bundles_by_predicate(bundles: list[Attached]) -> dict[str, Attached]:
    """Bundle referrers by the predicate type of the statement each signs (one each)."""
    by: dict[str, Attached] = {}
    for bundle in bundles:
        predicate = dsse_statement(bundle.content)["predicateType"]
        assert predicate not in by, f"two bundles of {predicate}"
        assert bundle.manifest["annotations"]["dev.sigstore.bundle.predicateType"] == predicate
        by[predicate] = bundle
    return by


def push_everything(home: cli.Home, keys: Keys, reference: str, program: Path) -> cli.Result:
    """A push with an SPDX SBOM, signatures and provenance."""
    args = ["build", "--push", reference, "--sbom", "spdx", *sign(keys), "--provenance", str(program)]
    return home.run(*args, env=EPOCH, check=True)


def verify(home: cli.Home, key: KeyPair, source: str, *extra: str) -> cli.Result:
    return home.run("verify", "--key", str(key.public), *extra, source)


def verified_kinds(result: cli.Result) -> dict[str, list[dict[str, Any]]]:
    """What ``zeroimage verify --json`` found, by kind."""
    found: dict[str, list[dict[str, Any]]] = {}
    for attachment in json.loads(result.stdout)["attachments"]:
        found.setdefault(attachment["kind"], []).append(attachment)
    return found


# -- 1. the tag schema, on the real registry -------------------------------------------------------


def test_a_signed_push_keeps_its_tag_on_the_image_and_every_attachment_verifies(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = "signed/app"
    proc = push_everything(home, keys, f"{registry.host}/{repository}:v1", static_binary)
    digest = digest_in(proc.stdout)
    reader = RegistryReader(registry.host)

    # The tag names the image manifest itself, never an index of attestations.
    image = reader.manifest(repository, "v1")
    assert peers.digest_of(image) == digest
    assert json.loads(image)["mediaType"] == OCI_MANIFEST

    # The referrers tag: an OCI index of the SBOM, the signature and the provenance, each an
    # artifact about the image whose every blob (the empty config included) the registry holds.
    found = referrers_of(reader, repository, digest)
    assert {kind: len(items) for kind, items in found.items()} == {SPDX: 1, BUNDLE: 2}
    assert reader.has_blob(repository, EMPTY_DIGEST)
    bundles = bundles_by_predicate(found[BUNDLE])
    assert sorted(bundles) == [COSIGN_SIGN, SLSA_PROVENANCE]

    signature = check_bundle(bundles[COSIGN_SIGN].content, keys.ours, digest, COSIGN_SIGN)
    assert [s["digest"] for s in signature["subject"]] == [{"sha256": digest[7:]}]
    provenance = check_bundle(bundles[SLSA_PROVENANCE].content, keys.ours, digest, SLSA_PROVENANCE)
    materials = check_slsa_predicate(provenance)["buildDefinition"]["resolvedDependencies"]
    assert {"sha256": sha256_file(static_binary)} in [m["digest"] for m in materials], materials

    # cosign's legacy signature: the simple-signing payload names this digest, signed by the key.
    assert check_legacy(reader, repository, digest, keys.ours, f"{registry.host}/{repository}") == 1

    # The SBOM passes spdx-tools, and names the image by its digest and the program by its bytes.
    sbom = check_spdx(found[SPDX][0].content, tmp_path)
    assert any(digest in p for p in purls(sbom) if p.startswith("pkg:oci/")), purls(sbom)
    (program,) = [p for p in sbom["packages"] if p.get("packageFileName") == f"./{static_binary.name}"]
    assert {"algorithm": "SHA256", "checksumValue": sha256_file(static_binary)} in program["checksums"]

    # zeroimage verify: 0 with the key, listing what is attached; 1 in one line with another key.
    result = verify(home, keys.ours, f"{registry.host}/{repository}:v1")
    assert result.returncode == 0, result.describe()
    for kind in ("signature", "provenance", "sbom"):
        assert re.search(rf"^\s+{kind}\b", result.stdout, re.MULTILINE), result.stdout
    assert result.stdout.splitlines()[0] == f"{registry.host}/{repository}:v1@{digest}"
    assert result.stdout.splitlines()[-1] == f"{digest} is signed by this key (bundle, legacy)"
    by_digest = verify(home, keys.ours, f"{registry.host}/{repository}@{digest}")
    assert by_digest.returncode == 0 and by_digest.stdout.splitlines()[0] == f"{registry.host}/{repository}@{digest}"
    kinds = verified_kinds(verify(home, keys.ours, f"{registry.host}/{repository}:v1", "--json"))
    assert sorted((a["form"], a["verified"]) for a in kinds["signature"]) == [("bundle", True), ("legacy", True)]
    assert [a["verified"] for a in kinds["provenance"]] == [True]
    assert [a["form"] for a in kinds["sbom"]] == [SPDX]
    refused(verify(home, keys.other, f"{registry.host}/{repository}:v1"), 1, f"no valid signature of {digest}")

    # The image still runs.
    assert HELLO in peers.run_image(pull(registry, f"{repository}:v1", tmp_path / "pulled.tar")).stdout


def test_an_sbom_without_a_key_is_attached_unsigned_and_verify_says_there_is_no_signature(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = "unsigned/app"
    proc = home.run(
        "build", "--push", f"{registry.host}/{repository}:v1", "--sbom", "cyclonedx", str(static_binary),
        env=EPOCH, check=True,
    )  # fmt: skip
    digest = digest_in(proc.stdout)
    reader = RegistryReader(registry.host)
    found = referrers_of(reader, repository, digest)
    assert {kind: len(items) for kind, items in found.items()} == {CYCLONEDX: 1}
    check_cyclonedx(found[CYCLONEDX][0].content)
    assert reader.tags(repository) == sorted(["v1", referrers_tag(digest)])  # no .sig
    result = verify(home, keys.ours, f"{registry.host}/{repository}:v1")
    refused(result, 1, f"no signature of {digest} found")
    assert "sbom" in result.stdout and CYCLONEDX in result.stdout  # listed all the same


# -- 2. the Referrers API --------------------------------------------------------------------------


def test_a_registry_with_the_referrers_api_records_them_and_verify_finds_them_there(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = "api/app"
    with ReferrersRegistry(registry) as double:
        proc = push_everything(home, keys, f"{double.host}/{repository}:v1", static_binary)
        digest = digest_in(proc.stdout)
        reader = RegistryReader(double.host)
        recorded = double.referrers(repository, digest)
        assert sorted(entry["artifactType"] for entry in recorded) == [SPDX, BUNDLE, BUNDLE]
        for entry in recorded:
            artifact(reader, repository, entry["digest"], digest)
        assert not double.requested("PUT", r"/manifests/sha256-[0-9a-f]{64}$")  # no tag-schema index
        tags = reader.tags(repository)
        assert referrers_tag(digest) not in tags
        assert sorted(tags) == sorted(["v1", referrers_tag(digest) + ".sig"])  # cosign's legacy tag still

        before = len(double.requests)
        result = verify(home, keys.ours, f"{double.host}/{repository}:v1", "--json")
        assert result.returncode == 0, result.describe()
        asked = double.requests[before:]
        assert ("GET", f"/v2/{repository}/referrers/{digest}", 200) in asked, asked
        assert not [r for r in asked if f"/manifests/{referrers_tag(digest)}" in r[1] and not r[1].endswith(".sig")]
        kinds = verified_kinds(result)
        assert sorted(a["form"] for a in kinds["signature"] if a["verified"]) == ["bundle", "legacy"]
        assert [a["verified"] for a in kinds["provenance"]] == [True]
        assert len(kinds["sbom"]) == 1


# -- 3. several platforms --------------------------------------------------------------------------


def platform_name(entry: dict[str, Any]) -> str:
    platform = entry["platform"]
    return "-".join(p for p in (platform["os"], platform["architecture"], platform.get("variant")) if p)


def test_a_multi_platform_image_has_an_sbom_per_manifest_and_each_manifest_is_signed(
    registry: Registry, keys: Keys, static_binary: Path, busybox_arm64: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = "multi/app"
    proc = home.run(
        "build",
        "--push",
        f"{registry.host}/{repository}:v1",
        "--entrypoint-path",
        "/app",
        "--sbom",
        "cyclonedx",
        "--sbom-file",
        "sbom-{platform}.json",
        *sign(keys),
        str(static_binary),
        str(busybox_arm64),
        env=EPOCH,
        check=True,
    )
    digest = digest_in(proc.stdout)
    reader = RegistryReader(registry.host)
    raw = reader.manifest(repository, "v1")
    assert peers.digest_of(raw) == digest
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    manifests = {platform_name(entry): entry["digest"] for entry in index["manifests"]}
    assert sorted(manifests) == ["linux-amd64", "linux-arm64"]
    where = f"{registry.host}/{repository}"

    # The index: its signature (no SBOM: an SBOM describes one platform's manifest).
    found = referrers_of(reader, repository, digest)
    assert {kind: len(items) for kind, items in found.items()} == {BUNDLE: 1}
    check_bundle(found[BUNDLE][0].content, keys.ours, digest, COSIGN_SIGN)
    assert check_legacy(reader, repository, digest, keys.ours, where) == 1

    # Each manifest: its own SBOM (naming that manifest) and its own signatures.
    for name, manifest in manifests.items():
        found = referrers_of(reader, repository, manifest)
        assert {kind: len(items) for kind, items in found.items()} == {BUNDLE: 1, CYCLONEDX: 1}
        check_bundle(found[BUNDLE][0].content, keys.ours, manifest, COSIGN_SIGN)
        assert check_legacy(reader, repository, manifest, keys.ours, where) == 1
        sbom = found[CYCLONEDX][0].content
        document = check_cyclonedx(sbom)
        assert manifest in document["metadata"]["component"]["purl"], document["metadata"]["component"]
        assert (home.work / f"sbom-{name}.json").read_bytes() == sbom  # --sbom-file: the very bytes pushed
    assert sorted(p.name for p in home.work.glob("sbom-*")) == ["sbom-linux-amd64.json", "sbom-linux-arm64.json"]

    result = verify(home, keys.ours, f"{where}:v1")
    assert result.returncode == 0, result.describe()
    assert result.stdout.splitlines()[-1] == f"{digest} is signed by this key (bundle, legacy)"


# -- 4. OCI archives and layouts; Docker outputs ------------------------------------------------------


def check_layout(reader: LayoutReader, digest: str, tag: str, key: KeyPair, folder: Path) -> list[str]:
    """The layout tags ``digest`` as ``tag`` and lists its three attachments untagged; each is
    what the verifiers accept. Returns the attachments' digests."""
    entries = reader.index()["manifests"]
    assert [e["digest"] for e in entries if (e.get("annotations") or {}).get(REF_NAME) == tag] == [digest]
    referrers = reader.referrers(digest)
    assert all(REF_NAME not in (e.get("annotations") or {}) for e in referrers), referrers
    found: dict[str, list[Attached]] = {}
    for entry in referrers:
        got = artifact(reader, "", entry["digest"], digest)
        assert entry["artifactType"] == got.artifact_type
        found.setdefault(got.artifact_type, []).append(got)
    assert {kind: len(items) for kind, items in found.items()} == {SPDX: 1, BUNDLE: 2}
    for predicate, bundle in bundles_by_predicate(found[BUNDLE]).items():
        check_bundle(bundle.content, key, digest, predicate)
    check_spdx(found[SPDX][0].content, folder, f"sbom-{digest[7:19]}")
    return [e["digest"] for e in referrers]


def test_oci_archives_and_layouts_hold_the_attachments_and_the_image_opens_by_its_tag(
    keys: Keys, static_binary: Path, busybox: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path / "home")
    attach = ["--sbom", "spdx", *sign(keys), "--provenance"]
    archive, layout = home.work / "app.tar", home.work / "layout"
    proc = home.run(
        "build",
        "-o",
        "oci-archive:app.tar:v1",
        "-o",
        "oci:layout:v1",
        *attach,
        str(static_binary),
        env=EPOCH,
        check=True,
    )
    digest = digest_in(proc.stdout.splitlines()[0])
    assert digest_in(proc.stdout.splitlines()[1]) == digest
    extracted = LayoutReader(peers.extract_archive(archive, tmp_path / "extracted"))
    in_archive = check_layout(extracted, digest, "v1", keys.ours, tmp_path)
    assert len(extracted.index()["manifests"]) == 1 + len(in_archive)  # the image and its attachments, nothing else
    in_layout = check_layout(LayoutReader(layout), digest, "v1", keys.ours, tmp_path)
    assert sorted(in_layout) == sorted(in_archive)  # the same artifacts, byte for byte
    described = json.loads(home.run("build", "--json", "-o", "j.tar", *attach, str(static_binary), env=EPOCH).stdout)
    listed = {(e["subject"], e["artifactType"], e["digest"]) for e in described["attachments"]}
    entries = [e for e in extracted.index()["manifests"] if e.get("artifactType")]
    assert listed == {(digest, e["artifactType"], e["digest"]) for e in entries}  # --json says what it attached

    # skopeo and umoci open the image by its tag; runc runs it.
    assert peers.skopeo_inspect(f"oci-archive:{archive}:v1")["Digest"] == digest
    assert peers.skopeo_inspect(f"oci:{layout}:v1")["Digest"] == digest
    assert HELLO in peers.run_image(archive, "v1").stdout
    assert HELLO in peers.run_image(layout, "v1").stdout
    # oci-image-tool 1.0 refuses OCI 1.1 artifacts: the image part, copied out by skopeo, validates.
    peers.run(["skopeo", "copy", "--quiet", f"oci-archive:{archive}:v1", f"oci:{tmp_path / 'copy'}:v1"])
    peers.require("oci-image-tool")
    validated = peers.run(["oci-image-tool", "validate", "--type", "image", str(tmp_path / "copy")])
    assert "Validation succeeded" in validated.stdout + validated.stderr

    for source in (f"oci-archive:{archive}:v1", f"oci:{layout}:v1"):
        result = verify(home, keys.ours, source)
        assert result.returncode == 0, result.describe()
        assert result.stdout.splitlines()[-1] == f"{digest} is signed by this key (bundle)"
        refused(verify(home, keys.other, source), 1, f"no valid signature of {digest}")

    # The layout written again, then holding another image: one entry per attachment.
    before = peers.read_index(layout)
    home.run("build", "-o", "oci:layout:v1", *attach, str(static_binary), env=EPOCH, check=True)
    assert peers.read_index(layout) == before
    other = home.run(
        "build", "-o", "oci:layout:v2", "--entrypoint-path", "/app", *attach, str(busybox), env=EPOCH, check=True
    )
    second = digest_in(other.stdout)
    entries = [e["digest"] for e in peers.read_index(layout)["manifests"]]
    assert len(entries) == len(set(entries)) == 8, entries  # two images, three attachments each
    assert sorted(check_layout(LayoutReader(layout), digest, "v1", keys.ours, tmp_path)) == sorted(in_layout)
    check_layout(LayoutReader(layout), second, "v2", keys.ours, tmp_path)
    for tag, image in (("v1", digest), ("v2", second)):
        assert peers.skopeo_inspect(f"oci:{layout}:{tag}")["Digest"] == image
        result = verify(home, keys.ours, f"oci:{layout}:{tag}")
        assert result.returncode == 0 and image in result.stdout.splitlines()[-1], result.describe()


def test_a_signed_archive_runs_by_its_tag_in_podman_and_containerd_imports_the_image_alone(
    keys: Keys, static_binary: Path, podman: Podman, containerd: Containerd, tmp_path: Path
) -> None:
    """What a signed OCI archive is to the runtimes that load one: podman runs it by its tag
    (untagged, it sees several manifests in index.json and asks which: `podman load` cannot take
    a signed archive, `podman pull oci-archive:PATH:TAG` can); containerd imports the tagged
    image, not the attachments beside it."""
    home = cli.Home.under(tmp_path)
    proc = home.run(
        "build", "-o", "oci-archive:app.tar:v1", "--sbom", "spdx", *sign(keys), "--provenance", str(static_binary),
        env=EPOCH, check=True,
    )  # fmt: skip
    digest = digest_in(proc.stdout)
    archive = home.work / "app.tar"
    assert HELLO in podman.run(f"oci-archive:{archive}:v1").stdout
    assert list(containerd.import_archive(archive, name="signed/app").items()) == [("signed/app:v1", digest)]
    assert HELLO in containerd.run("signed/app:v1", f"/{static_binary.name}").stdout


def test_a_layout_whose_tag_moves_keeps_no_attachments_of_the_image_it_no_longer_holds(
    keys: Keys, static_binary: Path, busybox: Path, tmp_path: Path
) -> None:
    """A rebuild into the same layout and tag (a developer's loop): the image the tag named is
    gone from index.json, and so are its attachments (old behaviour: three more dangling entries
    each time); attachments of an image another tag still names stay."""
    home = cli.Home.under(tmp_path)
    attach = ["--sbom", "spdx", *sign(keys), "--provenance"]
    first = digest_in(
        home.run("build", "-o", "oci:layout:v1", *attach, str(static_binary), env=EPOCH, check=True).stdout
    )
    home.run("build", "-o", "oci:layout:v2", *attach, str(static_binary), env=EPOCH, check=True)
    ours = LayoutReader(home.work / "layout")
    kept = sorted(e["digest"] for e in ours.referrers(first))
    moved = ["-o", "oci:layout:v1", "--entrypoint-path", "/app", *attach, str(busybox)]
    second = digest_in(home.run("build", *moved, env=EPOCH, check=True).stdout)
    assert sorted(e["digest"] for e in ours.referrers(first)) == kept  # v2 still names the first image
    assert len(ours.index()["manifests"]) == 2 + 3 + 3

    home.run("build", "-o", "oci:layout:v2", "--entrypoint-path", "/app", *attach, str(busybox), env=EPOCH, check=True)
    entries = ours.index()["manifests"]
    assert [e["digest"] for e in entries if not e.get("artifactType")] == [second, second]
    assert ours.referrers(first) == [] and len(entries) == 2 + 3, entries
    for tag in ("v1", "v2"):
        result = verify(home, keys.ours, f"oci:{home.work / 'layout'}:{tag}")
        assert result.returncode == 0 and second in result.stdout.splitlines()[-1], result.describe()


def test_a_docker_archive_carries_no_attachments_and_says_so_once(
    keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    proc = home.run(
        "build",
        "-o",
        "docker-archive:docker.tar",
        "-o",
        "oci-archive:oci.tar:v1",
        "--sbom",
        "spdx",
        *sign(keys),
        str(static_binary),
        env=EPOCH,
        check=True,
    )
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith("zeroimage: warning: docker-archive:docker.tar carries no signatures or SBOMs")
    assert "oci.tar" not in warnings[0]
    with tarfile.open(home.work / "docker.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    (entry,) = json.loads(members["manifest.json"])
    assert not [name for name, data in members.items() if b"spdxVersion" in data or b"dsseEnvelope" in data]
    assert len(members) == 2 + len(entry["Layers"]) + ("repositories" in members), sorted(members)
    assert peers.skopeo_inspect(f"docker-archive:{home.work / 'docker.tar'}")["Os"] == "linux"
    # the OCI archive beside it has them
    oci = LayoutReader(peers.extract_archive(home.work / "oci.tar", tmp_path / "oci"))
    digest = digest_in(proc.stdout.splitlines()[1])
    assert sorted(e["artifactType"] for e in oci.referrers(digest)) == [SPDX, BUNDLE]


# -- 5. reproducible ------------------------------------------------------------------------------


def test_the_same_inputs_and_key_give_the_same_attachments_and_a_repush_adds_no_referrer(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    from cryptography.hazmat.backends.openssl.backend import backend

    assert backend.ecdsa_deterministic_supported(), "this cryptography's OpenSSL signs ECDSA at random"
    attach = ["--sbom", "spdx", *sign(keys), "--provenance"]
    archives = []
    for n in (1, 2):  # two runners: each its own folder and cache
        home = cli.Home.under(tmp_path / f"runner{n}")
        home.run("build", "-o", "oci-archive:app.tar:v1", *attach, str(static_binary), env=EPOCH, check=True)
        archives.append(LayoutReader(peers.extract_archive(home.work / "app.tar", tmp_path / f"extracted{n}")))
    first, second = ({e["digest"]: e for e in a.index()["manifests"]} for a in archives)
    assert first == second and len(first) == 4
    for digest in first:
        assert archives[0].blob("", digest) == archives[1].blob("", digest)
        for layer in json.loads(archives[0].blob("", digest)).get("layers", []):
            assert archives[0].blob("", layer["digest"]) == archives[1].blob("", layer["digest"])

    repository = "repro/app"
    reader = RegistryReader(registry.host)
    pushed = []
    for n in (1, 2):
        home = cli.Home.under(tmp_path / f"pusher{n}")
        start = mark(registry)
        proc = home.run(
            "build", "--push", f"{registry.host}/{repository}:v1", *attach, str(static_binary), env=EPOCH, check=True
        )
        digest = digest_in(proc.stdout)
        sent = requests_since(registry, start)
        pushed.append(
            (
                digest,
                reader.manifest(repository, referrers_tag(digest)),
                reader.manifest(repository, f"{referrers_tag(digest)}.sig"),
                sent,
            )
        )
    (digest, index, signatures, _), (again, index_again, signatures_again, sent) = pushed
    assert again == digest
    assert index_again == index and len(json.loads(index)["manifests"]) == 3
    assert signatures_again == signatures and len(json.loads(signatures)["layers"]) == 1
    assert not [r for r in sent if r.startswith("PUT") and f"/manifests/{referrers_tag(digest)}" in r], sent


def test_the_library_makes_and_checks_the_same_attachments_as_the_cli(
    keys: Keys, static_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zeroimage.build takes the same options (sbom=, sign_key=, provenance=) and writes the very
    archive the CLI writes; zeroimage.verify says what zeroimage verify says, raising nothing."""
    import zeroimage

    home = cli.Home.under(tmp_path / "cli")
    attach = ["--sbom", "spdx", *sign(keys), "--provenance"]
    home.run("build", "-o", "oci-archive:app.tar:v1", *attach, str(static_binary), env=EPOCH, check=True)
    monkeypatch.setenv("ZEROIMAGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    archive = tmp_path / "library.tar"
    result = zeroimage.build(
        [static_binary],
        outputs=[f"oci-archive:{archive}:v1"],
        sbom="spdx",
        sign_key=keys.ours.private,
        provenance=True,
        source_date_epoch=int(EPOCH["SOURCE_DATE_EPOCH"]),
    )
    assert archive.read_bytes() == (home.work / "app.tar").read_bytes()
    found = zeroimage.verify(f"oci-archive:{archive}:v1", key=keys.ours.public)
    assert found.ok and found.digest == result.digest
    assert sorted(a.kind for a in found.attachments) == ["provenance", "sbom", "signature"]
    other = zeroimage.verify(f"oci-archive:{archive}:v1", key=keys.other.public)
    assert not other.ok and other.reason().startswith(f"no valid signature of {result.digest} by this key")
    with pytest.raises(zeroimage.UsageError, match="--provenance is a signed statement"):
        zeroimage.build([static_binary], outputs=[f"oci-archive:{tmp_path / 'not.tar'}"], provenance=True)


# -- 6. referrers others attached ---------------------------------------------------------------------

SCAN = "application/vnd.example.scan.report+json"


def attach_foreign(
    registry: Registry,
    repository: str,
    subject: bytes,
    contents: tuple[bytes, ...] = (b'{"scanner":"example","findings":[]}',),
    artifact_type: str = SCAN,
) -> dict[str, Any]:
    """A scanner's report about the manifest ``subject`` (one layer per item of ``contents``), and
    its entry in the referrers tag — a new index, or added to the one there —, pushed as another
    tool would (raw HTTP). Returns the index written."""
    upload_blob(registry.url, repository, b"{}")
    layers = [
        {"mediaType": artifact_type, "digest": upload_blob(registry.url, repository, data), "size": len(data)}
        for data in contents
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2},
            "layers": layers,
            "subject": {"mediaType": OCI_MANIFEST, "digest": peers.digest_of(subject), "size": len(subject)},
            "annotations": {"org.example.scanner": "v1"},
        }
    ).encode()
    digest = put_manifest(registry.url, repository, peers.digest_of(manifest), manifest, OCI_MANIFEST)
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(manifest),
        "artifactType": artifact_type,
        "annotations": {"org.example.scanner": "v1"},
    }
    tag = referrers_tag(peers.digest_of(subject))
    status, _, there = http("GET", f"{registry.url}/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_INDEX})
    if status == 200:
        index = json.loads(there)
        index["manifests"].append(entry)
    else:
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry],
            "annotations": {"org.example.written-by": "another-tool"},
        }
    put_manifest(registry.url, repository, tag, json.dumps(index).encode(), OCI_INDEX)
    return index


def test_a_referrer_someone_else_attached_first_is_kept(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = "shared/app"
    reference = f"{registry.host}/{repository}:v1"
    digest = digest_in(home.run("build", "--push", reference, str(static_binary), env=EPOCH, check=True).stdout)
    reader = RegistryReader(registry.host)
    theirs = attach_foreign(registry, repository, reader.manifest(repository, "v1"))

    proc = home.run("build", "--push", reference, "--sbom", "spdx", *sign(keys), str(static_binary), env=EPOCH)
    assert proc.returncode == 0 and digest_in(proc.stdout) == digest, proc.describe()
    index = json.loads(reader.manifest(repository, referrers_tag(digest)))
    assert index["manifests"][0] == theirs["manifests"][0]  # theirs, first and as they wrote it
    assert index.get("annotations") == theirs["annotations"]
    assert sorted(e["artifactType"] for e in index["manifests"][1:]) == [SPDX, BUNDLE]
    found = referrers_of(reader, repository, digest)
    assert sorted(found) == sorted([SCAN, SPDX, BUNDLE])
    result = verify(home, keys.ours, reference, "--json")
    assert result.returncode == 0, result.describe()
    assert [a["form"] for a in verified_kinds(result)["attestation"]] == [SCAN]


#: Peak RSS allowed to ``zeroimage verify``: it reads a few kB of signatures (a run is ~45 MB here).
VERIFY_RSS_BOUND_KB = 100 * 1024


def test_verify_reads_only_what_it_checks_and_a_referrer_that_is_gone_is_one_line_of_its_list(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    """Another tool's SBOM of 6 layers of 15 MB is listed by its type, never read (old behaviour:
    every layer of every referrer was read into memory, 150 MB here); once its manifest is
    deleted (as a registry's clean-up does), the image's own signatures still verify (old
    behaviour: verify failed, MANIFEST_UNKNOWN)."""
    home = cli.Home.under(tmp_path)
    repository = "verifying/app"
    reference = f"{registry.host}/{repository}:v1"
    home.run("build", "--push", reference, *sign(keys), str(static_binary), env=EPOCH, check=True)
    reader = RegistryReader(registry.host)
    layers = tuple(os.urandom(15 << 20) for _ in range(6))
    index = attach_foreign(registry, repository, reader.manifest(repository, "v1"), layers, SPDX)
    theirs = index["manifests"][-1]["digest"]

    result = home.run("verify", "--json", "--key", str(keys.ours.public), reference, measure_rss=True)
    assert result.returncode == 0, result.describe()
    assert result.peak_rss_kb is not None and result.peak_rss_kb < VERIFY_RSS_BOUND_KB, result.peak_rss_kb
    (sbom,) = verified_kinds(result)["sbom"]
    assert (sbom["form"], sbom["where"]) == (SPDX, f"referrer {theirs}")

    status, _, body = http("DELETE", f"{registry.url}/v2/{repository}/manifests/{theirs}")
    assert status == 202, body
    result = verify(home, keys.ours, reference, "--json")
    assert result.returncode == 0, result.describe()
    kinds = verified_kinds(result)
    assert sorted(a["form"] for a in kinds["signature"] if a["verified"]) == ["bundle", "legacy"]
    (gone,) = kinds["other"]
    assert not gone["verified"] and gone["where"] == f"referrer {theirs}", gone
    assert "cannot be read" in gone["detail"] and "not found" in gone["detail"], gone


# -- 7. what a Go program and a Debian base hold ------------------------------------------------------


@dataclass(frozen=True)
class GoModule:
    path: str
    version: str
    h1: str


def go_modules(version_m: str) -> list[GoModule]:
    """The modules compiled in, as ``go version -m`` prints them (a ``=>`` line replaces the
    ``dep`` before it)."""
    modules: list[GoModule] = []
    for line in version_m.splitlines():
        fields = line.split("\t")
        if len(fields) >= 4 and fields[1] in ("dep", "=>"):
            module = GoModule(fields[2], fields[3], fields[4] if len(fields) > 4 else "")
            if fields[1] == "=>":
                modules[-1] = module
            else:
                modules.append(module)
    return modules


def purl_encode(text: str) -> str:
    """A purl component, as the purl specification encodes it (the colon is never encoded)."""
    return quote(text, safe=":")


def installed_packages(status: str) -> list[tuple[str, str, str]]:
    """(name, version, architecture) of each package dpkg's status file says is installed."""
    found = []
    for paragraph in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in paragraph.splitlines() if ": " in line and not line.startswith(" ")
        )
        if fields.get("Status", "").endswith(" installed"):
            found.append((fields["Package"], fields["Version"], fields["Architecture"]))
    return found


@pytest.fixture(scope="module")
def debian_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout made with umoci holding this host's dpkg status and os-release: a base whose
    package database is Debian's own."""
    root = tmp_path_factory.mktemp("debian-base")
    status, release = root / "status", root / "os-release"
    shutil.copyfile("/var/lib/dpkg/status", status)
    shutil.copyfile("/etc/os-release", release)
    if "ID=debian" not in release.read_text():
        pytest.skip("this host is not Debian: its dpkg status is no Debian base")
    return peers.umoci_build(
        root / "layout", {"/var/lib/dpkg/status": status, "/etc/os-release": release}, tag="bookworm"
    )


@pytest.mark.parametrize("sbom_format", ["spdx", "cyclonedx"])
def test_a_go_program_on_a_debian_base_lists_every_module_and_package(
    sbom_format: str, debian_base: Path, tmp_path: Path
) -> None:
    program = go_program()
    modules = go_modules(program.version_m)
    assert len(modules) == 2 and all(m.h1 for m in modules), program.version_m
    home = cli.Home.under(tmp_path)
    home.run(
        "build",
        "--from",
        f"oci:{debian_base}:bookworm",
        "-o",
        "oci-archive:go.tar:v1",
        "--sbom",
        sbom_format,
        "--sbom-file",
        "sbom.json",
        str(program.path),
        env=EPOCH,
        check=True,
    )
    document_bytes = (home.work / "sbom.json").read_bytes()
    layout = LayoutReader(peers.extract_archive(home.work / "go.tar", tmp_path / "extracted"))
    (image,) = [e for e in layout.index()["manifests"] if not e.get("artifactType")]
    (entry,) = layout.referrers(image["digest"])
    assert artifact(layout, "", entry["digest"], image["digest"]).content == document_bytes
    document = check_spdx(document_bytes, tmp_path) if sbom_format == "spdx" else check_cyclonedx(document_bytes)
    listed = purls(document)

    for module in modules:
        namespace, _, name = module.path.rpartition("/")
        expected = f"pkg:golang/{namespace}/{name}@{module.version}".lower()  # golang purls are lowercased
        assert expected in listed, (expected, [p for p in listed if p.startswith("pkg:golang/")])
        sha256 = base64.b64decode(module.h1.removeprefix("h1:")).hex()
        assert sha256 in json.dumps(document), f"{module.path}'s {module.h1} (sha256 {sha256}) is not in the SBOM"

    packages = installed_packages(Path("/var/lib/dpkg/status").read_text())
    assert len(packages) > 100
    debs = [p for p in listed if p.startswith("pkg:deb/")]
    for name, version, arch in packages:
        prefix = f"pkg:deb/debian/{purl_encode(name.lower())}@{purl_encode(version)}?arch={arch}&distro=debian-12"
        assert any(p == prefix or p.startswith(prefix + "&") for p in debs), (prefix, debs[:5])
    assert len(debs) == len(packages)


# -- 8. bad input -------------------------------------------------------------------------------------

COSIGN_KEY = DATA / "cosign" / "sigstore-label.key"  # cosign's own test key, password "hello"

BAD_REQUESTS = {
    "missing-key": (["--sign-key", "missing.key"], {}, 1, ["missing.key"]),
    "public-key": (["--sign-key", "{public}"], {}, 2, ["is a public key"]),
    "wrong-password": (["--sign-key", str(COSIGN_KEY)], {"COSIGN_PASSWORD": "wrong"}, 2, ["wrong password"]),
    "no-password": (["--sign-key", str(COSIGN_KEY)], {}, 2, ["encrypted", "COSIGN_PASSWORD"]),
    "provenance-unsigned": (["--provenance", "--sbom", "spdx"], {}, 2, ["--provenance", "--sign-key"]),
    "sbom-file-without-sbom": (["--sbom-file", "sbom.json", "--sign-key", "{key}"], {}, 2, ["--sbom-file", "--sbom"]),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_is_one_line_and_nothing_is_sent(
    case: str, registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)  # "no-password" means none at all
    flags, env, code, words = BAD_REQUESTS[case]
    args = [a.format(key=keys.ours.private, public=keys.ours.public) for a in flags]
    home = cli.Home.under(tmp_path)
    before = fingerprint(home.work)
    repository = f"bad/{case}"
    proc = home.run(
        "build", "--push", f"{registry.host}/{repository}:v1", *args, str(static_binary), env={**EPOCH, **env}
    )
    refused(proc, code, *words)
    assert fingerprint(home.work) == before  # no SBOM file, nothing else
    assert requests_for(registry, repository) == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--sbom", "swid"], "Invalid value for '--sbom': 'swid' is not one of 'spdx', 'cyclonedx'."),
        (
            ["--sign-key", "{key}", "--signature-format", "pgp"],
            "Invalid value for '--signature-format': 'pgp' is not one of 'bundle', 'legacy', 'both'.",
        ),
    ],
    ids=["sbom", "signature-format"],
)
def test_an_unknown_format_name_is_refused_before_anything_is_sent(
    flags: list[str], words: str, registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    """A choice every zeroimage flag of its kind declares to click: click's usage error, told as
    every error is, on one line (as for --format and --compression)."""
    home = cli.Home.under(tmp_path)
    repository = f"bad/{flags[-1]}"
    args = [a.format(key=keys.ours.private) for a in flags]
    proc = home.run("build", "--push", f"{registry.host}/{repository}:v1", *args, str(static_binary))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.describe()
    assert proc.stderr == f"zeroimage: error: {words} (see zeroimage build --help)\n", proc.describe()
    assert requests_for(registry, repository) == []


def test_a_registry_that_refuses_artifacts_fails_in_one_line_and_the_tag_is_not_written(
    registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = "refusing/app"
    with ReferrersRegistry(registry, refuse_artifacts=True) as double:
        proc = home.run(
            "build", "--push", f"{double.host}/{repository}:v1", "--sbom", "spdx", *sign(keys), str(static_binary)
        )
        refused(proc, 1, f"{double.host} does not take OCI artifacts", "MANIFEST_INVALID")
        assert double.requested("PUT", rf"/v2/{repository}/manifests/sha256:")  # it was asked, and said no
    assert RegistryReader(registry.host).tags(repository) == []  # no v1, no referrers tag, no .sig


@pytest.mark.parametrize("mode", ["false-200", "plain-404"])
def test_a_referrers_endpoint_that_is_not_one_falls_back_to_the_tag_schema(
    mode: str, registry: Registry, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    repository = f"fallback/{mode}"
    with ReferrersRegistry(registry, referrers_mode=mode, send_oci_subject=False) as double:
        proc = push_everything(home, keys, f"{double.host}/{repository}:v1", static_binary)
        digest = digest_in(proc.stdout)
        found = referrers_of(RegistryReader(registry.host), repository, digest)  # the tag schema, in the registry
        assert {kind: len(items) for kind, items in found.items()} == {SPDX: 1, BUNDLE: 2}
        result = verify(home, keys.ours, f"{double.host}/{repository}:v1", "--json")
        assert result.returncode == 0, result.describe()
        answered = 200 if mode == "false-200" else 404
        assert ("GET", f"/v2/{repository}/referrers/{digest}", answered) in double.requests
        kinds = verified_kinds(result)
        assert sorted(a["form"] for a in kinds["signature"] if a["verified"]) == ["bundle", "legacy"]
        assert [a["verified"] for a in kinds["provenance"]] == [True]
        assert len(kinds["sbom"]) == 1


def test_sbom_file_never_overwrites_an_input_or_an_output(static_binary: Path, tmp_path: Path) -> None:
    """--sbom-file is an output like -o: checked against the programs and the other outputs
    before anything is written (old behaviour: the SBOM replaced the program, or the archive
    the build had just written)."""
    home = cli.Home.under(tmp_path)
    program = shutil.copy(static_binary, home.work / "linux-amd64")
    for sbom_file, words in (
        ("linux-amd64", ["--sbom-file linux-amd64", "the program"]),
        ("{platform}", ["--sbom-file linux-amd64", "the program"]),  # {platform} names it too
        ("app.tar", ["--sbom-file app.tar", "the same file"]),
    ):
        before = fingerprint(home.work)
        proc = home.run("build", "-o", "app.tar", "--sbom", "spdx", "--sbom-file", sbom_file, str(program), env=EPOCH)
        refused(proc, 2, *words)
        assert fingerprint(home.work) == before, sbom_file


def test_sbom_file_in_a_missing_folder_fails_before_anything_is_sent(
    registry: Registry, static_binary: Path, tmp_path: Path
) -> None:
    home = cli.Home.under(tmp_path)
    for n, sbom_file in enumerate(("missing/sbom.json", "missing/sbom-{platform}.json")):
        repository = f"sbomfile/app{n}"
        before = fingerprint(home.work)
        proc = home.run(
            "build", "--push", f"{registry.host}/{repository}:v1", "-o", "app.tar", "--sbom", "spdx",
            "--sbom-file", sbom_file, str(static_binary), env=EPOCH,
        )  # fmt: skip
        refused(proc, 1, "directory missing does not exist")
        assert fingerprint(home.work) == before  # no archive either
        assert requests_for(registry, repository) == []


# -- 9. layers reused from a registry -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gzip9(tmp_path_factory: pytest.TempPathFactory, static_binary: Path) -> Recompressed:
    """The image of ``static_binary`` as zeroimage builds it, its layer recompressed by ``gzip -9``:
    what another tool would have pushed (same diff_id, other bytes)."""
    root = tmp_path_factory.mktemp("gzip9")
    archive = root / "made.tar"
    cli.Home.under(root / "builder").run("build", "-o", str(archive), str(static_binary), env=EPOCH, check=True)
    return recompressed(archive, root / "layout")


def layout_copy(gzip9: Recompressed, layout: Path, layer: bytes) -> str:
    """A copy of ``gzip9``'s layout whose layer is ``layer`` — its config unchanged, still naming
    ``gzip9``'s diff_id. Returns the layer's digest."""
    shutil.copytree(gzip9.layout, layout)
    blobs = layout / "blobs" / "sha256"
    (entry,) = peers.read_index(layout)["manifests"]
    manifest = json.loads((blobs / entry["digest"][7:]).read_bytes())
    (blobs / peers.digest_of(layer)[7:]).write_bytes(layer)
    manifest["layers"][0].update(digest=peers.digest_of(layer), size=len(layer))
    data = json.dumps(manifest).encode()
    (blobs / peers.digest_of(data)[7:]).write_bytes(data)
    entry.update(digest=peers.digest_of(data), size=len(data))
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return str(manifest["layers"][0]["digest"])


def other_layer() -> bytes:
    """A gzip -9 layer of another tar (a plausible size for the program's)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = os.urandom(256 * 1024)
        info = tarfile.TarInfo("other-program")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), 9, mtime=0)


def layers_of(result: cli.Result) -> list[dict[str, Any]]:
    (platform,) = json.loads(result.stdout)["platforms"]
    layers: list[dict[str, Any]] = platform["layers"]
    return layers


def test_a_layer_reused_from_the_registry_is_proved_then_signed(
    registry: Registry, gzip9: Recompressed, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    repository = "proved/app"
    seed(registry, f"oci:{gzip9.layout}:{gzip9.tag}", f"{repository}:v1")
    # What the other tool wrote about its layer stays its own: our manifest names the blob alone.
    # (A layer with urls is not reused at all: test_fleet's relabelled images.)
    seeded = json.loads(RegistryReader(registry.host).manifest(repository, "v1"))
    noted = {"annotations": {"org.example.compressed-by": "gzip -9"}}
    plain = dict(seeded["layers"][0])
    seeded["layers"][0].update(noted)
    status, _, body = http(
        "PUT",
        f"{registry.url}/v2/{repository}/manifests/v1",
        json.dumps(seeded).encode(),
        {"Content-Type": OCI_MANIFEST},
    )
    assert status == 201, body
    start = mark(registry)
    home = cli.Home.under(tmp_path)
    proc = home.run(
        "build", "--json", "-v", "--push", f"{registry.host}/{repository}:v1", *sign(keys), str(static_binary),
        env=EPOCH, check=True,
    )  # fmt: skip
    (layer,) = layers_of(proc)
    assert (layer["origin"], layer["digest"], layer["diffID"]) == ("registry", gzip9.layer, gzip9.diff_id)
    assert f"proving the reused layer {gzip9.layer} before signing" in proc.stderr
    sent = requests_since(registry, start)
    assert f"GET /v2/{repository}/blobs/{gzip9.layer} HTTP/1.1" in sent, sent  # read whole, to be proved
    assert not [r for r in sent if r.startswith(("PATCH", "POST")) and gzip9.layer[7:] in r]  # never uploaded
    digest = json.loads(proc.stdout)["digest"]
    reader = RegistryReader(registry.host)
    pushed = json.loads(reader.manifest(repository, "v1"))["layers"]
    assert pushed == [plain] and plain["digest"] == gzip9.layer and set(plain) == {"mediaType", "digest", "size"}
    (signature,) = referrers_of(reader, repository, digest)[BUNDLE]
    check_bundle(signature.content, keys.ours, digest, COSIGN_SIGN)
    assert check_legacy(reader, repository, digest, keys.ours, f"{registry.host}/{repository}") == 1
    assert verify(home, keys.ours, f"{registry.host}/{repository}:v1").returncode == 0


def test_a_reused_layer_that_is_not_what_its_diff_id_says_is_refused_when_signing(
    registry: Registry, gzip9: Recompressed, keys: Keys, static_binary: Path, tmp_path: Path
) -> None:
    repository = "lying/app"
    lie = layout_copy(gzip9, tmp_path / "lying", other_layer())
    seed(registry, f"oci:{tmp_path / 'lying'}:{gzip9.tag}", f"{repository}:v1")
    reader = RegistryReader(registry.host)
    before = reader.manifest(repository, "v1")
    home = cli.Home.under(tmp_path / "runner")
    start = mark(registry)
    proc = home.run("build", "--push", f"{registry.host}/{repository}:v1", *sign(keys), str(static_binary), env=EPOCH)
    refused(proc, 1, f"layer {lie}", "cannot be signed")
    sent = requests_since(registry, start)
    assert not [r for r in sent if r.startswith(("PUT", "POST", "PATCH"))], sent  # nothing pushed, nothing tagged
    assert reader.manifest(repository, "v1") == before
    assert reader.tags(repository) == ["v1"]
    # Unsigned, the build vouches for nothing: the layer is reused as its image lists it, unread
    # (the issue asks for the proof before signing; reuse itself trusts the registry pushed to).
    unsigned = home.run("build", "--json", "--push", f"{registry.host}/{repository}:v1", str(static_binary), env=EPOCH)
    assert unsigned.returncode == 0, unsigned.describe()
    assert [(layer["origin"], layer["digest"]) for layer in layers_of(unsigned)] == [("registry", lie)]


# -- 10. what signing costs ------------------------------------------------------------------------------


def big_program(path: Path, size: int) -> Path:
    """``size`` random bytes behind an ELF header (incompressible: the worst case for a push)."""
    with open(path, "wb") as out:
        out.write(static_amd64_header())
        left = size
        while left > 0:
            out.write(os.urandom(min(left, 8 << 20)))
            left -= 8 << 20
    path.chmod(0o755)
    return path


def test_signing_and_an_sbom_keep_a_large_push_within_the_push_memory_bound(
    registry: Registry, keys: Keys, tmp_path: Path, record_property: Any
) -> None:
    program = big_program(tmp_path / "big", 200 << 20)
    peaks: dict[str, int] = {}
    for label, extra in (("plain", []), ("signed", ["--sbom", "spdx", *sign(keys), "--provenance"])):
        home = cli.Home.under(tmp_path / label)
        proc = home.run(
            "build",
            "-q",
            "--push",
            f"{registry.host}/big/{label}:v1",
            *extra,
            str(program),
            env=EPOCH,
            measure_rss=True,
        )
        assert proc.returncode == 0 and proc.peak_rss_kb is not None, proc.describe()
        peaks[label] = proc.peak_rss_kb
        record_property(f"peak_rss_kb_{label}", proc.peak_rss_kb)
    print(f"peak RSS of a 200 MB push: {peaks['plain']} kB plain, {peaks['signed']} kB with --sbom spdx --sign-key")
    assert max(peaks.values()) < PUSH_RSS_BOUND_KB, peaks
