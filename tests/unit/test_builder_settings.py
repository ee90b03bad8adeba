"""The Builder's settings: bad values are named (never echoed), login hosts are limited and ordered."""

from __future__ import annotations

import pytest
from builder.settings import BuilderSettings
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


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("salesforce_client_secret", "", "SALESFORCE_CLIENT_SECRET"),
        ("salesforce_client_secret", "   ", "SALESFORCE_CLIENT_SECRET"),
        ("admin_api_key", "", "ADMIN_API_KEY"),
        ("admin_api_key", " " * 20, "ADMIN_API_KEY"),
        ("admin_api_key", "fifteen-chars-x", "ADMIN_API_KEY"),
        ("admin_api_key", "a-long-enough-admin-key-0123\n", "ADMIN_API_KEY"),
        ("salesforce_login_url", "https://admin:pw-1234@login.salesforce.com", "SALESFORCE_LOGIN_URL"),
        ("salesforce_sandbox_login_url", "https://admin@test.salesforce.com", "SALESFORCE_SANDBOX_LOGIN_URL"),
        (
            "salesforce_allowed_login_urls",
            "https://acme.my.salesforce.com,https://u:pw-1234@evil.example.com",
            "SALESFORCE_ALLOWED_LOGIN_URLS",
        ),
        ("salesforce_callback_url", "https://u:pw-1234@builder.example.com/cb", "SALESFORCE_CALLBACK_URL"),
        ("instance_id", "a/b", "INSTANCE_ID"),
        ("instance_id", "-leading-dash", "INSTANCE_ID"),
        ("instance_id", "x" * 65, "INSTANCE_ID"),
        ("instance_id", "has space", "INSTANCE_ID"),
    ],
)
def test_secrets_login_urls_and_the_instance_id_are_checked(field: str, value: str, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(**{field: value})
    line = describe_validation_error(info.value)
    assert named in line and "\n" not in line
    assert "pw-1234" not in line, "a password in a URL is never echoed"


@pytest.mark.parametrize("instance_id", ["", "builder-1", "pod_7.b", "B" * 64])
def test_an_instance_id_like_the_managers_is_accepted(instance_id: str) -> None:
    assert make_settings(instance_id=instance_id).instance_id == instance_id


FLOAT_SETTINGS = sorted(
    name for name, f in BuilderSettings.model_fields.items() if f.annotation in (float, "float")
)


def test_every_float_setting_is_listed() -> None:
    assert {"propagation_deadline_seconds", "mongodb_timeout_seconds", "shutdown_drain_seconds"} <= set(
        FLOAT_SETTINGS
    )


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e400"])
@pytest.mark.parametrize("field", FLOAT_SETTINGS)
def test_every_float_setting_must_be_a_finite_number(
    field: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_settings().model_dump()
    values = {
        k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
        for k, v in base.items()
        if k != field
    }
    monkeypatch.setenv(field.upper(), value)
    with pytest.raises(ValidationError) as info:
        BuilderSettings(**values)
    assert field.upper() in describe_validation_error(info.value)
