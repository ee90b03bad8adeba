"""Per-connection RSA key pair and self-signed X.509 certificate (the app's JWT signing credential)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CERT_VALIDITY_DAYS = 3650


@dataclass(frozen=True)
class Credential:
    """A private key (PKCS#8 PEM) and its certificate (PEM)."""

    private_key_pem: str
    certificate_pem: str

    def __repr__(self) -> str:  # the key must never reach a log line through a repr
        return "Credential(private_key_pem=[REDACTED], certificate_pem=...)"

    @property
    def certificate_body(self) -> str:
        """The certificate as Salesforce stores it: base64 DER, no BEGIN/END lines, no line breaks."""
        return certificate_body(self.certificate_pem)


def certificate_body(pem_or_body: str) -> str:
    """Normalize a certificate (PEM or bare base64) to its one-line base64 DER body."""
    text = re.sub(r"-----(BEGIN|END) CERTIFICATE-----", "", pem_or_body)
    return "".join(text.split())


def certificate_der(pem_or_body: str) -> bytes:
    """The DER bytes of a certificate given as PEM or bare base64."""
    return base64.b64decode(certificate_body(pem_or_body))


def new_credential(common_name: str, *, now: datetime | None = None) -> Credential:
    """Generate an RSA 2048 key and a self-signed certificate naming ``common_name`` (CPU-bound: ~50 ms)."""
    moment = now or datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sfconnect"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(minutes=5))
        .not_valid_after(moment + timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Credential(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode())


def same_certificate(a: str, b: str) -> bool:
    """True when two certificates (PEM or bare base64) hold the same DER bytes."""
    try:
        return certificate_der(a) == certificate_der(b)
    except ValueError:
        return False
