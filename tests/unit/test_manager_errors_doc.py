"""docs/errors.md lists every HTTP error code the Manager and the Builder answer, with its status."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from builder.http.middlewares import STATUS_BY_CODE
from manager import errors as manager_errors
from manager.http import problems
from manager.http.middlewares import _HTTP_CODES, status_for

from shared.contracts import ErrorCode
from shared.crypto import DecryptionError
from shared.errors import InvalidInput, SfconnectError

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _section(title: str) -> dict[str, str]:
    """code → status cell of the table under ``### title``."""
    text = DOC.read_text()
    body = text.split(f"### {title}", 1)[1].split("\n#", 1)[0]
    table: dict[str, str] = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            for code in re.findall(r"`([a-z_]+)`", cells[0]):
                table[code] = cells[1]
    return table


def _manager_codes() -> dict[str, int]:
    classes = [
        c
        for module in (manager_errors, problems)
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, SfconnectError) and c.__module__ == module.__name__
    ]
    codes = {c.code: status_for(c.__new__(c)) for c in (*classes, DecryptionError, InvalidInput)}
    codes.update({code: status for status, code in _HTTP_CODES.items()})
    codes["internal_error"] = 500
    return codes


def test_every_manager_http_code_is_documented_with_its_status() -> None:
    documented = _section("Manager")
    codes = _manager_codes()
    assert {"decryption_failed", "token_refresh_failed", "not_ready", "validation_failed"} <= set(codes)
    for code, status in codes.items():
        assert code in documented, f"{code} ({status}) is missing from the Manager table"
        assert str(status) in documented[code], f"{code}: documented {documented[code]!r}, code says {status}"
    assert documented["http_error"] == "as sent"
    assert set(documented) - set(codes) == {"http_error"}


def test_every_builder_http_code_is_documented_with_its_status() -> None:
    documented = _section("Builder")
    # invalid_state never becomes a problem document: the OAuth callback answers it with an HTML page
    codes = {code: status for code, status in STATUS_BY_CODE.items() if code != "invalid_state"}
    codes.update({"method_not_allowed": 405, "not_ready": 503, "internal_error": 500})
    for code, status in codes.items():
        assert code in documented, f"{code} ({status}) is missing from the Builder table"
        assert str(status) in documented[code], f"{code}: documented {documented[code]!r}, code says {status}"
    assert documented["http_error"] == "as sent"


def test_every_command_failed_code_is_documented() -> None:
    text = DOC.read_text().split("## HTTP problem types", 1)[0]
    for code in ErrorCode:
        assert f"| `{code.value}` |" in text


def test_the_documented_auth_cache_time_is_the_default() -> None:
    from manager.apikeys import Authenticator
    from manager.app import Overrides

    default = inspect.signature(Authenticator).parameters["cache_seconds"].default
    assert default == Overrides().auth_cache_seconds == 5.0
    assert "within the authentication cache time, 5 s" in DOC.read_text()
