"""SLSA v1 provenance: a valid in-toto Statement (checked by the in-toto project's own Python
bindings and by the specs' field rules), the CI's identity as GitHub's and GitLab's conventions
have it, nothing but the facts given, the same bytes on repeat, and signed, verified by
@sigstore/verify."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement as InTotoStatement

from tests.support.sigstore_verifier import sigstore_verify
from zeroimage.signing import (
    BUILD_TYPE,
    LOCAL_BUILDER_ID,
    PAYLOAD_TYPE,
    SLSA_PROVENANCE_PREDICATE_TYPE,
    Material,
    SigningKey,
    ci_identity,
    dsse_bundle,
    provenance_predicate,
    provenance_statement,
    verify_bundle,
)

INDEX = "sha256:" + "1" * 64
AMD64 = "sha256:" + "2" * 64
ARM64 = "sha256:" + "3" * 64
APP = "sha256:" + "4" * 64
BASE = "sha256:" + "5" * 64
SUBJECTS = [
    ("registry.example.com/app", INDEX),
    ("registry.example.com/app", AMD64),
    ("registry.example.com/app", ARM64),
]
MATERIALS = [
    Material("/app", APP, annotations={"source": "./dist/app-linux-amd64"}),
    Material("base", BASE, uri="pkg:docker/gcr.io/distroless/static@nonroot?platform=linux%2Famd64"),
]
PARAMETERS = {"programs": ["./dist/app-linux-amd64"], "base": "gcr.io/distroless/static:nonroot", "user": "nonroot"}

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo/app",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_WORKFLOW_REF": "octo/app/.github/workflows/release.yml@refs/tags/v1.2.0",
    "GITHUB_REF": "refs/tags/v1.2.0",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_REPOSITORY_ID": "123",
    "GITHUB_REPOSITORY_OWNER_ID": "456",
    "RUNNER_ENVIRONMENT": "github-hosted",
    "GITHUB_TOKEN": "ghs_secret_token_value",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "another_secret",
}
GITLAB = {
    "GITLAB_CI": "true",
    "CI_PROJECT_URL": "https://gitlab.example.com/group/app",
    "CI_JOB_URL": "https://gitlab.example.com/group/app/-/jobs/77",
    "CI_JOB_NAME": "image",
    "CI_RUNNER_ID": "12",
    "CI_PIPELINE_ID": "5",
    "CI_PIPELINE_SOURCE": "push",
    "CI_COMMIT_SHA": "fedcba9876543210fedcba9876543210fedcba98",
    "CI_COMMIT_BRANCH": "main",
    "CI_JOB_TOKEN": "glcbt-secret",
}


def make(environment: dict[str, str] | None = None, **extra: Any) -> bytes:
    return provenance_statement(
        SUBJECTS,
        provenance_predicate(
            materials=MATERIALS,
            parameters=PARAMETERS,
            builder_version="0.1.0",
            environment=environment,
            started_on="2024-05-01T10:00:00Z",
            finished_on="2024-05-01T10:00:07Z",
            **extra,
        ),
    )


_RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")
_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "gitCommit": re.compile(r"^[0-9a-f]{40}$")}


def check_resource_descriptor(rd: dict[str, Any], where: str) -> None:
    """in-toto ResourceDescriptor: one of uri, digest or content at least; a DigestSet of
    lowercase hex; a uri that is a URI."""
    assert set(rd) <= {"name", "uri", "digest", "content", "downloadLocation", "mediaType", "annotations"}, where
    assert rd.get("uri") or rd.get("digest") or rd.get("content"), where
    if "uri" in rd:
        assert _URI.match(rd["uri"]), where
    for algorithm, value in rd.get("digest", {}).items():
        assert _HEX[algorithm].match(value), (where, algorithm, value)


def check_statement(raw: bytes) -> dict[str, Any]:
    """The field rules of in-toto Statement v1 and SLSA provenance v1, then the in-toto project's
    own bindings: the Statement's validate() and a strict protobuf parse of the predicate (an
    unknown field, a wrong type or a malformed timestamp fails it)."""
    document: dict[str, Any] = json.loads(raw)
    assert list(document) == ["_type", "subject", "predicateType", "predicate"]
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == SLSA_PROVENANCE_PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    for i, subject in enumerate(document["subject"]):
        assert subject["digest"], i
        check_resource_descriptor(subject, f"subject[{i}]")
    predicate = document["predicate"]
    definition, run = predicate["buildDefinition"], predicate["runDetails"]
    assert _URI.match(definition["buildType"])
    assert isinstance(definition["externalParameters"], dict)
    assert isinstance(definition.get("internalParameters", {}), dict)
    assert not set(definition["externalParameters"]) & set(definition.get("internalParameters", {}))
    for i, dependency in enumerate(definition.get("resolvedDependencies", [])):
        check_resource_descriptor(dependency, f"resolvedDependencies[{i}]")
    assert _URI.match(run["builder"]["id"])
    assert all(isinstance(v, str) for v in run["builder"].get("version", {}).values())
    for name in ("startedOn", "finishedOn"):
        if name in run.get("metadata", {}):
            assert _RFC3339_UTC.match(run["metadata"][name]), name

    InTotoStatement.copy_from_pb(json_format.Parse(raw, statement_pb2.Statement())).validate()
    json_format.Parse(json.dumps(predicate), provenance_pb2.Provenance())  # strict: raises on any misfit
    return document


def test_provenance_outside_ci() -> None:
    document = check_statement(make({"HOME": "/root", "PATH": "/bin"}))
    assert [(s["name"], "sha256:" + s["digest"]["sha256"]) for s in document["subject"]] == SUBJECTS
    predicate = document["predicate"]
    assert predicate["buildDefinition"] == {
        "buildType": BUILD_TYPE,
        "externalParameters": {"build": PARAMETERS},
        "resolvedDependencies": [
            {"name": "/app", "digest": {"sha256": "4" * 64}, "annotations": {"source": "./dist/app-linux-amd64"}},
            {
                "name": "base",
                "uri": "pkg:docker/gcr.io/distroless/static@nonroot?platform=linux%2Famd64",
                "digest": {"sha256": "5" * 64},
            },
        ],
    }
    assert predicate["runDetails"] == {
        "builder": {"id": LOCAL_BUILDER_ID, "version": {"zeroimage": "0.1.0"}},
        "metadata": {"startedOn": "2024-05-01T10:00:00Z", "finishedOn": "2024-05-01T10:00:07Z"},
    }


def test_provenance_on_github_actions() -> None:
    """As actions/attest-build-provenance fills them: builder.id the workflow at its ref,
    invocationId the run's attempt, the source repository at its commit."""
    raw = make(GITHUB)
    document = check_statement(raw)
    definition, run = document["predicate"]["buildDefinition"], document["predicate"]["runDetails"]
    assert run["builder"] == {
        "id": "https://github.com/octo/app/.github/workflows/release.yml@refs/tags/v1.2.0",
        "version": {"zeroimage": "0.1.0"},
    }
    assert run["metadata"]["invocationId"] == "https://github.com/octo/app/actions/runs/9876543210/attempts/2"
    assert definition["externalParameters"]["workflow"] == {
        "ref": "refs/tags/v1.2.0",
        "repository": "https://github.com/octo/app",
        "path": ".github/workflows/release.yml",
    }
    assert definition["internalParameters"] == {
        "github": {
            "event_name": "push",
            "repository_id": "123",
            "repository_owner_id": "456",
            "runner_environment": "github-hosted",
        }
    }
    assert definition["resolvedDependencies"][-1] == {
        "uri": "git+https://github.com/octo/app@refs/tags/v1.2.0",
        "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"},
    }
    assert b"secret" not in raw  # only the variables that say who built it


def test_provenance_on_gitlab_ci() -> None:
    raw = make(GITLAB)
    document = check_statement(raw)
    definition, run = document["predicate"]["buildDefinition"], document["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://gitlab.example.com/group/app/-/runners/12"
    assert run["metadata"]["invocationId"] == "https://gitlab.example.com/group/app/-/jobs/77"
    assert definition["externalParameters"]["source"] == "https://gitlab.example.com/group/app"
    assert definition["externalParameters"]["entryPoint"] == "image"
    assert definition["resolvedDependencies"][-1] == {
        "uri": "git+https://gitlab.example.com/group/app@refs/heads/main",
        "digest": {"gitCommit": "fedcba9876543210fedcba9876543210fedcba98"},
    }
    assert b"secret" not in raw


def test_provenance_is_identical_on_repeat() -> None:
    assert make(GITHUB) == make(dict(GITHUB))
    assert make(GITHUB) != make(GITLAB)


def test_environment_is_only_what_the_caller_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never os.environ: a GitHub runner's variables reach the provenance only when passed."""
    for name, value in GITHUB.items():
        monkeypatch.setenv(name, value)
    document = json.loads(make(None))
    assert document["predicate"]["runDetails"]["builder"]["id"] == LOCAL_BUILDER_ID
    assert ci_identity({}) is None
    identity = ci_identity(GITHUB)
    assert identity is not None and identity.platform == "github-actions"


def test_github_without_a_run_is_no_identity() -> None:
    assert ci_identity({"GITHUB_ACTIONS": "true"}) is None


def test_bad_times_are_refused() -> None:
    with pytest.raises(ValueError, match=r"started_on must be an RFC 3339 UTC time"):
        provenance_predicate(
            materials=[], parameters={}, builder_version="0.1.0", started_on="2024-05-01 10:00:00+02:00"
        )


def test_signed_provenance_verifies() -> None:
    key = SigningKey.generate()
    bundle = dsse_bundle(key, PAYLOAD_TYPE, make(GITHUB))
    for digest in (INDEX, AMD64, ARM64):
        verdict = sigstore_verify(bundle, key.verifying_key.pem, digest=digest)
        assert verdict.line == f"OK dsse-envelope {PAYLOAD_TYPE} {SLSA_PROVENANCE_PREDICATE_TYPE}", verdict
        assert verify_bundle(bundle, key.verifying_key, digest).predicate_type == SLSA_PROVENANCE_PREDICATE_TYPE
    assert not sigstore_verify(bundle, key.verifying_key.pem, digest=APP).ok  # a material is no subject
