"""In-transit sealing of access tokens with HPKE (RFC 9180): X25519, HKDF-SHA256, AES-256-GCM.

The Builder seals each token to one of the Manager's public keys, named by ``recipient_key_id``; the
Manager opens it with the matching private key. The HPKE ``info`` binds the connection id and message
type, so a sealed token copied into another message or connection fails to open. The broker, its disk
and its management UI only ever see ciphertext.

Key configuration entries are ``kid:base64url(raw 32-byte key)``; ``generate_recipient_key()`` makes a pair.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from shared.errors import ConfigurationError, PermanentError

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_RAW = serialization.Encoding.Raw


class SealingError(PermanentError):
    code = "sealing_failed"


class UnknownRecipientKey(SealingError):
    code = "unknown_recipient_key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64url") from None


def info_for(connection_id: str, message_type: str) -> bytes:
    return f"sfconnect/sealed-token/v1|{message_type}|{connection_id}".encode()


def generate_recipient_key(kid: str) -> tuple[str, str]:
    """Return ``(private_entry, public_entry)`` configuration strings for a new recipient key."""
    key = X25519PrivateKey.generate()
    priv = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    return f"{kid}:{_b64(priv)}", f"{kid}:{_b64(pub)}"


def _parse_entries(entries: Iterable[str] | str, setting: str) -> list[tuple[str, bytes]]:
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    out: list[tuple[str, bytes]] = []
    for index, entry in enumerate(entries):
        kid, sep, material = entry.strip().partition(":")
        if not sep or not _KID.fullmatch(kid):
            raise ConfigurationError(f"{setting}[{index}] must look like 'key-id:base64url-key'")
        try:
            raw = _unb64(material.strip())
        except ValueError as exc:
            raise ConfigurationError(f"{setting}[{index}] ({kid}) {exc}") from None
        if len(raw) != 32:
            raise ConfigurationError(f"{setting}[{index}] ({kid}) must decode to 32 bytes (X25519)")
        if any(k == kid for k, _ in out):
            raise ConfigurationError(f"{setting}[{index}] repeats key id {kid!r}")
        out.append((kid, raw))
    if not out:
        raise ConfigurationError(f"{setting} must hold at least one key")
    return out


@dataclass(frozen=True)
class Sealer:
    """The Builder's side: the Manager's public keys by id."""

    public_keys: dict[str, X25519PublicKey]

    @classmethod
    def parse(cls, entries: Iterable[str] | str, *, setting: str = "RECIPIENT_PUBLIC_KEYS") -> Sealer:
        return cls(
            {kid: X25519PublicKey.from_public_bytes(raw) for kid, raw in _parse_entries(entries, setting)}
        )

    def seal(self, plaintext: str, *, key_id: str, connection_id: str, message_type: str) -> str:
        key = self.public_keys.get(key_id)
        if key is None:
            raise UnknownRecipientKey(f"recipient key {key_id!r} is not configured on this service")
        return _b64(SUITE.encrypt(plaintext.encode(), key, info=info_for(connection_id, message_type)))


@dataclass(frozen=True)
class Opener:
    """The Manager's side: its private keys by id; ``active_kid`` is the one it asks the Builder to use."""

    private_keys: dict[str, X25519PrivateKey]
    active_kid: str

    @classmethod
    def parse(cls, entries: Iterable[str] | str, *, setting: str = "RECIPIENT_PRIVATE_KEYS") -> Opener:
        parsed = _parse_entries(entries, setting)
        return cls({kid: X25519PrivateKey.from_private_bytes(raw) for kid, raw in parsed}, parsed[0][0])

    def public_entries(self) -> list[str]:
        """The ``kid:key`` public entries to configure on the Builder."""
        return [
            f"{kid}:{_b64(k.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))}"
            for kid, k in self.private_keys.items()
        ]

    def open(self, sealed: str, *, key_id: str, connection_id: str, message_type: str) -> str:
        key = self.private_keys.get(key_id)
        if key is None:
            raise UnknownRecipientKey(f"sealed with key {key_id!r}, which this service does not hold")
        try:
            blob = _unb64(sealed)
            return SUITE.decrypt(blob, key, info=info_for(connection_id, message_type)).decode()
        except (ValueError, InvalidTag):
            raise SealingError(
                f"sealed token for connection {connection_id} did not open (tampered, or copied from another message)"
            ) from None
