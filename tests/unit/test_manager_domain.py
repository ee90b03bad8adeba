"""The connection lifecycle allows exactly its documented state changes, each bumping the version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from manager.domain import (
    ALLOWED,
    AppInfo,
    CommandRecord,
    Connection,
    ConnectionStatus,
    StoredToken,
    can_change,
)
from manager.errors import InvalidTransition

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = ConnectionStatus


def _pending() -> Connection:
    return Connection.new(
        id="con_1",
        name="acme",
        org_id="00D000000000001EAA",
        salesforce_username="u@acme.com",
        admin_email="a@acme.com",
        label="Acme",
        app_kind="auto",
        command=CommandRecord(message_id="m1", type="connection.create.v1", recorded_at=NOW),
        now=NOW,
    )


def _token(issued: datetime) -> StoredToken:
    return StoredToken(ciphertext="v1.k1.x", issued_at=issued, stored_at=issued)


APP = AppInfo("external_client_app", "SFC_1", "3MVG9xxxxxxxx")


def test_the_allowed_state_changes_are_exactly_the_documented_ones() -> None:
    expected = {
        (S.PENDING, S.ACTIVE),
        (S.PENDING, S.FAILED),
        (S.ACTIVE, S.DELETING),
        (S.FAILED, S.DELETING),
        (S.DELETING, S.DELETED),
    }
    allowed = {(a, b) for a in S for b in S if can_change(a, b)}
    assert allowed == expected
    assert set(ALLOWED) == set(S)


def test_activation_stores_app_and_token_clears_the_command_and_bumps_the_version() -> None:
    active = _pending().activate(app=APP, instance_url="https://x", token=_token(NOW), now=NOW)
    assert active.status is S.ACTIVE
    assert active.version == 2
    assert active.command is None
    assert active.app == APP


def test_a_failed_connection_records_code_and_message_and_cannot_become_active() -> None:
    failed = _pending().fail(code="user_not_found", message="no such user", now=NOW)
    assert failed.status is S.FAILED
    assert failed.error is not None and (failed.error.code, failed.error.message) == (
        "user_not_found",
        "no such user",
    )
    with pytest.raises(InvalidTransition):
        failed.activate(app=APP, instance_url="https://x", token=_token(NOW), now=NOW)


def test_a_pending_connection_cannot_start_deleting() -> None:
    with pytest.raises(InvalidTransition):
        _pending().begin_deletion(command=CommandRecord("m2", "connection.delete.v1", NOW), now=NOW)


def test_deletion_forgets_the_token_and_deleted_is_final() -> None:
    active = _pending().activate(app=APP, instance_url="https://x", token=_token(NOW), now=NOW)
    deleting = active.begin_deletion(command=CommandRecord("m2", "connection.delete.v1", NOW), now=NOW)
    deleted = deleting.finish_deletion(now=NOW)
    assert (deleting.status, deleted.status) == (S.DELETING, S.DELETED)
    assert deleted.token is None
    assert deleted.version == 4
    with pytest.raises(InvalidTransition):
        deleted.begin_deletion(command=CommandRecord("m3", "connection.delete.v1", NOW), now=NOW)


def test_an_older_token_never_replaces_a_newer_one() -> None:
    active = _pending().activate(app=APP, instance_url="https://x", token=_token(NOW), now=NOW)
    newer = active.with_token(token=_token(NOW + timedelta(minutes=1)), instance_url="https://x", now=NOW)
    assert newer.refreshed_at == NOW
    with pytest.raises(InvalidTransition):
        newer.with_token(token=_token(NOW), instance_url="https://x", now=NOW)


def test_a_token_is_stale_once_older_than_the_lifetime() -> None:
    active = _pending().activate(app=APP, instance_url="https://x", token=_token(NOW), now=NOW)
    hour = timedelta(hours=1)
    assert not active.token_is_stale(now=NOW + timedelta(minutes=59), lifetime=hour)
    assert active.token_is_stale(now=NOW + hour, lifetime=hour)


def test_a_refused_refresh_is_recorded_on_an_active_connection_and_cleared_by_the_next_token() -> None:
    active = _pending().activate(app=APP, instance_url="https://x", token=_token(NOW), now=NOW)
    later = NOW + timedelta(minutes=1)
    refused = active.refresh_failed(code="user_inactive", message="inactive", now=later)
    assert refused.status is S.ACTIVE and refused.token == active.token and refused.error is None
    assert refused.last_refresh_error is not None and refused.last_refresh_error.code == "user_inactive"
    assert refused.version == active.version + 1 and refused.updated_at == later
    renewed = refused.with_token(token=_token(later), instance_url="https://x", now=later)
    assert renewed.last_refresh_error is None
    with pytest.raises(InvalidTransition):
        _pending().refresh_failed(code="user_inactive", message="inactive", now=later)
