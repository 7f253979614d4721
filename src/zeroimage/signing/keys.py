"""Signing and verifying keys: ECDSA P-256 with SHA-256, the scheme cosign uses by default.

:func:`load_signing_key` reads a private key: PKCS#8 PEM (``PRIVATE KEY``), SEC1 PEM (``EC
PRIVATE KEY``, what ``openssl ecparam -genkey`` writes), either of them encrypted with a password
(``ENCRYPTED PRIVATE KEY``, or OpenSSL's ``Proc-Type: 4,ENCRYPTED``), and cosign's own encrypted
keys (see :mod:`zeroimage.signing.cosign_key`). :func:`load_verifying_key` reads a public key (PEM
SPKI, as ``cosign.pub``) or takes the public half of a private key.

Every problem is one line: a missing or unreadable file or a malformed key is an InputError; a
public key given to sign, a key of another kind (RSA, another curve, Ed25519), an encrypted key
without its password, or a wrong password is a UsageError. Messages name the file, never its
content or the password.

``cryptography`` (and PyNaCl for cosign's keys) are imported only when a key is loaded, so that a
build that does not sign never pays for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zeroimage.errors import InputError, UsageError
from zeroimage.files import describe_os_error
from zeroimage.signing import cosign_key
from zeroimage.untrusted import read_regular

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

#: Key files are a few hundred bytes; anything larger than this is not one.
MAX_KEY_FILE_SIZE = 64 * 1024

SUPPORTED = "zeroimage signs with ECDSA P-256 keys (PKCS#8 or SEC1 PEM, or a key from `cosign generate-key-pair`)"

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_PRIVATE_PEM = {b"PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}
_COSIGN_PEM = {t.encode() for t in cosign_key.PEM_TYPES}
_PUBLIC_PEM = {b"PUBLIC KEY", b"EC PUBLIC KEY", b"CERTIFICATE", b"RSA PUBLIC KEY"}
_OTHER_PRIVATE = {
    b"RSA PRIVATE KEY": "an RSA key",
    b"DSA PRIVATE KEY": "a DSA key",
    b"OPENSSH PRIVATE KEY": "an OpenSSH key",
}


def _curve_name(name: str) -> str:
    return {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp224r1": "P-224"}.get(name, name)


def _describe(key: object) -> str:
    """'an RSA key', 'an ECDSA P-384 key', … for a message."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an ECDSA {_curve_name(key.curve.name)} key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "a DSA key"
    return f"a {type(key).__name__.lstrip('_')}"


def _is_p256(key: object) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec

    curve = getattr(key, "curve", None)
    return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(curve, ec.SECP256R1)


@dataclass(frozen=True)
class VerifyingKey:
    """A public ECDSA P-256 key, known by its DER SubjectPublicKeyInfo."""

    spki_der: bytes
    _public: EllipticCurvePublicKey = field(compare=False, repr=False)

    @classmethod
    def from_spki_der(cls, der: bytes, what: str = "public key") -> VerifyingKey:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            public = load_der_public_key(der)
        except (ValueError, TypeError):
            raise InputError(f"{what} is not a valid public key") from None
        return cls._of(public, what)

    @classmethod
    def _of(cls, public: PublicKeyTypes, what: str) -> VerifyingKey:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if not _is_p256(public) or not isinstance(public, ec.EllipticCurvePublicKey):
            raise UsageError(f"{what} is {_describe(public)}; {SUPPORTED}")
        der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return cls(der, public)

    @property
    def hint(self) -> str:
        """The key's hint in a Sigstore bundle, as sigstore-go and cosign make it:
        base64(sha256(DER SubjectPublicKeyInfo))."""
        return base64.b64encode(hashlib.sha256(self.spki_der).digest()).decode()

    @property
    def pem(self) -> bytes:
        """The key as cosign writes ``cosign.pub``."""
        body = base64.encodebytes(self.spki_der).replace(b"\n", b"")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + b"\n-----END PUBLIC KEY-----\n"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` (DER ECDSA) is this key's over SHA-256 of ``data``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self._public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private ECDSA P-256 key. Its signatures are deterministic (RFC 6979) where the OpenSSL
    underneath offers them (3.2 and later, as in ``cryptography``'s wheels): signing the same
    bytes again gives the same signature, so a re-pushed image gets the same signature artifacts
    rather than one more each time."""

    verifying_key: VerifyingKey
    _private: EllipticCurvePrivateKey = field(compare=False, repr=False)

    @classmethod
    def _of(cls, private: PrivateKeyTypes, what: str) -> SigningKey:
        from cryptography.hazmat.primitives.asymmetric import ec

        if not _is_p256(private) or not isinstance(private, ec.EllipticCurvePrivateKey):
            raise UsageError(f"{what} is {_describe(private)}; {SUPPORTED}")
        return cls(VerifyingKey._of(private.public_key(), what), private)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key (for tests and for callers that make their own key files)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        return cls._of(ec.generate_private_key(ec.SECP256R1()), "generated key")

    def sign(self, data: bytes) -> bytes:
        """A DER ECDSA signature over SHA-256 of ``data``."""
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            return self._private.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        except UnsupportedAlgorithm:  # an OpenSSL older than 3.2: randomized, as cosign's are
            return self._private.sign(data, ec.ECDSA(hashes.SHA256()))


def _read_key_file(path: Path, what: str) -> bytes:
    """A key file's bytes: a regular file or a pipe (``--sign-key <(vault read …)``), followed
    through symlinks (Kubernetes mounts secrets as symlinks), at most MAX_KEY_FILE_SIZE."""
    label = f"{what} {os.fspath(path)}"
    try:
        return read_regular(path, MAX_KEY_FILE_SIZE, label, follow_symlinks=True, pipes=True, too_large="not a key")
    except FileNotFoundError as exc:
        raise InputError(f"cannot read {what}: {describe_os_error(exc, path)}") from None


def _pem_blocks(data: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """(type, whole block) of each PEM block; InputError if there is none."""
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise InputError(f"{what} is not a PEM key (no -----BEGIN … KEY----- block)")
    return blocks


def _pem_body(block: bytes, what: str) -> bytes:
    lines = block.splitlines()[1:-1]
    try:
        return base64.b64decode(b"".join(line.strip() for line in lines if b":" not in line), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid PEM: its body is not base64") from None


def _load_pem_private(block: bytes, password: str | None, what: str) -> PrivateKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    encrypted = block.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY") or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and password is None:
        raise UsageError(f"{what} is encrypted: give its password (COSIGN_PASSWORD)")
    secret = password.encode() if encrypted and password is not None else None
    try:
        return load_pem_private_key(block, secret)
    except TypeError:  # "Password was not given but private key is encrypted": a header we missed
        raise UsageError(f"{what} is encrypted: give its password (COSIGN_PASSWORD)") from None
    except UnsupportedAlgorithm as exc:
        raise UsageError(f"{what} uses an unsupported algorithm ({str(exc)[:80]}); {SUPPORTED}") from None
    except ValueError as exc:
        if encrypted and ("password" in str(exc).lower() or "decrypt" in str(exc).lower()):
            raise UsageError(f"{what}: wrong password (COSIGN_PASSWORD)") from None
        raise InputError(f"{what} is not a valid private key") from None


def _load_cosign_private(block: bytes, password: str | None, what: str) -> PrivateKeyTypes:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    body = _pem_body(block, what)
    try:
        if password is None:
            # `COSIGN_PASSWORD= cosign generate-key-pair` makes keys with an empty password; cosign
            # opens them when the variable is set and empty. Without a password, try that one.
            try:
                der = cosign_key.decrypt(body, b"", what)
            except cosign_key.WrongPassword:
                raise UsageError(f"{what} is encrypted: give its password (COSIGN_PASSWORD)") from None
        else:
            der = cosign_key.decrypt(body, password.encode(), what)
    except cosign_key.WrongPassword:
        raise UsageError(f"{what}: wrong password (COSIGN_PASSWORD)") from None
    try:
        return load_der_private_key(der, None)
    except (ValueError, TypeError):
        raise InputError(f"{what} holds no valid private key once decrypted") from None


def _private_key(data: bytes, password: str | None, what: str) -> PrivateKeyTypes | None:
    """The first private key in ``data``, or None when it holds only public keys or
    certificates."""
    for kind, block in _pem_blocks(data, what):
        if kind in _COSIGN_PEM:
            return _load_cosign_private(block, password, what)
        if kind in _PRIVATE_PEM:
            return _load_pem_private(block, password, what)
        if kind in _OTHER_PRIVATE:
            raise UsageError(f"{what} is {_OTHER_PRIVATE[kind]}; {SUPPORTED}")
    return None


def load_signing_key(path: Path, password: str | None = None, what: str = "signing key") -> SigningKey:
    """The ECDSA P-256 private key in ``path``, decrypted with ``password`` when it is encrypted
    (None: not given). See the module for what is accepted and how each problem is reported."""
    label = f"{what} {os.fspath(path)}"
    data = _read_key_file(path, what)
    private = _private_key(data, password, label)
    if private is None:
        kinds = {kind for kind, _ in _pem_blocks(data, label)}
        if kinds & _PUBLIC_PEM:
            raise UsageError(
                f"{label} is a public key: sign with the private key (cosign.key), verify with the public one"
            )
        shown = ", ".join(sorted(k.decode() for k in kinds))[:80]
        raise InputError(f"{label} holds no private key (PEM blocks: {shown})")
    return SigningKey._of(private, label)


def load_verifying_key(path: Path, password: str | None = None, what: str = "public key") -> VerifyingKey:
    """The ECDSA P-256 public key in ``path`` (PEM SPKI, as ``cosign.pub``), or the public half
    of a private key there (decrypted with ``password`` when it is encrypted)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    label = f"{what} {os.fspath(path)}"
    data = _read_key_file(path, what)
    for kind, block in _pem_blocks(data, label):
        if kind == b"PUBLIC KEY":
            try:
                public = load_pem_public_key(block)
            except (ValueError, TypeError):
                raise InputError(f"{label} is not a valid public key") from None
            return VerifyingKey._of(public, label)
    private = _private_key(data, password, label)
    if private is None:
        raise InputError(f"{label} holds no public key (a PEM block -----BEGIN PUBLIC KEY-----)")
    return SigningKey._of(private, label).verifying_key
