"""cosign's encrypted private keys, as ``cosign generate-key-pair`` writes them.

The PEM block (``ENCRYPTED SIGSTORE PRIVATE KEY``; ``ENCRYPTED COSIGN PRIVATE KEY`` before cosign
1.x renamed it) holds a JSON document, go-securesystemslib's ``encrypted`` format::

    {"kdf": {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}, "salt": "<base64>"},
     "cipher": {"name": "nacl/secretbox", "nonce": "<base64, 24 bytes>"},
     "ciphertext": "<base64>"}

The key of the box is scrypt(password, salt, N, r, p) of 32 bytes; the plaintext is the private key
as PKCS#8 DER. As go-securesystemslib does, only its three scrypt parameter sets are accepted (N =
2^15, 2^16, 2^17 with r = 8, p = 1), which also bounds the memory scrypt takes (128 MiB at most).

NaCl's secretbox (XSalsa20-Poly1305) is not in ``cryptography``; PyNaCl (libsodium) opens it,
imported only when such a key is loaded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from zeroimage.errors import InputError

PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")

#: The scrypt parameters go-securesystemslib writes and accepts: legacy, standard (cosign's
#: default), OWASP.
SCRYPT_PARAMETERS = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})

_KEY_SIZE = 32
_NONCE_SIZE = 24


class WrongPassword(Exception):
    """The box did not open with this password (its Poly1305 tag did not match)."""


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not base64") from None


def _field(document: Any, *names: str) -> Any:
    value = document
    for name in names:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def parse(body: bytes, what: str) -> tuple[tuple[int, int, int], bytes, bytes, bytes]:
    """The scrypt parameters, salt, nonce and ciphertext of a key's JSON; InputError naming
    ``what`` for anything cosign would not have written."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{what} is not a cosign key: its content is not JSON") from None
    if _field(document, "kdf", "name") != "scrypt":
        raise InputError(
            f"{what} uses key derivation {str(_field(document, 'kdf', 'name'))[:40]!r}; cosign's is scrypt"
        )
    if _field(document, "cipher", "name") != "nacl/secretbox":
        name = str(_field(document, "cipher", "name"))[:40]
        raise InputError(f"{what} uses cipher {name!r}; cosign's is nacl/secretbox")
    params = tuple(_field(document, "kdf", "params", name) for name in ("N", "r", "p"))
    if params not in SCRYPT_PARAMETERS or not all(type(p) is int for p in params):
        raise InputError(f"{what} has scrypt parameters {params!r} that cosign never writes")
    salt = _b64(_field(document, "kdf", "salt"), f"{what}'s salt")
    nonce = _b64(_field(document, "cipher", "nonce"), f"{what}'s nonce")
    if len(nonce) != _NONCE_SIZE:
        raise InputError(f"{what}'s nonce is {len(nonce)} bytes, not {_NONCE_SIZE}")
    ciphertext = _b64(document.get("ciphertext"), f"{what}'s ciphertext")
    n, r, p = params
    return (n, r, p), salt, nonce, ciphertext


def decrypt(body: bytes, password: bytes, what: str) -> bytes:
    """The PKCS#8 DER private key inside a cosign key's JSON ``body``; WrongPassword when the
    password does not open it, InputError when the document is malformed."""
    (n, r, p), salt, nonce, ciphertext = parse(body, what)
    # OpenSSL's scrypt needs 128·r·(N + p + 2) bytes; maxmem is its ceiling, not an allocation.
    box_key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=_KEY_SIZE, maxmem=128 * r * (n + p + 2) + 65536)
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        return SecretBox(box_key).decrypt(ciphertext, nonce)
    except CryptoError:
        raise WrongPassword() from None
