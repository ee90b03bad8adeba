"""shared.contracts.codec as the Manager's replies consumer relies on it: only typed MalformedMessage errors."""

from __future__ import annotations

import pytest

from shared.contracts import DeleteConnection, decode, encode
from shared.contracts.codec import MalformedMessage

pytestmark = pytest.mark.unit

COMMAND = DeleteConnection(connection_id="con_1")
BODY = encode(COMMAND)


@pytest.mark.parametrize("content_type", [None, "", "  "])
def test_a_message_without_a_content_type_is_refused_as_bad_content_type(content_type: str | None) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode(COMMAND.message_type, BODY, content_type)
    assert info.value.reason == "bad_content_type"
    assert "no content_type" in info.value.detail


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_content_types_with_parameters_or_other_case_are_decoded(content_type: str) -> None:
    assert decode(COMMAND.message_type, BODY, content_type) == COMMAND


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1500 + b"]" * 1500,
        b'{"connection_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
    ids=["array", "array-in-a-field", "object"],
)
def test_deeply_nested_bodies_under_the_size_limit_are_invalid_json_not_a_recursion_error(
    body: bytes,
) -> None:
    assert len(body) < 64 * 1024
    with pytest.raises(MalformedMessage) as info:
        decode(COMMAND.message_type, body, "application/json")
    assert info.value.reason == "invalid_json"
