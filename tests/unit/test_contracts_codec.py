"""Decoding never raises anything but a typed MalformedMessage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.contracts import (
    AppKind,
    AppSummary,
    ConnectionCreated,
    CreateConnection,
    MalformedMessage,
    SealedToken,
    decode,
    encode,
)

CMD = CreateConnection(
    connection_id="c-1",
    org_id="00D000000000001AAA",
    salesforce_username="o'brien+int&co@acme.com",
    admin_email="admin@example.com",
    label="Acme ERP",
    recipient_key_id="m1",
)


def test_a_command_round_trips() -> None:
    assert decode(CMD.message_type, encode(CMD)) == CMD


def test_timestamps_round_trip_as_utc() -> None:
    created = ConnectionCreated(
        connection_id="c-1",
        app=AppSummary(kind=AppKind.EXTERNAL_CLIENT_APP, full_name="sfc_c_1", consumer_key="3MVG9abcdefgh"),
        instance_url="https://acme.my.salesforce.com",
        issued_at=datetime(2026, 12, 3, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        sealed_token=SealedToken(key_id="m1", ciphertext="abcDEF_-"),
    )
    back = decode(created.message_type, encode(created))
    assert isinstance(back, ConnectionCreated)
    assert back.issued_at == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert back.issued_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("mtype", "body", "ctype", "reason"),
    [
        ("connection.create.v1", b"{not json", "application/json", "invalid_json"),
        ("connection.create.v1", b"\xff\xfe", "application/json", "invalid_json"),
        ("connection.create.v1", b"[1,2]", "application/json", "invalid_json"),
        (
            "connection.create.v1",
            b'{"connection_id": 1' + b"0" * 5000 + b"}",
            "application/json",
            "invalid_json",
        ),
        ("connection.create.v1", b'{"connection_id": 5}', "application/json", "schema_violation"),
        ("connection.explode.v1", b"{}", "application/json", "unknown_type"),
        (None, b"{}", "application/json", "unknown_type"),
        ("connection.create.v1", b"{}", "text/plain", "bad_content_type"),
        ("connection.create.v1", b"{" + b" " * 70000 + b"}", "application/json", "too_large"),
    ],
)
def test_malformed_input_gets_a_typed_reason(mtype: str | None, body: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(mtype, body, ctype)
    assert info.value.reason == reason


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        ConnectionCreated(
            connection_id="c",
            app=AppSummary(kind=AppKind.CONNECTED_APP, full_name="A", consumer_key="12345678"),
            instance_url="https://x.my.salesforce.com",
            issued_at=datetime(2026, 1, 1),
            sealed_token=SealedToken(key_id="m1", ciphertext="x"),
        )
