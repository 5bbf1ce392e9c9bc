"""Certificates made at test time with the ``cryptography`` package: a CA, a trainer certificate it signed, and an
unrelated CA, for the bridge's TLS tests (Python engines and the Godot addon alike)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRAINER_NAMES = ("localhost", "127.0.0.1")
"""What the trainer's certificate is valid for: the names a test engine connects by."""


@dataclass(frozen=True)
class Certificates:
    """PEM files in one folder."""

    ca: Path  # the CA that signed the trainer's certificate: what engines trust
    cert: Path  # the trainer's certificate (tls_cert)
    key: Path  # its private key (tls_key)
    other_ca: Path  # a CA that signed nothing here: an engine trusting it must refuse the trainer
    other_key: Path  # the other CA's key, which does not belong to ``cert``


def make_certificates(folder: Path) -> Certificates:
    """A CA, a trainer certificate for :data:`TRAINER_NAMES` signed by it, and an unrelated CA, written to ``folder``."""
    ca_key, other_key, key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("sparring test CA", ca_key, ca_key, None)
    other_ca = _certificate("unrelated test CA", other_key, other_key, None)
    cert = _certificate("sparring trainer", key, ca_key, ca)
    files = Certificates(folder / "ca.pem", folder / "trainer.pem", folder / "trainer.key", folder / "other-ca.pem",
                         folder / "other-ca.key")
    for path, certificate in ((files.ca, ca), (files.cert, cert), (files.other_ca, other_ca)):
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    for path, private in ((files.key, key), (files.other_key, other_key)):
        path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return files


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
                 issuer: x509.Certificate | None) -> x509.Certificate:
    """A CA certificate (``issuer`` None: self-signed) or a server certificate for :data:`TRAINER_NAMES`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(subject if issuer is None else issuer.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is None:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, encipher_only=False,
                                                decipher_only=False), critical=True))
    else:
        names = [x509.DNSName(TRAINER_NAMES[0]), x509.IPAddress(ipaddress.ip_address(TRAINER_NAMES[1]))]
        builder = (builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                                  critical=False))
    return builder.sign(signer, hashes.SHA256())
