"""The compose stack parses, and its wiring matches what the services read from their settings."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from builder.settings import BuilderSettings
from manager.settings import ManagerSettings
from pydantic import ValidationError
from salesforce_sim.model import SimConfig
from salesforce_sim.settings import SimSettings

from shared.crypto import Keyring
from shared.errors import ConfigurationError
from shared.settings import ServiceSettings
from tests.deploy import compose_model as compose
from tests.deploy.support import ROOT, env_file_entries, upper

pytestmark = pytest.mark.unit

GENERATOR = ROOT / "deploy" / "compose" / "generate_env.py"
APP_SETTINGS: dict[str, type[ServiceSettings]] = {"manager": ManagerSettings, "builder": BuilderSettings}
SETTINGS: dict[str, type[ServiceSettings]] = {**APP_SETTINGS, "salesforce-sim": SimSettings}


def _generate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A .env made by the generator, as `make up` makes it."""
    out = tmp_path_factory.mktemp("compose") / ".env"
    result = _generate(out.parent, "--output", str(out))
    assert result.returncode == 0, result.stderr
    return env_file_entries(out)


@pytest.fixture(scope="module")
def stack(dotenv: dict[str, str]) -> dict[str, compose.Service]:
    return compose.services(dotenv)


def _settings(
    cls: type[ServiceSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    """Build a settings object exactly as the service does: from its process environment."""
    for name in list(os.environ):
        if name.lower() in cls.model_fields:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()  # type: ignore[call-arg]  # values come from the environment


def test_the_stack_has_the_broker_the_database_the_simulator_and_both_services(
    stack: dict[str, compose.Service],
) -> None:
    assert set(stack) == {"rabbitmq", "mongodb", "salesforce-sim", "builder", "manager"}
    image = stack["rabbitmq"].spec["image"]
    assert image.startswith("rabbitmq:4") and image.endswith("-management")
    assert stack["mongodb"].spec["image"].startswith("mongo:8")
    for name in ("salesforce-sim", "builder", "manager"):
        assert stack[name].spec["build"]["context"] == "."
        assert stack[name].spec["image"] == stack["manager"].spec["image"], "one image for every process"
    modules = {name: stack[name].spec["command"] for name in ("salesforce-sim", "builder", "manager")}
    assert modules == {
        "salesforce-sim": ["python", "-m", "salesforce_sim"],
        "builder": ["python", "-m", "builder"],
        "manager": ["python", "-m", "manager"],
    }


def test_mongodb_runs_as_a_replica_set_that_its_health_check_initiates(
    stack: dict[str, compose.Service],
) -> None:
    mongo = stack["mongodb"]
    command = mongo.spec["command"]
    rs_name = command[command.index("--replSet") + 1]
    script = mongo.healthcheck_target()
    assert "rs.initiate(" in script and f"_id: '{rs_name}'" in script
    assert f"host: '{mongo.spec['hostname']}:27017'" in script and mongo.spec["hostname"] == "mongodb"
    assert "isWritablePrimary" in script, "healthy only once it can take writes"
    for name in APP_SETTINGS:
        url = urlsplit(stack[name].environment()["MONGODB_URL"])
        assert (url.hostname, url.port or 27017) == ("mongodb", 27017)
        assert parse_qs(url.query)["replicaSet"] == [rs_name]


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(
    stack: dict[str, compose.Service],
) -> None:
    for service in stack.values():
        check = service.spec.get("healthcheck")
        assert check and check.get("test"), f"{service.name} has no health check"
        for dependency, condition in service.spec.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{service.name} → {dependency}"
    for name in APP_SETTINGS:
        assert {"rabbitmq", "mongodb"} <= set(stack[name].spec["depends_on"])
    assert "salesforce-sim" in stack["builder"].spec["depends_on"]


def test_every_variable_a_service_container_receives_is_one_of_its_settings(
    stack: dict[str, compose.Service],
) -> None:
    for name, cls in SETTINGS.items():
        unknown = set(stack[name].environment()) - upper(cls.model_fields)
        assert not unknown, f"{name} receives variables it has no setting for: {sorted(unknown)}"


def test_the_generated_configuration_is_accepted_by_the_real_settings_classes(
    stack: dict[str, compose.Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = _settings(ManagerSettings, stack["manager"].environment(), monkeypatch)
    builder = _settings(BuilderSettings, stack["builder"].environment(), monkeypatch)
    sim = _settings(SimSettings, stack["salesforce-sim"].environment(), monkeypatch)
    assert isinstance(manager, ManagerSettings) and isinstance(builder, BuilderSettings)
    assert isinstance(sim, SimSettings) and sim.sim_config == "/etc/sfconnect/simulator.json"
    assert (manager.service_name, builder.service_name) == ("manager", "builder")
    assert manager.mongodb_database != builder.mongodb_database, "each service owns its database"
    assert manager.keyring().keys != builder.keyring().keys, "each service has its own at-rest keys"
    sealed = builder.sealer().seal(
        "00Dxx!token", key_id=manager.opener().active_kid, connection_id="c1", message_type="t.v1"
    )
    opened = manager.opener().open(
        sealed, key_id=manager.opener().active_kid, connection_id="c1", message_type="t.v1"
    )
    assert opened == "00Dxx!token", "the Builder seals to the key the Manager holds"


def test_each_secret_reaches_only_the_service_that_needs_it(stack: dict[str, compose.Service]) -> None:
    manager, builder = stack["manager"].environment(), stack["builder"].environment()
    assert "RECIPIENT_PRIVATE_KEYS" not in builder
    assert not {"SALESFORCE_CLIENT_SECRET", "ADMIN_API_KEY", "SALESFORCE_CLIENT_ID"} & set(manager)
    assert not {k for k in stack["salesforce-sim"].environment() if "KEY" in k or "SECRET" in k}
    for name in ("rabbitmq", "mongodb"):
        env = stack[name].spec.get("environment", {})
        assert not {"ENCRYPTION_KEYS", "RECIPIENT_PRIVATE_KEYS", "SALESFORCE_CLIENT_SECRET"} & set(env)


def test_ports_agree_between_settings_health_checks_and_published_ports(
    stack: dict[str, compose.Service],
) -> None:
    def published(service: compose.Service) -> set[int]:
        out = set()
        for entry in service.spec.get("ports", []):
            host_ip, host_port, container_port = str(entry).split(":")
            assert host_ip == "127.0.0.1", f"{service.name} publishes {entry} beyond loopback"
            assert host_port == container_port
            out.add(int(container_port))
        return out

    manager, builder, sim = stack["manager"], stack["builder"], stack["salesforce-sim"]
    manager_port = int(manager.environment()["HTTP_PORT"])
    builder_port = int(builder.environment()["HTTP_PORT"])
    sim_port = int(sim.environment()["SIM_PORT"])
    assert (manager_port, builder_port, sim_port) == (8080, 8081, 8090)
    assert urlsplit(manager.healthcheck_target()).port == manager_port
    assert urlsplit(builder.healthcheck_target()).port == builder_port
    assert urlsplit(sim.healthcheck_target()).port == sim_port
    assert manager_port in published(manager)
    # The Builder lives in the simulator's network namespace, so its port is published there.
    assert builder.spec["network_mode"] == "service:salesforce-sim" and "ports" not in builder.spec
    assert {builder_port, sim_port} <= published(sim)
    assert sim.environment()["SIM_HOST"] == "0.0.0.0", "a published port needs a non-loopback listener"


def test_both_services_reach_the_broker_with_the_account_rabbitmq_creates(
    stack: dict[str, compose.Service],
) -> None:
    rabbit_env = stack["rabbitmq"].spec["environment"]
    for name in APP_SETTINGS:
        url = urlsplit(stack[name].environment()["AMQP_URL"])
        assert (url.scheme, url.hostname, url.port) == ("amqp", "rabbitmq", 5672)
        assert (url.username, url.password) == (
            rabbit_env["RABBITMQ_DEFAULT_USER"],
            rabbit_env["RABBITMQ_DEFAULT_PASS"],
        )


def test_the_simulator_knows_the_builders_oauth_client_and_the_builder_reaches_it_on_loopback(
    dotenv: dict[str, str], stack: dict[str, compose.Service]
) -> None:
    builder_env = stack["builder"].environment()
    sim = stack["salesforce-sim"]
    mounts = {m["source"]: m["target"] for m in sim.spec["configs"]}
    assert mounts["simulator-config"] == sim.environment()["SIM_CONFIG"]
    state = SimConfig.model_validate(json.loads(compose.configs(dotenv)["simulator-config"]["content"]))
    app = state.builder_app
    assert app.client_id == builder_env["SALESFORCE_CLIENT_ID"]
    assert app.client_secret == builder_env["SALESFORCE_CLIENT_SECRET"]
    assert builder_env["SALESFORCE_CALLBACK_URL"] in app.callback_urls
    assert state.orgs and any(user.active for org in state.orgs for user in org.users)
    login = urlsplit(builder_env["SALESFORCE_LOGIN_URL"])
    assert login.hostname in ("localhost", "127.0.0.1")
    assert login.port == int(sim.environment()["SIM_PORT"])


def test_the_service_containers_are_hardened(stack: dict[str, compose.Service]) -> None:
    for name in ("salesforce-sim", "builder", "manager"):
        spec = stack[name].spec
        assert spec["read_only"] is True and "/tmp" in spec["tmpfs"]
        assert spec["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in spec["security_opt"]
        assert "user" not in spec or spec["user"] not in ("root", "0"), "keep the image's non-root user"


def test_env_example_lists_exactly_the_variables_compose_reads() -> None:
    example = env_file_entries(compose.ENV_EXAMPLE)
    referenced = compose.referenced_variables(compose.COMPOSE_FILE.read_text())
    required = {name for name, op in referenced.items() if op not in (":-", "-")}
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    assert set(example) <= set(referenced), f"unused in compose: {sorted(set(example) - set(referenced))}"
    for name, op in referenced.items():
        if name not in example:
            continue
        if "KEY" in name or "SECRET" in name or "PASSWORD" in name:
            assert op == ":?", f"{name} must be required (${{{name}:?...}}), never silently empty"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    with pytest.raises(compose.MissingVariable, match=r"RABBITMQ_USER|MANAGER_ENCRYPTION_KEYS"):
        compose.services({})


def test_the_example_placeholders_are_invalid_keys_so_nothing_runs_on_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = env_file_entries(compose.ENV_EXAMPLE)
    for name in ("MANAGER_ENCRYPTION_KEYS", "BUILDER_ENCRYPTION_KEYS"):
        with pytest.raises(ConfigurationError):
            Keyring.parse(example[name])
    stack = compose.services(example)
    with pytest.raises(ValidationError):
        _settings(ManagerSettings, stack["manager"].environment(), monkeypatch)
    with pytest.raises(ValidationError):
        _settings(BuilderSettings, stack["builder"].environment(), monkeypatch)


def test_the_generator_fills_every_placeholder_and_keeps_an_existing_file(
    tmp_path: Path, dotenv: dict[str, str]
) -> None:
    assert set(dotenv) == set(env_file_entries(compose.ENV_EXAMPLE))
    assert not [name for name, value in dotenv.items() if "CHANGE_ME" in value]
    out = tmp_path / ".env"
    assert _generate(tmp_path, "--output", str(out)).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600, "the file holds secrets"
    first = out.read_text()
    again = _generate(tmp_path, "--output", str(out))
    assert again.returncode == 0 and "keeping it" in again.stdout
    assert out.read_text() == first, "regenerating keys would make stored data unreadable"
    assert _generate(tmp_path, "--output", str(out), "--force").returncode == 0
    assert out.read_text() != first


def test_the_local_env_file_is_never_committed() -> None:
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored
