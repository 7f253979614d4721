"""Throw-away X.509 material for test peers: a private CA, TLS server and client certificates, JWT signing certs.

Everything is generated with the ``cryptography`` package (RSA 2048, SHA-256) and written as PEM
files, so both Go peers (the registry, skopeo) and Python clients can load it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both in memory and as PEM files on disk."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    cert_path: Path
    key_path: Path

    @property
    def cert_der(self) -> bytes:
        """The certificate in DER form (what a JWT ``x5c`` header carries, base64-encoded)."""
        return self.cert.public_bytes(serialization.Encoding.DER)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(pair_cert: x509.Certificate, key: rsa.RSAPrivateKey, directory: Path, stem: str) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(pair_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return KeyPair(cert=pair_cert, key=key, cert_path=cert_path, key_path=key_path)


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(days=1), now + dt.timedelta(days=30)


def _self_signed_ca(common_name: str, key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def make_ca(directory: Path, common_name: str = "zeroimage test CA") -> KeyPair:
    """Create a private CA (``ca.crt`` / ``ca.key`` in ``directory``)."""
    key = _new_key()
    return _write(_self_signed_ca(common_name, key), key, directory, "ca")


def make_server_cert(
    ca: KeyPair,
    directory: Path,
    *,
    stem: str = "server",
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1",),
) -> KeyPair:
    """Create a TLS server certificate signed by ``ca`` with the given subjectAltNames.

    Defaults to ``DNS:localhost, IP:127.0.0.1``; the certificate and key are written as
    ``<stem>.crt`` / ``<stem>.key`` in ``directory``.
    """
    key = _new_key()
    not_before, not_after = _validity()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0] if dns_names else "")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _write(cert, key, directory, stem)


def make_client_cert(ca: KeyPair, directory: Path, *, stem: str = "client", common_name: str = "client") -> KeyPair:
    """Create a TLS client certificate signed by ``ca`` (extended key usage: client authentication,
    which Go servers such as dockerd require of a client certificate); ``<stem>.crt`` / ``<stem>.key``."""
    key = _new_key()
    not_before, not_after = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return _write(cert, key, directory, stem)


def make_signing_cert(directory: Path, common_name: str = "zeroimage test token signer") -> KeyPair:
    """Create a self-signed RSA certificate for signing registry bearer tokens (RS256).

    The registry is given this certificate as its ``rootcertbundle``; tokens carry it in ``x5c``.
    Written as ``token-signer.crt`` / ``token-signer.key``.
    """
    key = _new_key()
    return _write(_self_signed_ca(common_name, key), key, directory, "token-signer")
