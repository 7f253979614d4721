"""SLSA provenance (v1) of a build, as an in-toto Statement.

The predicate (https://slsa.dev/provenance/v1) says how the subjects — the image's manifests —
were made::

    buildDefinition:
      buildType            BUILD_TYPE: zeroimage's build (documented in the README)
      externalParameters   {"build": what was asked (programs, base, platforms, …),
                            and where the CI says so, what ran it: "workflow" on GitHub Actions,
                            "source"/"entryPoint" on GitLab CI, as their own build types name them}
      internalParameters   the CI's trusted facts ("github": event, repository and owner ids,
                            runner environment; "gitlab": pipeline), and the caller's
      resolvedDependencies the programs and added files and the base image, each by digest,
                            and the source repository at its commit when the CI names it
    runDetails:
      builder              {"id": the CI workflow (GitHub: SERVER_URL/WORKFLOW_REF, as
                            actions/attest-build-provenance) or runner (GitLab), else
                            LOCAL_BUILDER_ID; "version": {"zeroimage": VERSION}}
      metadata             {"invocationId": the CI run (…/actions/runs/ID/attempts/N; the job's
                            URL on GitLab), "startedOn", "finishedOn"}

Everything comes from the caller — times included, and the environment as a mapping (never read
from ``os.environ`` here) — so the same facts always give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zeroimage.oci.digest import validate_digest
from zeroimage.signing import intoto

#: zeroimage's build type. It names no domain of its own: the README's section on provenance is
#: its description (what externalParameters and resolvedDependencies hold).
BUILD_TYPE = "urn:zeroimage:buildtype:build:v1"
#: The builder of a build that no CI vouches for: a machine zeroimage ran on.
LOCAL_BUILDER_ID = "urn:zeroimage:builder:local"

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@dataclass(frozen=True)
class Material:
    """A resolved dependency of the build: a program or added file (``name`` its path in the
    image, ``digest`` the sha256 of its content), or the base image (``uri`` its reference,
    ``digest`` its manifest's)."""

    name: str
    digest: str
    uri: str = ""
    media_type: str = ""
    annotations: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_digest(self.digest)

    def to_dict(self) -> dict[str, Any]:
        return intoto.resource(
            self.digest, name=self.name, uri=self.uri, media_type=self.media_type, annotations=self.annotations
        )


@dataclass(frozen=True)
class CIIdentity:
    """Who ran the build, as the CI's environment says: the parts of the provenance it fills."""

    platform: str  # "github-actions" or "gitlab-ci"
    builder_id: str
    invocation_id: str
    external: Mapping[str, Any] = field(default_factory=dict)
    internal: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] | None = None


def _present(environment: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    return {key: environment[var] for key, var in names.items() if environment.get(var)}


def _github(env: Mapping[str, str]) -> CIIdentity | None:
    server, repository, run_id = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if not (server and repository and run_id):
        return None
    server = server.rstrip("/")
    workflow_ref = env.get("GITHUB_WORKFLOW_REF", "")  # owner/repo/.github/workflows/x.yml@refs/heads/main
    external: dict[str, Any] = {}
    workflow = {"ref": env.get("GITHUB_REF", ""), "repository": f"{server}/{repository}"}
    if workflow_ref:
        workflow["path"] = workflow_ref.removeprefix(f"{repository}/").split("@", 1)[0]
    external["workflow"] = {k: v for k, v in workflow.items() if v}
    internal = _present(
        env,
        {
            "event_name": "GITHUB_EVENT_NAME",
            "repository_id": "GITHUB_REPOSITORY_ID",
            "repository_owner_id": "GITHUB_REPOSITORY_OWNER_ID",
            "runner_environment": "RUNNER_ENVIRONMENT",
        },
    )
    source = None
    if env.get("GITHUB_SHA"):
        ref = env.get("GITHUB_REF", "")
        uri = f"git+{server}/{repository}" + (f"@{ref}" if ref else "")
        source = intoto.resource(uri=uri, digests={"gitCommit": env["GITHUB_SHA"]})
    return CIIdentity(
        platform="github-actions",
        builder_id=f"{server}/{workflow_ref}" if workflow_ref else f"{server}/{repository}",
        invocation_id=f"{server}/{repository}/actions/runs/{run_id}/attempts/{env.get('GITHUB_RUN_ATTEMPT') or '1'}",
        external=external,
        internal={"github": internal} if internal else {},
        source=source,
    )


def _gitlab(env: Mapping[str, str]) -> CIIdentity | None:
    project, job_url = env.get("CI_PROJECT_URL"), env.get("CI_JOB_URL")
    if not (project and job_url):
        return None
    project = project.rstrip("/")
    runner = env.get("CI_RUNNER_ID")
    external = _present(env, {"entryPoint": "CI_JOB_NAME"})
    external = {"source": project, **external}
    internal = _present(env, {"pipeline_id": "CI_PIPELINE_ID", "pipeline_source": "CI_PIPELINE_SOURCE"})
    source = None
    if env.get("CI_COMMIT_SHA"):
        if env.get("CI_COMMIT_TAG"):
            ref = f"refs/tags/{env['CI_COMMIT_TAG']}"
        elif env.get("CI_COMMIT_BRANCH"):
            ref = f"refs/heads/{env['CI_COMMIT_BRANCH']}"
        else:
            ref = env.get("CI_COMMIT_REF_NAME", "")
        uri = f"git+{project}" + (f"@{ref}" if ref else "")
        source = intoto.resource(uri=uri, digests={"gitCommit": env["CI_COMMIT_SHA"]})
    return CIIdentity(
        platform="gitlab-ci",
        builder_id=f"{project}/-/runners/{runner}" if runner else project,
        invocation_id=job_url,
        external=external,
        internal={"gitlab": internal} if internal else {},
        source=source,
    )


def ci_identity(environment: Mapping[str, str]) -> CIIdentity | None:
    """Who ran the build, from a CI's environment variables (the caller passes ``os.environ``
    or a part of it): GitHub Actions (``GITHUB_ACTIONS=true``) and GitLab CI
    (``GITLAB_CI=true``); None elsewhere."""
    if environment.get("GITHUB_ACTIONS") == "true":
        return _github(environment)
    if environment.get("GITLAB_CI") == "true":
        return _gitlab(environment)
    return None


def _timestamp(value: str | None, what: str) -> str | None:
    if value is not None and not _TIMESTAMP.match(value):
        raise ValueError(f"{what} must be an RFC 3339 UTC time (…T…Z), not {value!r}")
    return value


def provenance_predicate(
    *,
    materials: Sequence[Material],
    parameters: Mapping[str, Any],
    builder_version: str,
    environment: Mapping[str, str] | None = None,
    started_on: str | None = None,
    finished_on: str | None = None,
) -> dict[str, Any]:
    """The SLSA v1 provenance predicate (see the module for each field)."""
    ci = ci_identity(environment or {})
    external: dict[str, Any] = {"build": dict(parameters)}
    internal: dict[str, Any] = {}
    dependencies = [material.to_dict() for material in materials]
    if ci is not None:
        external.update(ci.external)
        internal.update(ci.internal)
        if ci.source is not None:
            dependencies.append(dict(ci.source))
    definition: dict[str, Any] = {"buildType": BUILD_TYPE, "externalParameters": external}
    if internal:
        definition["internalParameters"] = internal
    if dependencies:
        definition["resolvedDependencies"] = dependencies
    metadata: dict[str, str] = {}
    if ci is not None:
        metadata["invocationId"] = ci.invocation_id
    started, finished = _timestamp(started_on, "started_on"), _timestamp(finished_on, "finished_on")
    if started:
        metadata["startedOn"] = started
    if finished:
        metadata["finishedOn"] = finished
    builder = {"id": ci.builder_id if ci is not None else LOCAL_BUILDER_ID, "version": {"zeroimage": builder_version}}
    run: dict[str, Any] = {"builder": builder}
    if metadata:
        run["metadata"] = metadata
    return {"buildDefinition": definition, "runDetails": run}


def provenance_statement(subjects: Sequence[tuple[str, str]], predicate: Mapping[str, Any]) -> bytes:
    """The in-toto Statement of the build's provenance (``predicate``: :func:`provenance_predicate`)
    over ``subjects`` — (name, digest) pairs: the image's name and the digest of each manifest
    (and index) it pushed. Compact JSON in a fixed order: the same facts give the same bytes."""
    resources = [intoto.resource(digest, name=name) for name, digest in subjects]
    return intoto.statement(resources, intoto.SLSA_PROVENANCE_PREDICATE_TYPE, predicate)
