"""The Manager's typed settings (pydantic-settings, read once by the composition root)."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from shared.crypto import Keyring
from shared.errors import ConfigurationError
from shared.sealing import Opener
from shared.settings import ServiceSettings


def _bad_key(message: str) -> PydanticCustomError:
    # A custom error keeps pydantic's "Value error, " prefix out of the one-line start-up message.
    return PydanticCustomError("invalid_key", message.strip())


# Durations above a year are typos; they would also overflow timedelta/asyncio at start-up.
MAX_SECONDS = 366 * 24 * 3600


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ManagerStoreSettings(ServiceSettings):
    """What the API-key commands need: the database only (no encryption or recipient keys)."""

    service_name: str = Field("manager", description="Name put on every log line and AMQP app_id.")
    mongodb_database: str = Field("sfconnect_manager", min_length=1, max_length=63)
    instance_id: str = Field(
        default_factory=_default_instance_id,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="This replica's id (names its RPC reply queue and its refresh leases).",
    )
    mongodb_timeout_seconds: float = Field(
        5, gt=0, le=MAX_SECONDS, description="Server selection and operation timeout for MongoDB calls."
    )


class ManagerSettings(ManagerStoreSettings):
    """Everything the Manager reads from its environment (names pinned in the team notes)."""

    http_host: str = Field("0.0.0.0", description="Address the HTTP API listens on.")  # noqa: S104
    http_port: int = Field(8080, ge=1, le=65535)
    encryption_keys: SecretStr = Field(
        description="Comma-separated 'kid:base64key' AES-256 keys; the first encrypts, all decrypt."
    )
    recipient_private_keys: SecretStr = Field(
        description="Comma-separated 'kid:base64url-x25519' keys; the first is the one the Builder seals to."
    )
    token_lifetime_seconds: float = Field(
        3600, gt=0, le=MAX_SECONDS, description="Tokens older than this are refreshed."
    )
    rpc_deadline_seconds: float = Field(
        30, gt=0, le=MAX_SECONDS, description="How long a token refresh waits for the Builder."
    )
    publish_deadline_seconds: float = Field(
        5, gt=0, le=MAX_SECONDS, description="How long a publish waits for its confirm."
    )
    sweeper_interval_seconds: float = Field(
        30, gt=0, le=MAX_SECONDS, description="How often unpublished commands are swept."
    )
    pending_republish_seconds: float = Field(
        120,
        gt=0,
        le=MAX_SECONDS,
        description="A command still unanswered after this long is published again.",
    )
    refresh_min_interval_seconds: float = Field(
        5,
        ge=0,
        le=MAX_SECONDS,
        description="A force_refresh within this many seconds of the last refresh returns that token.",
    )

    @field_validator("encryption_keys")
    @classmethod
    def _valid_keyring(cls, value: SecretStr) -> SecretStr:
        try:
            Keyring.parse(value.get_secret_value())
        except ConfigurationError as exc:
            raise _bad_key(str(exc).removeprefix("ENCRYPTION_KEYS")) from None
        return value

    @field_validator("recipient_private_keys")
    @classmethod
    def _valid_opener(cls, value: SecretStr) -> SecretStr:
        try:
            Opener.parse(value.get_secret_value())
        except ConfigurationError as exc:
            raise _bad_key(str(exc).removeprefix("RECIPIENT_PRIVATE_KEYS")) from None
        except ValueError:
            raise _bad_key("holds a key that is not a valid X25519 private key") from None
        return value

    def keyring(self) -> Keyring:
        """The at-rest keyring (validated when the settings were read)."""
        return Keyring.parse(self.encryption_keys.get_secret_value())

    def opener(self) -> Opener:
        """The private keys that open tokens sealed by the Builder."""
        return Opener.parse(self.recipient_private_keys.get_secret_value())
