"""Run the independent Sigstore verifier — npm's @sigstore/verify, offline, with one public key as
its only trust material (tests/support/sigstore/verify.js) — on a bundle.

``make test`` (and ``make unit``) install it with ``npm ci`` when missing; a test that needs it is
skipped, with that advice, when node or the installed packages are missing.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import peers

VERIFIER = Path(__file__).parent / "sigstore"


@dataclass(frozen=True)
class Verdict:
    """What @sigstore/verify said: ``ok``, and its one line (``OK dsse-envelope TYPE PREDICATE``
    or ``FAIL CODE: message``)."""

    ok: bool
    line: str


def require_verifier() -> None:
    """Skip the calling test when the verifier cannot run."""
    peers.require("node")
    if not (VERIFIER / "node_modules" / "@sigstore" / "verify").is_dir():
        pytest.skip("@sigstore/verify is not installed: run `make sigstore-verifier`")


def sigstore_verify(
    bundle: bytes, public_key_pem: bytes, *, artifact: bytes | None = None, digest: str = ""
) -> Verdict:
    """Verify ``bundle`` with @sigstore/verify against the key; ``artifact`` is the signed bytes
    (needed by a message signature), ``digest`` what the bundle must speak of."""
    require_verifier()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bundle.json").write_bytes(bundle)
        (work / "key.pem").write_bytes(public_key_pem)
        cmd = ["node", str(VERIFIER / "verify.js"), str(work / "bundle.json"), str(work / "key.pem")]
        if artifact is not None:
            (work / "artifact").write_bytes(artifact)
            cmd += ["--artifact", str(work / "artifact")]
        if digest:
            cmd += ["--digest", digest]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode not in (0, 1):
        raise AssertionError(peers.describe(cmd, proc.returncode, proc.stdout, proc.stderr))
    return Verdict(proc.returncode == 0, proc.stdout.strip())
