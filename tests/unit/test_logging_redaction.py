"""The redaction step removes secrets wherever they appear in a log event."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from shared.logging import REDACTED, configure_logging, redact, redact_text

TOKEN = "00D5g000004ABCD!AQ4AQFakeTokenValue.abcdefghijklmnop_0123456789"


def test_a_token_in_a_nested_event_is_removed() -> None:
    event = {"outer": {"inner": [{"note": f"got {TOKEN}"}, {"access_token": "anything"}]}}
    cleaned = redact(event)
    assert TOKEN not in json.dumps(cleaned)
    assert cleaned["outer"]["inner"][1]["access_token"] == REDACTED


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {TOKEN}",
        "refresh_token=5Aep861abcdefghijklmnop&client_secret=s3cr3tvalue",
        "<met:sessionId>opaque-session-id-value</met:sessionId>",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "assertion=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJlLXZhbHVl",
        "amqp://guest:hunter2@broker:5672/",
    ],
)
def test_secret_shaped_text_is_removed(text: str) -> None:
    out = redact_text(text)
    for secret in (
        TOKEN,
        "5Aep861abcdefghijklmnop",
        "s3cr3tvalue",
        "opaque-session-id-value",
        "MIIEvQ",
        "eyJpc3MiOiJ4In0",
        "hunter2",
    ):
        assert secret not in out


def test_log_lines_carry_no_token_from_an_exception_message() -> None:
    buf = io.StringIO()
    configure_logging("test", "INFO", json=True, stream=buf)
    log = structlog.get_logger()
    try:
        raise RuntimeError(f"Salesforce said no to {TOKEN}")
    except RuntimeError:
        log.exception(
            "call failed", refresh_token="5Aep861zzzzzzzzzzzzzzzzz", request={"authorization": "Bearer x"}
        )
    line = buf.getvalue()
    assert line.strip(), "a log line was written"
    record = json.loads(line.splitlines()[-1])
    assert record["service"] == "test"
    assert record["refresh_token"] == REDACTED
    assert TOKEN not in line
    assert "5Aep861zzzzzzzzzzzzzzzzz" not in line
    assert "RuntimeError" in line


MARKER = (
    "plain-marker-value-4711"  # not secret-shaped: redaction leaves it alone, only show_locals=False hides it
)


def _raise_with_a_local() -> None:
    marker_local = MARKER
    raise ValueError(f"failed near a local of {len(marker_local)} characters")


def test_tracebacks_are_logged_without_local_variables() -> None:
    buf = io.StringIO()
    configure_logging("test", "INFO", json=True, stream=buf)
    try:
        _raise_with_a_local()
    except ValueError:
        structlog.get_logger().exception("call failed")
    record = json.loads(buf.getvalue().splitlines()[-1])
    frames = record["exception"][0]["frames"]
    assert any(f["name"] == "_raise_with_a_local" for f in frames), "the traceback was rendered"
    assert MARKER not in json.dumps(record)
    assert all("locals" not in f for f in frames)


def test_the_marker_would_show_if_locals_were_rendered() -> None:
    # The control for the test above: with locals, the same marker does reach the rendered traceback,
    # and redaction keeps it (it is no secret), so its absence above comes from show_locals=False.
    try:
        _raise_with_a_local()
    except ValueError as exc:
        rendered = structlog.tracebacks.ExceptionDictTransformer(show_locals=True)(
            (type(exc), exc, exc.__traceback__)
        )
    assert MARKER in json.dumps(redact(rendered), default=str)
