"""Content digests (``algorithm:hex``), validated strictly before they name anything."""

from __future__ import annotations

import hashlib
import re

from zeroimage.errors import DigestError

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")


def validate_digest(value: object) -> str:
    """Return ``value`` if it is a well-formed digest; raise DigestError otherwise.

    Only sha256 and sha512 with lowercase hex of the exact length pass, so a digest can
    safely become a file name (``sha256:../../etc/passwd`` never does).
    """
    if isinstance(value, str):
        match = _DIGEST.match(value)
        if match and len(match.group(2)) == _HEX_LENGTH[match.group(1)]:
            return value
    shown = repr(value)[:80]
    raise DigestError(f"invalid digest {shown}: expected sha256:<64 hex> or sha512:<128 hex>")


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, hex_ = validate_digest(digest).partition(":")
    return algorithm, hex_


def new_hasher(digest: str) -> hashlib._Hash:
    return hashlib.new(split_digest(digest)[0])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, digest: str, what: str) -> bytes:
    """Return ``data`` if it hashes to ``digest``; DigestError naming ``what`` otherwise."""
    hasher = new_hasher(digest)
    hasher.update(data)
    actual = f"{split_digest(digest)[0]}:{hasher.hexdigest()}"
    if actual != digest:
        raise DigestError(f"digest mismatch for {what}: expected {digest}, got {actual}")
    return data
