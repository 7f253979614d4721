"""Write private keys in cosign's encrypted format, as ``cosign generate-key-pair`` does, for
tests — written from go-securesystemslib's ``encrypted`` package (the format cosign uses), apart
from zeroimage's reader, so that the two check each other; tests/data/cosign holds keys that
cosign's own tests made.

    {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<b64>"},
     "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}

in a PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY``, the plaintext a PKCS#8 DER key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from nacl.secret import SecretBox


def cosign_encrypted_key(
    private_key: PrivateKeyTypes,
    password: bytes,
    *,
    n: int = 65536,
    pem_type: str = "ENCRYPTED SIGSTORE PRIVATE KEY",
    kdf_name: str = "scrypt",
) -> bytes:
    """``private_key`` as cosign would store it with ``password`` (N = 2^16: cosign's default)."""
    der = private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    box_key = hashlib.scrypt(password, salt=salt, n=n, r=8, p=1, dklen=32, maxmem=256 * 1024 * 1024)
    sealed = SecretBox(box_key).encrypt(der, nonce).ciphertext  # Poly1305 tag, then the ciphertext
    document = {
        "kdf": {"name": kdf_name, "params": {"N": n, "r": 8, "p": 1}, "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    body = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {pem_type}-----\n" + "\n".join(lines) + f"\n-----END {pem_type}-----\n").encode()
