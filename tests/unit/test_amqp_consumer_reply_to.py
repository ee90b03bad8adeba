"""Which commands a ``require_reply_to`` consumer refuses before its handler runs, and under which reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.amqp import REASON_NO_CORRELATION_ID, REASON_NO_REPLY_TO, Delivery
from shared.amqp.consumer import Consumer

pytestmark = pytest.mark.unit


def delivery(*, reply_to: str | None, correlation_id: str | None) -> Delivery:
    return Delivery(
        message_id=None,
        correlation_id=correlation_id,
        reply_to=reply_to,
        request_id=None,
        message_type="connection.create.v1",
        redelivered=False,
        attempt=1,
        first_attempt_at=datetime.now(UTC),
        timestamp=None,
        app_id=None,
        routing_key="connection.create",
    )


@pytest.mark.parametrize(
    ("reply_to", "correlation_id", "reason"),
    [
        (None, "cmd-1", REASON_NO_REPLY_TO),
        (None, None, REASON_NO_REPLY_TO),
        ("manager.replies", None, REASON_NO_CORRELATION_ID),
    ],
)
def test_a_command_nobody_could_get_the_result_of_is_refused(
    reply_to: str | None, correlation_id: str | None, reason: str
) -> None:
    refusal = Consumer._unanswerable(delivery(reply_to=reply_to, correlation_id=correlation_id))
    assert refusal is not None and refusal[0] == reason and refusal[1]


def test_a_command_with_reply_to_and_correlation_id_is_accepted() -> None:
    assert Consumer._unanswerable(delivery(reply_to="manager.replies", correlation_id="cmd-1")) is None
