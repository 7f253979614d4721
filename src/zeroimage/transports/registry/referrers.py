"""An image's referrers in a registry (OCI distribution spec 1.1): list them, push them.

Listing (:func:`list_referrers`) asks the Referrers API, ``GET /v2/<name>/referrers/<digest>``
(with ``?artifactType=`` when filtering, following ``Link: <…>; rel="next"`` pages within a
bound). A registry without the API — a 404 of any kind (distribution 2.8 answers a plain-text
``404 page not found``), a 400, 405, 406 or 501, or a "false 200" whose body is not an OCI image
index — is read through the referrers tag schema instead: the image index clients keep under the
tag :func:`~zeroimage.oci.artifact.fallback_tag` names. Entries are validated as descriptors and
filtered by ``artifactType`` here whatever ``OCI-Filters-Applied`` says (a registry's filter is
taken as a saving, never trusted).

Pushing (:func:`push_artifact`) puts every blob the artifact names into the repository first (the
empty config included: registries check them; those present are skipped), then the manifest by
digest — never under a tag. A registry that answers ``OCI-Subject: <subject>`` has recorded the
referrer; otherwise the tag-schema index is read (absent: a new one), merged (every entry others
put there stays, in order), written back, and read again. The spec has no conditional PUT, so two
pushers merging at once can lose an entry: when the re-read lacks ours, the merge is done again, a
bounded number of times. A race remains: a pusher that read the index before our write and writes
after our re-read drops our entry, and nothing we can see tells. Pushing again restores it (the
push is idempotent); a registry with the Referrers API has no such race.

An artifact is read back as any manifest and blob: through
:class:`~zeroimage.transports.registry.source.RegistrySource` (``zeroimage verify`` does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal
from urllib.parse import urlencode, urljoin, urlsplit

from zeroimage.errors import InputError, RegistryError
from zeroimage.oci import MAX_DOCUMENT_SIZE, Descriptor, Index, parse_document
from zeroimage.oci import mediatypes as mt
from zeroimage.oci.artifact import Artifact, fallback_tag, referrers_index
from zeroimage.oci.digest import validate_digest, verify_bytes
from zeroimage.progress import NullReporter
from zeroimage.transports.registry.client import RegistryClient, error_codes
from zeroimage.transports.registry.replies import content_type, read_bounded
from zeroimage.transports.registry.source import MANIFEST_ACCEPT
from zeroimage.transports.registry.upload import blob_exists, confirm_manifest, pull_scopes, put_manifest, upload_blob

#: Pages of a Referrers API answer followed, and the bytes read over all of them.
MAX_REFERRER_PAGES = 32
#: Blobs and manifests of artifacts put at once (the client is shared by threads).
PUSH_CONCURRENCY = 4
MAX_REFERRERS_BYTES = 4 * MAX_DOCUMENT_SIZE
#: Times the tag-schema index is merged again when a re-read lacks our entry (another pusher's
#: write crossed ours).
MERGE_ATTEMPTS = 4
#: Entries of a tag-schema index checked when the registry refuses it for naming a manifest that is
#: gone (one deleted without updating the index): those missing are dropped.
MAX_PRUNE_CHECKS = 256
#: The answers to a Referrers API request that mean "no such API here".
NO_API_STATUS = frozenset({400, 404, 405, 406, 501})
#: What a registry answers to a manifest it does not take (an artifact to a registry of before OCI 1.1).
REFUSED_STATUS = frozenset({400, 415, 422})

_INDEX_ACCEPT = mt.OCI_INDEX
_BLOB_MISSING_CODES = frozenset({"MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"})
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL_NEXT = re.compile(r"""(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;"]+))""", re.IGNORECASE)

#: How a pushed referrer was recorded: by the registry (``api``), or in the tag-schema index (``tag``).
Recorded = Literal["api", "tag"]


# -- listing ----------------------------------------------------------------------------------------


def list_referrers(
    client: RegistryClient, repository: str, digest: str, artifact_type: str | None = None
) -> list[Descriptor]:
    """The referrers of ``digest`` in ``repository`` (of ``artifact_type`` only, when given): by the
    Referrers API where the registry has it, else by the referrers tag schema (no index there:
    none). See the module docstring for what counts as "no API"."""
    validate_digest(digest)
    listed = _list_by_api(client, repository, digest, artifact_type)
    if listed is None:
        index, _ = _read_tag_index(client, repository, digest)
        listed = list(index.manifests) if isinstance(index, Index) else []
    if artifact_type:
        listed = [entry for entry in listed if entry.artifact_type == artifact_type]
    return listed


def _list_by_api(
    client: RegistryClient, repository: str, digest: str, artifact_type: str | None
) -> list[Descriptor] | None:
    """Every entry the Referrers API lists over its pages; None when the registry has no such API."""
    endpoint = f"/v2/{repository}/referrers/{digest}"
    target = endpoint + (f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else "")
    what = f"the referrers of {digest} in {client.registry}/{repository}"
    entries: list[Descriptor] = []
    seen: set[str] = set()
    budget = MAX_REFERRERS_BYTES
    for page in range(MAX_REFERRER_PAGES):
        first = page == 0
        response = client.open("GET", target, scopes=pull_scopes(repository), headers={"Accept": _INDEX_ACCEPT})
        url = str(response.url)
        seen.add(url)
        if response.status_code != 200:
            reply = client.reply_of(response)
            if first and reply.status in NO_API_STATUS:
                return None
            client.raise_for_status(reply, what, repository, expected=(200,))
        declares_index = content_type(response) == mt.OCI_INDEX
        links = response.headers.get_list("link")
        data = read_bounded(client, response, min(MAX_DOCUMENT_SIZE, budget), what)
        if data is None:
            if first and not declares_index:
                return None  # a large page of something else: a "false 200"
            raise RegistryError(
                f"{what} is longer than zeroimage reads ({MAX_DOCUMENT_SIZE} bytes a page, "
                f"{MAX_REFERRERS_BYTES} in all); refusing it"
            )
        budget -= len(data)
        try:
            index = parse_document(data, what, mt.OCI_INDEX)
        except InputError:
            index = None
        if not isinstance(index, Index) or index.media_type != mt.OCI_INDEX:
            if first:
                return None  # a "false 200": the registry answers, but not with a referrers list
            raise RegistryError(f"{client.registry}: a page of {what} is not an OCI image index")
        entries.extend(index.manifests)
        following = _next_link(links)
        if following is None:
            return entries
        target = urljoin(url, following)
        if urlsplit(target).path != endpoint:
            raise RegistryError(f"{client.registry}: {what} points its next page elsewhere ({target[:120]!r})")
        if target in seen:
            raise RegistryError(f"{client.registry}: {what} pages round in a loop")
    raise RegistryError(f"{what} has more than {MAX_REFERRER_PAGES} pages; refusing it")


def _next_link(values: list[str]) -> str | None:
    """The target of the ``rel="next"`` link among ``Link`` header values (RFC 8288), if any."""
    for value in values:
        for match in _LINK.finditer(value):
            for rel in _REL_NEXT.finditer(match.group(2)):
                if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                    return match.group(1).strip()
    return None


# -- the tag schema ---------------------------------------------------------------------------------


def _read_tag_index(client: RegistryClient, repository: str, digest: str) -> tuple[Index | str | None, str]:
    """What the referrers tag of ``digest`` holds: its index (verified), None when the tag is
    absent, or a text naming what else it holds; and the tag."""
    tag = fallback_tag(digest)
    what = f"{client.registry}/{repository}:{tag}"
    response = client.open(
        "GET",
        f"/v2/{repository}/manifests/{tag}",
        scopes=pull_scopes(repository),
        headers={"Accept": MANIFEST_ACCEPT},
    )
    if response.status_code == 404:
        client.reply_of(response)
        return None, tag
    if response.status_code != 200:
        reply = client.reply_of(response)
        client.raise_for_status(reply, f"referrers tag {tag}", repository, expected=(200,))
    header = response.headers.get("docker-content-digest", "")
    data = read_bounded(client, response, MAX_DOCUMENT_SIZE, what)
    if data is None:
        return f"a document larger than {MAX_DOCUMENT_SIZE} bytes", tag
    if header.startswith("sha256:"):
        verify_bytes(data, header, what)
    try:
        document = parse_document(data, what)
    except InputError as exc:
        return f"no valid manifest or index ({exc})", tag
    if not isinstance(document, Index) or document.media_type != mt.OCI_INDEX:
        return f"a {document.media_type or 'manifest'}, not an OCI image index", tag
    return document, tag


def _push_tag_index(client: RegistryClient, repository: str, digest: str, artifacts: Sequence[Artifact]) -> None:
    """Merge ``artifacts`` (all of one subject, ``digest``) into its referrers tag at once, and
    check they stayed there."""
    ours = {artifact.descriptor.digest: artifact.descriptor for artifact in artifacts}
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        existing, tag = _read_tag_index(client, repository, digest)
        if isinstance(existing, str):
            raise RegistryError(
                f"{client.registry}/{repository}:{tag} holds {existing}; it is the referrers tag of "
                f"{digest}, and zeroimage will not overwrite it"
            )
        listed = {entry.digest: entry for entry in (existing.manifests if existing is not None else ())}
        if any(listed.get(key) != desc for key, desc in ours.items()):
            merged = referrers_index(existing, list(ours.values()))
            _put_index(client, repository, tag, merged, set(ours))
            after, _ = _read_tag_index(client, repository, digest)
            kept = {entry.digest for entry in after.manifests} if isinstance(after, Index) else set()
            if not set(ours) <= kept:
                client.pause(attempt)  # another pusher's write crossed ours: merge again
                continue
        return
    raise RegistryError(
        f"{client.registry}/{repository}: the referrers tag of {digest} kept changing while "
        f"{', '.join(ours)} {'was' if len(ours) == 1 else 'were'} added to it ({MERGE_ATTEMPTS} tries); push again"
    )


def _put_index(client: RegistryClient, repository: str, tag: str, index: Index, ours: set[str]) -> None:
    """Put ``index`` under ``tag``. A registry that refuses it for naming a manifest that is gone
    (distribution checks every entry exists) gets it again without the entries it lacks, once."""
    data = index.to_bytes()
    reply = put_manifest(client, repository, tag, mt.OCI_INDEX, data, wait_for_blobs=False)
    if reply.status not in (200, 201, 202) and _BLOB_MISSING_CODES & error_codes(reply):
        present = _present_entries(client, repository, index, ours)
        if present is not None:
            data = replace(index, manifests=present).to_bytes()
            reply = put_manifest(client, repository, tag, mt.OCI_INDEX, data, wait_for_blobs=False)
    confirm_manifest(client, reply, repository, f"referrers tag {tag}", data)


def _present_entries(
    client: RegistryClient, repository: str, index: Index, ours: set[str]
) -> tuple[Descriptor, ...] | None:
    """The entries of ``index`` whose manifests the repository has (ours always); None when none
    is missing, or there are too many to check."""
    others = [entry for entry in index.manifests if entry.digest not in ours]
    if len(others) > MAX_PRUNE_CHECKS:
        return None
    missing: set[str] = set()
    for entry in others:
        reply = client.request(
            "HEAD",
            f"/v2/{repository}/manifests/{entry.digest}",
            scopes=pull_scopes(repository),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if reply.status == 404:
            missing.add(entry.digest)
    if not missing:
        return None
    return tuple(entry for entry in index.manifests if entry.digest not in missing)


# -- pushing ----------------------------------------------------------------------------------------


def push_artifact(client: RegistryClient, repository: str, artifact: Artifact) -> Recorded:
    """Push ``artifact`` to ``repository`` as a referrer of its subject (see :func:`push_artifacts`)."""
    return push_artifacts(client, repository, [artifact])[0]


def push_artifacts(client: RegistryClient, repository: str, artifacts: Sequence[Artifact]) -> list[Recorded]:
    """Push ``artifacts`` to ``repository`` as referrers of their subjects (see the module
    docstring): their blobs (each once, the empty config among them), then their manifests, a
    few at a time; then, for what the registry did not record itself, one merge of each
    subject's referrers tag. For each, ``api`` when the registry recorded it (``OCI-Subject``),
    ``tag`` when the tag-schema index lists it. A registry that does not take OCI artifacts is a
    RegistryError saying so; no tag is written then."""
    from concurrent.futures import ThreadPoolExecutor  # here: it imports logging

    blobs = {desc.digest: (desc, a.blobs[desc.digest]) for a in artifacts for desc in a.blob_descriptors}
    with ThreadPoolExecutor(max_workers=PUSH_CONCURRENCY, thread_name_prefix="attach") as pool:
        list(pool.map(lambda item: _ensure_blob(client, repository, *item), blobs.values()))
        recorded = list(pool.map(lambda artifact: _put_artifact(client, repository, artifact), artifacts))
    by_subject: dict[str, list[Artifact]] = {}
    for artifact, how in zip(artifacts, recorded, strict=True):
        if how == "tag":
            by_subject.setdefault(artifact.subject.digest, []).append(artifact)
    for digest, group in by_subject.items():
        _push_tag_index(client, repository, digest, group)
    return recorded


def _ensure_blob(client: RegistryClient, repository: str, desc: Descriptor, data: bytes) -> None:
    if not blob_exists(client, repository, desc):
        upload_blob(client, repository, desc, data, NullReporter())


def _put_artifact(client: RegistryClient, repository: str, artifact: Artifact) -> Recorded:
    """Put the artifact's manifest by digest: ``api`` when the registry recorded it as a referrer."""
    ours = artifact.descriptor
    reply = put_manifest(client, repository, ours.digest, mt.OCI_MANIFEST, artifact.raw)
    if reply.status in REFUSED_STATUS and not (_BLOB_MISSING_CODES & error_codes(reply)):
        codes = ", ".join(sorted(error_codes(reply)))[:80] or "no error code"
        raise RegistryError(
            f"{client.registry} does not take OCI artifacts: it refused the {artifact.artifact_type} "
            f"manifest for {repository} (HTTP {reply.status}, {codes}); push to a registry that "
            "supports OCI 1.1 artifacts, or push without attachments"
        )
    confirm_manifest(client, reply, repository, f"artifact {ours.digest}", artifact.raw)
    return "api" if reply.headers.get("oci-subject", "").strip() == artifact.subject.digest else "tag"
