"""The connection aggregate and its allowed state changes. No I/O: pure values and rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from manager.errors import InvalidTransition


class ConnectionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


ALLOWED: dict[ConnectionStatus, frozenset[ConnectionStatus]] = {
    ConnectionStatus.PENDING: frozenset({ConnectionStatus.ACTIVE, ConnectionStatus.FAILED}),
    ConnectionStatus.ACTIVE: frozenset({ConnectionStatus.DELETING}),
    ConnectionStatus.FAILED: frozenset({ConnectionStatus.DELETING}),
    ConnectionStatus.DELETING: frozenset({ConnectionStatus.DELETED}),
    ConnectionStatus.DELETED: frozenset(),
}

ACCESS_TOKEN_FIELD = "access_token"

CONNECTION_ID_PATTERN = r"^con_[0-9a-f]{22}$"
"""Every id the Manager gives a connection (``services.new_connection_id``): ``con_``, 12 hex digits of
creation time in milliseconds, 10 random ones. The API refuses any other shape as malformed (400/422)."""
CONNECTION_ID_SHAPE = re.compile(CONNECTION_ID_PATTERN)


def can_change(old: ConnectionStatus, new: ConnectionStatus) -> bool:
    """True when the lifecycle allows ``old`` → ``new``."""
    return new in ALLOWED[old]


@dataclass(frozen=True)
class AppInfo:
    """The OAuth client app the Builder created in the org (not secret)."""

    kind: str
    full_name: str
    consumer_key: str


@dataclass(frozen=True)
class ErrorInfo:
    """Why a command failed, as the Builder reported it."""

    code: str
    message: str
    at: datetime


@dataclass(frozen=True)
class StoredToken:
    """An access token encrypted at rest; ``stored_at`` is the Manager's clock when it was saved."""

    ciphertext: str
    issued_at: datetime
    stored_at: datetime


@dataclass(frozen=True)
class CommandRecord:
    """The outbox entry: recorded (with its message id) before publishing, marked once the broker confirmed.

    ``attempts`` counts tries to publish (a refused publish during a broker outage included);
    ``publishes`` counts the ones the broker confirmed, the only ones the Builder can have answered.
    """

    message_id: str
    type: str
    recorded_at: datetime
    published_at: datetime | None = None
    attempts: int = 1
    publishes: int = 0


@dataclass(frozen=True)
class Connection:
    """A Salesforce connection: who it runs as, its app, its encrypted token and where it is in its life."""

    id: str
    name: str
    org_id: str
    salesforce_username: str
    admin_email: str
    label: str
    app_kind: str
    status: ConnectionStatus
    version: int
    created_at: datetime
    updated_at: datetime
    app: AppInfo | None = None
    instance_url: str | None = None
    token: StoredToken | None = None
    error: ErrorInfo | None = None
    command: CommandRecord | None = None
    refreshed_at: datetime | None = None
    token_generation: int = 0
    last_refresh_error: ErrorInfo | None = None

    @classmethod
    def new(
        cls,
        *,
        id: str,
        name: str,
        org_id: str,
        salesforce_username: str,
        admin_email: str,
        label: str,
        app_kind: str,
        command: CommandRecord,
        now: datetime,
    ) -> Connection:
        """A connection just asked for: ``pending``, with its create command recorded."""
        return cls(
            id=id,
            name=name,
            org_id=org_id,
            salesforce_username=salesforce_username,
            admin_email=admin_email,
            label=label,
            app_kind=app_kind,
            status=ConnectionStatus.PENDING,
            version=1,
            created_at=now,
            updated_at=now,
            command=command,
        )

    def _to(self, status: ConnectionStatus, now: datetime, **changes: object) -> Connection:
        if not can_change(self.status, status):
            raise InvalidTransition(f"connection {self.id} is {self.status}; it cannot become {status}")
        return replace(self, status=status, version=self.version + 1, updated_at=now, **changes)  # type: ignore[arg-type]

    def activate(self, *, app: AppInfo, instance_url: str, token: StoredToken, now: datetime) -> Connection:
        """pending → active with the app and the first token."""
        return self._to(
            ConnectionStatus.ACTIVE,
            now,
            app=app,
            instance_url=instance_url,
            token=token,
            command=None,
            token_generation=self.token_generation + 1,
        )

    def fail(self, *, code: str, message: str, now: datetime) -> Connection:
        """pending → failed with the Builder's error."""
        return self._to(ConnectionStatus.FAILED, now, error=ErrorInfo(code, message, now), command=None)

    def begin_deletion(self, *, command: CommandRecord, now: datetime) -> Connection:
        """active|failed → deleting, with the delete command recorded."""
        return self._to(ConnectionStatus.DELETING, now, command=command, error=None)

    def finish_deletion(self, *, now: datetime) -> Connection:
        """deleting → deleted; the token is forgotten."""
        return self._to(ConnectionStatus.DELETED, now, token=None, command=None)

    def delete_failed(self, *, code: str, message: str, now: datetime) -> Connection:
        """The delete command failed: stay ``deleting``, record why, stop re-publishing."""
        if self.status is not ConnectionStatus.DELETING:
            raise InvalidTransition(f"connection {self.id} is {self.status}, not deleting")
        return replace(
            self,
            version=self.version + 1,
            updated_at=now,
            error=ErrorInfo(code, message, now),
            command=None,
        )

    def retry_deletion(self, *, command: CommandRecord, now: datetime) -> Connection:
        """A deleting connection whose delete failed gets a new delete command."""
        if self.status is not ConnectionStatus.DELETING:
            raise InvalidTransition(f"connection {self.id} is {self.status}, not deleting")
        return replace(self, version=self.version + 1, updated_at=now, error=None, command=command)

    def with_token(self, *, token: StoredToken, instance_url: str, now: datetime) -> Connection:
        """An active connection gets a newer token (an older or equal one is refused)."""
        if self.status is not ConnectionStatus.ACTIVE:
            raise InvalidTransition(f"connection {self.id} is {self.status}; only active ones hold tokens")
        if self.token is not None and token.issued_at < self.token.issued_at:
            raise InvalidTransition(f"connection {self.id} already holds a newer token")
        return replace(
            self,
            version=self.version + 1,
            updated_at=now,
            token=token,
            instance_url=instance_url,
            refreshed_at=now,
            token_generation=self.token_generation + 1,
            last_refresh_error=None,
        )

    def refresh_failed(self, *, code: str, message: str, now: datetime) -> Connection:
        """The Builder refused a refresh: stay ``active`` with the old token, record why for operators."""
        if self.status is not ConnectionStatus.ACTIVE:
            raise InvalidTransition(f"connection {self.id} is {self.status}; only active ones are refreshed")
        return replace(
            self,
            version=self.version + 1,
            updated_at=now,
            last_refresh_error=ErrorInfo(code, message, now),
        )

    def token_is_stale(self, *, now: datetime, lifetime: timedelta) -> bool:
        """True when there is no token or it was issued longer than ``lifetime`` ago."""
        return self.token is None or now - self.token.issued_at >= lifetime

    def refreshed_within(self, *, now: datetime, window: timedelta) -> bool:
        """True when a refresh stored the current token less than ``window`` ago (forced refreshes coalesce)."""
        return self.refreshed_at is not None and now - self.refreshed_at < window

    @property
    def awaits_reply(self) -> bool:
        """True while a command is outstanding (pending create or deleting)."""
        return (
            self.status in (ConnectionStatus.PENDING, ConnectionStatus.DELETING) and self.command is not None
        )
