"""Typed settings read once from the environment (pydantic-settings).

Nothing else in the project reads ``os.environ``. Each service subclasses :class:`ServiceSettings`
with its own prefix-free fields; the names below are shared by both services.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServiceSettings(BaseSettings):
    """Settings every service has: where the broker and the database are, how to log."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    service_name: str = Field("sfconnect", description="Name put on every log line and AMQP app_id.")
    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/?reconnect_interval=1"),
        description="RabbitMQ URL (amqp:// or amqps://).",
    )
    mongodb_url: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017/"), description="MongoDB URL (mongodb:// or mongodb+srv://)."
    )
    mongodb_database: str = Field("sfconnect", description="Database name.", min_length=1, max_length=63)
    log_level: LogLevel = "INFO"
    log_json: bool = Field(True, description="JSON lines (true) or human-readable console output (false).")
    amqp_prefix: str = Field(
        "", description="Prefix for every exchange and queue name (tests isolate themselves with it)."
    )

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, v: SecretStr) -> SecretStr:
        parts = urlsplit(v.get_secret_value())
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError("must be an amqp:// or amqps:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ValueError("has a malformed port") from exc
        return v

    @field_validator("mongodb_url")
    @classmethod
    def _mongo_scheme(cls, v: SecretStr) -> SecretStr:
        parts = urlsplit(v.get_secret_value())
        if parts.scheme not in ("mongodb", "mongodb+srv") or not parts.netloc:
            raise ValueError("must be a mongodb:// or mongodb+srv:// URL with a host")
        return v


def describe_validation_error(exc: Exception) -> str:
    """One clear line naming each bad setting, never its value (it may be a secret)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False, include_input=False):
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            parts.append(f"{name.upper()}: {err['msg']}")
        return "invalid configuration: " + "; ".join(parts)
    return f"invalid configuration: {exc}"
