"""Base of every wire model: frozen, unknown fields refused, timestamps timezone-aware UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

CONNECTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a timezone (UTC expected)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
ConnectionId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=CONNECTION_ID.pattern,
        description="The Manager's id for the connection (letters, digits, '_' and '-').",
    ),
]
KeyId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """A message body. ``message_type`` is the AMQP ``type`` property; ``routing_key`` where it is sent."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    message_type: ClassVar[str]
    routing_key: ClassVar[str]
    summary: ClassVar[str] = ""
