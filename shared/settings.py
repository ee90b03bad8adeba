"""Typed settings read once from the environment (pydantic-settings).

Nothing else in the project reads ``os.environ``. Each service subclasses :class:`ServiceSettings`
with its own prefix-free fields; the names below are shared by both services.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo.errors import ConfigurationError as MongoConfigurationError
from pymongo.uri_parser import parse_uri

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AMQP_PREFIX_SHAPE = re.compile(r"^[A-Za-z0-9._-]{0,64}$")


class ServiceSettings(BaseSettings):
    """Settings every service has: where the broker and the database are, how to log."""

    # allow_inf_nan=False: every float setting (timeouts, intervals, deadlines) of every service refuses
    # inf and nan ("SWEEPER_INTERVAL_SECONDS=inf" is a configuration error, not "never").
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True, allow_inf_nan=False)

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
        "",
        description="Prefix for every exchange and queue name (tests isolate themselves with it): "
        "at most 64 letters, digits, '.', '_' or '-'.",
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

    @field_validator("amqp_prefix")
    @classmethod
    def _amqp_prefix_shape(cls, v: str) -> str:
        # Names are prefix + e.g. "manager.rpc.<instance id>"; the broker caps names at 255 bytes.
        if not AMQP_PREFIX_SHAPE.fullmatch(v):
            raise ValueError("must be at most 64 characters, each a letter, digit, '.', '_' or '-'")
        return v

    @field_validator("mongodb_url")
    @classmethod
    def _mongo_scheme(cls, v: SecretStr) -> SecretStr:
        url = v.get_secret_value()
        parts = urlsplit(url)
        if parts.scheme not in ("mongodb", "mongodb+srv") or not parts.netloc:
            raise ValueError("must be a mongodb:// or mongodb+srv:// URL with a host")
        if parts.scheme == "mongodb":  # parsing a mongodb+srv:// URL would resolve DNS: left to start-up
            try:
                parse_uri(url)
            except (MongoConfigurationError, ValueError) as exc:
                userinfo = parts.netloc.rpartition("@")[0]
                reason = str(exc).replace(userinfo, "***") if userinfo else str(exc)
                raise ValueError(f"is not a valid MongoDB connection string: {reason}") from None
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
