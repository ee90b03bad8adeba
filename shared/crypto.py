"""Encryption at rest: a versioned AES-256-GCM keyring.

Configuration gives an ordered list ``kid:base64key`` (32 raw bytes each). The first key encrypts;
every key decrypts. Each ciphertext carries its key id and a random 96-bit nonce, and is bound by
associated data to the record and field it belongs to, so a value copied to another record or field
does not decrypt.

Stored form (a string, so it reads well in a database dump): ``v1.<kid>.<b64url(nonce||ciphertext)>``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigurationError, PermanentError

_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PREFIX = "v1"


class DecryptionError(PermanentError):
    code = "decryption_failed"


def _b64decode_any(text: str) -> bytes:
    text = text.strip()
    pad = "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + pad)
        return base64.b64decode(text + pad, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not valid base64") from exc


def generate_key() -> str:
    """A new random 256-bit key, base64url encoded (for ``kid:key`` configuration entries)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass(frozen=True)
class Keyring:
    """Ordered AES-256-GCM keys; ``active`` encrypts, all decrypt."""

    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, entries: Iterable[str] | str, *, setting: str = "ENCRYPTION_KEYS") -> Keyring:
        """Parse ``kid:base64key`` entries (a list or a comma-separated string), validating every key."""
        if isinstance(entries, str):
            entries = [e for e in entries.split(",") if e.strip()]
        keys: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            kid, sep, material = entry.strip().partition(":")
            if not sep:
                raise ConfigurationError(f"{setting}[{index}] must look like 'key-id:base64-key'")
            if not _KID.fullmatch(kid):
                raise ConfigurationError(f"{setting}[{index}] key id must be 1-32 of A-Z a-z 0-9 _ -")
            if kid in seen:
                raise ConfigurationError(f"{setting}[{index}] repeats key id {kid!r}")
            try:
                raw = _b64decode_any(material)
            except ValueError as exc:
                raise ConfigurationError(f"{setting}[{index}] ({kid}) {exc}") from None
            if len(raw) != 32:
                raise ConfigurationError(
                    f"{setting}[{index}] ({kid}) must decode to 32 bytes for AES-256, got {len(raw)}"
                )
            seen.add(kid)
            keys.append((kid, raw))
        if not keys:
            raise ConfigurationError(f"{setting} must hold at least one key")
        return cls(tuple(keys))

    @property
    def active_kid(self) -> str:
        return self.keys[0][0]

    def _key(self, kid: str) -> bytes:
        for k, raw in self.keys:
            if k == kid:
                return raw
        raise DecryptionError(f"ciphertext was made with key {kid!r}, which is not in the keyring")

    @staticmethod
    def _aad(record_id: str, field: str) -> bytes:
        return f"sfconnect|{record_id}|{field}".encode()

    def encrypt(self, plaintext: str | bytes, *, record_id: str, field: str) -> str:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        kid, raw = self.keys[0]
        nonce = os.urandom(12)
        ct = AESGCM(raw).encrypt(nonce, data, self._aad(record_id, field))
        return f"{_PREFIX}.{kid}.{base64.urlsafe_b64encode(nonce + ct).decode().rstrip('=')}"

    def decrypt_bytes(self, token: str, *, record_id: str, field: str) -> bytes:
        try:
            prefix, kid, body = token.split(".", 2)
        except (ValueError, AttributeError):
            raise DecryptionError(f"{field} is not an sfconnect ciphertext") from None
        if prefix != _PREFIX:
            raise DecryptionError(f"{field} has an unknown ciphertext version {prefix!r}")
        raw = self._key(kid)
        try:
            blob = _b64decode_any(body)
        except ValueError:
            raise DecryptionError(f"{field} ciphertext is not valid base64") from None
        if len(blob) < 12 + 16:
            raise DecryptionError(f"{field} ciphertext is truncated")
        try:
            return AESGCM(raw).decrypt(blob[:12], blob[12:], self._aad(record_id, field))
        except InvalidTag:
            raise DecryptionError(
                f"{field} of {record_id} failed authentication (wrong key, record or field)"
            ) from None

    def decrypt(self, token: str, *, record_id: str, field: str) -> str:
        return self.decrypt_bytes(token, record_id=record_id, field=field).decode()

    def needs_rotation(self, token: str) -> bool:
        """True when ``token`` was not made with the active key."""
        parts = token.split(".", 2)
        return len(parts) != 3 or parts[1] != self.active_kid

    def rotate(self, token: str, *, record_id: str, field: str) -> str:
        """Re-encrypt ``token`` with the active key (returns it unchanged when already current)."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(
            self.decrypt_bytes(token, record_id=record_id, field=field), record_id=record_id, field=field
        )
