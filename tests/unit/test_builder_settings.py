"""The Builder's settings: bad values are named (never echoed), login hosts are limited and ordered."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import describe_validation_error
from tests.unit.builder_fakes import make_settings

pytestmark = pytest.mark.unit


def test_plain_http_is_accepted_only_for_a_local_simulator() -> None:
    assert (
        make_settings(salesforce_login_url="http://127.0.0.1:8090/").salesforce_login_url
        == "http://127.0.0.1:8090"
    )
    with pytest.raises(ValidationError) as info:
        make_settings(salesforce_login_url="http://login.example.com")
    assert "SALESFORCE_LOGIN_URL" in describe_validation_error(info.value)


def test_login_urls_put_the_default_first_then_the_sandbox_host_then_the_extra_ones() -> None:
    settings = make_settings(
        salesforce_allowed_login_urls="https://acme.my.salesforce.com/, https://login.salesforce.com"
    )
    assert settings.login_urls() == (
        "https://login.salesforce.com",
        "https://test.salesforce.com",
        "https://acme.my.salesforce.com",
    )


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("encryption_keys", "k1:c2hvcnQ", "ENCRYPTION_KEYS"),
        ("recipient_public_keys", "mgr1:nope", "RECIPIENT_PUBLIC_KEYS"),
        ("admin_api_key", "short", "ADMIN_API_KEY"),
        ("salesforce_api_version", "v68", "SALESFORCE_API_VERSION"),
        ("app_kind_preference", "auto", "APP_KIND_PREFERENCE"),
    ],
)
def test_a_bad_setting_is_named_without_its_value(field: str, value: str, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(**{field: value})
    line = describe_validation_error(info.value)
    assert named in line
    assert value not in line or len(value) < 6
