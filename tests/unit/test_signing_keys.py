"""Signing keys: every kind a user may hold loads (made with ``cryptography``, in cosign's format by
an independent writer, and cosign's own test keys), and every bad one is refused in one line."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tests.support.cosign_keys import cosign_encrypted_key
from zeroimage.errors import InputError, UsageError, ZeroimageError
from zeroimage.signing import SigningKey, load_signing_key, load_verifying_key
from zeroimage.signing.keys import MAX_KEY_FILE_SIZE

COSIGN_DATA = Path(__file__).parent.parent / "data" / "cosign"
PASSWORD = "correct horse battery staple"


def pem(key: PrivateKeyTypes, fmt: serialization.PrivateFormat, password: str | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def spki(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem_of(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write(tmp_path: Path, data: bytes, name: str = "key.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_signs_for(key: SigningKey, private: PrivateKeyTypes) -> None:
    """The loaded key is ``private``: its public half is the same, and what it signs verifies with
    ``cryptography`` directly."""
    assert key.verifying_key.spki_der == spki(private)
    signature = key.sign(b"payload")
    public = private.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))  # raises if not


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --- what loads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "password"),
    [
        (serialization.PrivateFormat.PKCS8, None),
        (serialization.PrivateFormat.PKCS8, PASSWORD),  # -----BEGIN ENCRYPTED PRIVATE KEY-----
        (serialization.PrivateFormat.TraditionalOpenSSL, None),  # -----BEGIN EC PRIVATE KEY-----
        (serialization.PrivateFormat.TraditionalOpenSSL, PASSWORD),  # Proc-Type: 4,ENCRYPTED
    ],
    ids=["pkcs8", "pkcs8-encrypted", "sec1", "sec1-encrypted"],
)
def test_pem_keys_load(
    tmp_path: Path, p256: ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat, password: str | None
) -> None:
    path = write(tmp_path, pem(p256, fmt, password))
    assert_signs_for(load_signing_key(path, password), p256)


def test_cosign_key_made_as_cosign_does_loads(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    path = write(tmp_path, cosign_encrypted_key(p256, PASSWORD.encode()), "cosign.key")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert_signs_for(load_signing_key(path, PASSWORD), p256)


@pytest.mark.parametrize("n", [32768, 131072])
def test_cosign_key_with_each_kdf_strength_loads(tmp_path: Path, p256: ec.EllipticCurvePrivateKey, n: int) -> None:
    path = write(tmp_path, cosign_encrypted_key(p256, b"pw", n=n, pem_type="ENCRYPTED COSIGN PRIVATE KEY"))
    assert_signs_for(load_signing_key(path, "pw"), p256)


def test_cosign_key_with_empty_password_loads_without_one(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    """``COSIGN_PASSWORD= cosign generate-key-pair`` makes a key whose password is empty."""
    path = write(tmp_path, cosign_encrypted_key(p256, b""))
    assert_signs_for(load_signing_key(path, None), p256)
    assert_signs_for(load_signing_key(path, ""), p256)


@pytest.mark.parametrize("name", ["sigstore-label.key", "cosign-label-pkcs8.key", "cosign-label-sec1.key"])
def test_cosign_test_keys_from_cosign_load(name: str) -> None:
    """Keys that cosign's own tests encrypted (tests/data/cosign/README.md), password "hello"."""
    key = load_signing_key(COSIGN_DATA / name, "hello")
    assert key.verifying_key.verify(key.sign(b"x"), b"x")
    with pytest.raises(UsageError, match=r"wrong password \(COSIGN_PASSWORD\)$"):
        load_signing_key(COSIGN_DATA / name, "hell")


def test_key_behind_a_symlink_loads(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    """Kubernetes mounts secrets as symlinks into a ..data directory."""
    target = write(tmp_path, pem(p256, serialization.PrivateFormat.PKCS8), "real.pem")
    (tmp_path / "cosign.key").symlink_to(target)
    assert_signs_for(load_signing_key(tmp_path / "cosign.key"), p256)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this host")
def test_key_from_a_pipe_loads(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    """``--sign-key <(vault read …)`` hands over a pipe."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = pem(p256, serialization.PrivateFormat.PKCS8)

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(data)

    thread = threading.Thread(target=feed)
    thread.start()
    try:
        assert_signs_for(load_signing_key(fifo), p256)
    finally:
        thread.join(timeout=30)


def test_signatures_are_deterministic(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    """RFC 6979: the same bytes signed twice give the same signature (so a re-push makes no new
    signature artifact)."""
    key = load_signing_key(write(tmp_path, pem(p256, serialization.PrivateFormat.PKCS8)))
    assert key.sign(b"manifest") == key.sign(b"manifest")
    assert key.sign(b"manifest") != key.sign(b"manifest2")


# --- verifying keys -----------------------------------------------------------------------------


def test_verifying_key_from_public_pem_and_its_hint(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    public_pem = public_pem_of(p256)
    key = load_verifying_key(write(tmp_path, public_pem, "cosign.pub"))
    assert key.spki_der == spki(p256)
    assert key.hint == base64.b64encode(hashlib.sha256(spki(p256)).digest()).decode()
    assert key.pem == public_pem  # as cosign writes cosign.pub
    signature = p256.sign(b"data", ec.ECDSA(hashes.SHA256()))
    assert key.verify(signature, b"data")
    assert not key.verify(signature, b"datA")
    assert not key.verify(b"\x30\x00garbage", b"data")


def test_verifying_key_from_private_keys(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    plain = write(tmp_path, pem(p256, serialization.PrivateFormat.PKCS8), "plain.pem")
    cosign = write(tmp_path, cosign_encrypted_key(p256, b"pw"), "cosign.key")
    assert load_verifying_key(plain).spki_der == spki(p256)
    assert load_verifying_key(cosign, "pw").spki_der == spki(p256)


# --- what is refused, in one line ----------------------------------------------------------------


def refused(
    call: Callable[[], object], error: type[ZeroimageError], pattern: str, *, secrets: tuple[str, ...] = ()
) -> str:
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    assert all(secret not in message for secret in secrets), message
    import re

    assert re.search(pattern, message), message
    return message


def test_missing_key(tmp_path: Path) -> None:
    refused(
        lambda: load_signing_key(tmp_path / "nope.key"),
        InputError,
        r"^cannot read signing key: .*nope\.key: no such file or directory$",
    )


def test_directory_as_key(tmp_path: Path) -> None:
    refused(lambda: load_signing_key(tmp_path), InputError, r"is a directory$")


@pytest.mark.skipif(os.geteuid() == 0 or os.name != "posix", reason="root reads any file")
def test_unreadable_key(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    path = write(tmp_path, pem(p256, serialization.PrivateFormat.PKCS8))
    path.chmod(0)
    refused(lambda: load_signing_key(path), InputError, r"permission denied$")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"is not a PEM key"),
        (b"just some text\n", r"is not a PEM key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", r"is not a valid private key$"),
        (b"x" * (MAX_KEY_FILE_SIZE + 1), r"is larger than 65536 bytes: not a key$"),
    ],
    ids=["empty", "text", "corrupt-pkcs8", "huge"],
)
def test_malformed_key(tmp_path: Path, content: bytes, pattern: str) -> None:
    refused(lambda: load_signing_key(write(tmp_path, content)), InputError, pattern)


def test_public_key_given_to_sign(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    public_pem = public_pem_of(p256)
    refused(
        lambda: load_signing_key(write(tmp_path, public_pem, "cosign.pub")),
        UsageError,
        r"cosign\.pub is a public key: sign with the private key \(cosign\.key\), verify with the public one$",
    )


@pytest.mark.parametrize(
    ("make", "fmt", "kind"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.PKCS8, "an RSA key"),
        (lambda: rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.TraditionalOpenSSL, "an RSA key"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.PKCS8, "an ECDSA P-384 key"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8, "an Ed25519 key"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.OpenSSH, "an OpenSSH key"),
    ],
    ids=["rsa-pkcs8", "rsa-pkcs1", "p384", "ed25519", "openssh"],
)
def test_unsupported_key_kinds(
    tmp_path: Path, make: Callable[[], PrivateKeyTypes], fmt: serialization.PrivateFormat, kind: str
) -> None:
    path = write(tmp_path, pem(make(), fmt))
    refused(lambda: load_signing_key(path), UsageError, rf"is {kind}; zeroimage signs with ECDSA P-256 keys \(")


def test_unsupported_key_kind_inside_a_cosign_key(tmp_path: Path) -> None:
    path = write(tmp_path, cosign_encrypted_key(ec.generate_private_key(ec.SECP384R1()), b"pw"))
    refused(lambda: load_signing_key(path, "pw"), UsageError, r"is an ECDSA P-384 key; zeroimage signs with")


@pytest.mark.parametrize("kind", ["pkcs8", "sec1", "cosign"])
def test_encrypted_key_without_password(tmp_path: Path, p256: ec.EllipticCurvePrivateKey, kind: str) -> None:
    data = {
        "pkcs8": lambda: pem(p256, serialization.PrivateFormat.PKCS8, PASSWORD),
        "sec1": lambda: pem(p256, serialization.PrivateFormat.TraditionalOpenSSL, PASSWORD),
        "cosign": lambda: cosign_encrypted_key(p256, PASSWORD.encode()),
    }[kind]()
    refused(
        lambda: load_signing_key(write(tmp_path, data)),
        UsageError,
        r"^signing key .*key\.pem is encrypted: give its password \(COSIGN_PASSWORD\)$",
    )


@pytest.mark.parametrize("kind", ["pkcs8", "sec1", "cosign"])
def test_encrypted_key_with_wrong_password(tmp_path: Path, p256: ec.EllipticCurvePrivateKey, kind: str) -> None:
    data = {
        "pkcs8": lambda: pem(p256, serialization.PrivateFormat.PKCS8, PASSWORD),
        "sec1": lambda: pem(p256, serialization.PrivateFormat.TraditionalOpenSSL, PASSWORD),
        "cosign": lambda: cosign_encrypted_key(p256, PASSWORD.encode()),
    }[kind]()
    refused(
        lambda: load_signing_key(write(tmp_path, data), "Tr0ub4dor&3"),
        UsageError,
        r"^signing key .*key\.pem: wrong password \(COSIGN_PASSWORD\)$",
        secrets=("Tr0ub4dor&3", PASSWORD),
    )


def _cosign_document(path: Path) -> dict[str, object]:
    lines = path.read_bytes().splitlines()[1:-1]
    return json.loads(base64.b64decode(b"".join(lines)))  # type: ignore[no-any-return]


def _rewrite_cosign(path: Path, document: dict[str, object]) -> None:
    body = base64.b64encode(json.dumps(document).encode())
    path.write_bytes(
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + body + b"\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )


def test_cosign_key_with_altered_ciphertext(tmp_path: Path, p256: ec.EllipticCurvePrivateKey) -> None:
    """secretbox authenticates: an altered key does not open (it reads as a wrong password, as
    in cosign)."""
    path = write(tmp_path, cosign_encrypted_key(p256, b"pw"))
    document = _cosign_document(path)
    sealed = bytearray(base64.b64decode(str(document["ciphertext"])))
    sealed[-1] ^= 1
    document["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    _rewrite_cosign(path, document)
    refused(lambda: load_signing_key(path, "pw"), UsageError, r"wrong password")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            lambda d: d["kdf"].update(params={"N": 1 << 24, "r": 8, "p": 1}),
            r"scrypt parameters .* cosign never writes$",
        ),
        (lambda d: d["kdf"].update(name="pbkdf2"), r"uses key derivation 'pbkdf2'; cosign's is scrypt$"),
        (lambda d: d["cipher"].update(name="aes-gcm"), r"uses cipher 'aes-gcm'; cosign's is nacl/secretbox$"),
        (lambda d: d["cipher"].update(nonce="AAAA"), r"nonce is 3 bytes, not 24$"),
        (lambda d: d.update(ciphertext="!!"), r"ciphertext is not base64$"),
    ],
    ids=["huge-scrypt", "kdf", "cipher", "nonce", "ciphertext"],
)
def test_cosign_key_that_cosign_would_not_write(
    tmp_path: Path,
    p256: ec.EllipticCurvePrivateKey,
    change: Callable[[dict[str, dict[str, object]]], None],
    pattern: str,
) -> None:
    """Refused before any scrypt runs: an N of 2^24 would take 16 GiB."""
    path = write(tmp_path, cosign_encrypted_key(p256, b"pw", n=32768))
    document = _cosign_document(path)
    change(document)  # type: ignore[arg-type]
    _rewrite_cosign(path, document)
    refused(lambda: load_signing_key(path, "pw"), InputError, pattern)


def test_verifying_key_refusals(tmp_path: Path) -> None:
    rsa_public = public_pem_of(rsa.generate_private_key(65537, 2048))
    refused(lambda: load_verifying_key(write(tmp_path, rsa_public)), UsageError, r"is an RSA key; zeroimage signs")
    refused(lambda: load_verifying_key(write(tmp_path, b"nothing")), InputError, r"is not a PEM key")
    refused(lambda: load_verifying_key(tmp_path / "none.pub"), InputError, r"no such file or directory$")


def test_importing_signing_loads_no_crypto_library() -> None:
    """A build that does not sign pays nothing: cryptography and PyNaCl load with a key only."""
    code = "import sys, zeroimage.signing; print(sorted(m for m in ('cryptography', 'nacl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
