"""Settings shared by every service refuse what would only fail later: odd AMQP prefixes, inf/nan floats.

The base class lives in ``shared/settings.py``; these tests cover it through all three services'
settings classes, plus the Manager's own bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from builder.settings import BuilderSettings
from manager.settings import MAX_SECONDS, ManagerSettings, ManagerStoreSettings
from pydantic import ValidationError
from salesforce_sim.settings import SimSettings

from shared.settings import ServiceSettings, describe_validation_error
from tests.unit.builder_fakes import make_settings
from tests.unit.manager_fakes import make_keys
from tests.unit.manager_http_harness import manager_settings

pytestmark = pytest.mark.unit

Factory = Callable[..., ServiceSettings]
FACTORIES: dict[str, tuple[type[ServiceSettings], Factory]] = {
    "manager": (ManagerSettings, lambda **kw: manager_settings(make_keys(), **kw)),
    "manager-store": (ManagerStoreSettings, ManagerStoreSettings),
    "builder": (BuilderSettings, make_settings),
    "simulator": (SimSettings, SimSettings),
    "shared": (ServiceSettings, ServiceSettings),
}


def _refusal(factory: Factory, **values: Any) -> str:
    with pytest.raises(ValidationError) as info:
        factory(**values)
    return describe_validation_error(info.value)


def _float_fields(cls: type[ServiceSettings]) -> list[str]:
    return [name for name, field in cls.model_fields.items() if field.annotation in (float, float | None)]


def test_only_the_services_checked_below_have_float_settings() -> None:
    with_floats = {service for service, (cls, _) in FACTORIES.items() if _float_fields(cls)}
    assert with_floats == {"manager", "manager-store", "builder"}


@pytest.mark.parametrize("service", ["manager", "manager-store", "builder"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "NaN"])
def test_every_float_setting_of_every_service_refuses_inf_and_nan(service: str, value: str) -> None:
    cls, factory = FACTORIES[service]
    fields = _float_fields(cls)
    assert fields
    for name in fields:
        line = _refusal(factory, **{name: value})
        assert f"{name.upper()}: Input should be a finite number" in line, line


def test_sweeper_interval_inf_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_INTERVAL_SECONDS", "inf")
    assert "SWEEPER_INTERVAL_SECONDS" in _refusal(FACTORIES["manager"][1])


@pytest.mark.parametrize("service", FACTORIES)
@pytest.mark.parametrize(
    "prefix",
    ["../; rm", "p" * 65, "p" * 300, "a b.", "tést.", "x/y.", "q\n.", "$(id)."],
    ids=["shell", "65", "300", "space", "accent", "slash", "newline", "subst"],
)
def test_every_service_refuses_an_amqp_prefix_outside_the_safe_shape(service: str, prefix: str) -> None:
    line = _refusal(FACTORIES[service][1], amqp_prefix=prefix)
    assert "AMQP_PREFIX: Value error, must be at most 64 characters" in line
    assert prefix not in line


@pytest.mark.parametrize("prefix", ["", "t0123abcd.", "e2e_run-1.", "P" * 64, "sfconnect.staging."])
def test_ordinary_amqp_prefixes_are_kept(prefix: str) -> None:
    for _cls, factory in FACTORIES.values():
        assert factory(amqp_prefix=prefix).amqp_prefix == prefix


@pytest.mark.parametrize("name", _float_fields(ManagerSettings))
def test_manager_durations_above_a_year_are_refused_before_they_overflow(name: str) -> None:
    factory = FACTORIES["manager"][1]
    assert "less than or equal to" in _refusal(factory, **{name: "1e300"})
    assert getattr(factory(**{name: str(MAX_SECONDS)}), name) == MAX_SECONDS
