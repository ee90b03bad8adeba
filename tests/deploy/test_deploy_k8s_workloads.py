"""The Deployments: hardened pods, probes and limits, settings wiring, scaling objects, overlays' sizes."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from builder.settings import BuilderSettings
from manager.settings import ManagerSettings
from salesforce_sim.settings import SimSettings

from shared.crypto import generate_key
from shared.sealing import generate_recipient_key
from shared.settings import ServiceSettings
from tests.deploy import k8s_model as k8s
from tests.deploy.support import upper

pytestmark = pytest.mark.unit

SETTINGS = {"manager": upper(ManagerSettings.model_fields), "builder": upper(BuilderSettings.model_fields)}
SIMULATOR_SETTINGS = upper(SimSettings.model_fields)
MODULES = {"manager": "manager", "builder": "builder", "salesforce-sim": "salesforce_sim"}


def _containers(out: k8s.Rendered) -> list[tuple[dict, dict]]:
    return [(d, c) for d in out.of("Deployment") for c in k8s.pod_spec(d)["containers"]]


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_pod_runs_non_root_with_a_read_only_root_and_no_privileges(overlay: str) -> None:
    out = k8s.rendered(overlay)
    accounts = {sa["metadata"]["name"]: sa for sa in out.of("ServiceAccount")}
    for deployment in out.of("Deployment"):
        spec = k8s.pod_spec(deployment)
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0 and pod_sc["runAsGroup"] > 0
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False
        tmp = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert not sc.get("privileged") and sc.get("runAsUser", 1) != 0
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in tmp[mounts["/tmp"]], f"{container['name']}: /tmp is a writable emptyDir"


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_container_has_probes_and_resource_requests_and_limits(overlay: str) -> None:
    for _, container in _containers(k8s.rendered(overlay)):
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{container['name']} {kind}"
        for resource in ("cpu", "memory"):
            request = k8s.quantity(container["resources"]["requests"][resource])
            assert request <= k8s.quantity(container["resources"]["limits"][resource])
        assert container["livenessProbe"]["httpGet"] and container["readinessProbe"]["httpGet"]
        if container["name"] in SETTINGS:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_each_container_runs_its_service_module(overlay: str) -> None:
    for _, container in _containers(k8s.rendered(overlay)):
        assert container["command"] == ["python", "-m", MODULES[container["name"]]]


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_variable_a_container_receives_is_one_of_its_settings(overlay: str) -> None:
    out = k8s.rendered(overlay)
    for name, fields in SETTINGS.items():
        unknown = set(out.container_env(name)) - fields
        assert not unknown, f"{overlay}/{name} receives variables it has no setting for: {sorted(unknown)}"
    if overlay == "dev":
        assert set(out.container_env("builder", "salesforce-sim")) <= SIMULATOR_SETTINGS


def _secret_values() -> dict[str, str]:
    """Well-formed stand-ins for what the Secrets hold (the manifests only reference them)."""
    private, public = generate_recipient_key("m1")
    return {
        "AMQP_URL": "amqp://sfconnect:pw@rabbitmq.sfconnect.svc:5672/?reconnect_interval=1",
        "MONGODB_URL": "mongodb://u:pw@mongodb-0.mongodb-svc.sfconnect.svc.cluster.local:27017/admin?replicaSet=mongodb",
        "ENCRYPTION_KEYS": f"k1:{generate_key()}",
        "RECIPIENT_PRIVATE_KEYS": private,
        "RECIPIENT_PUBLIC_KEYS": public,
        "ADMIN_API_KEY": "a" * 32,
        "SALESFORCE_CLIENT_ID": "3MVG9ClientId",
        "SALESFORCE_CLIENT_SECRET": "s" * 32,
    }


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_the_settings_classes_accept_what_each_container_is_given(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = k8s.rendered(overlay)
    secrets = _secret_values()
    classes: dict[tuple[str, str], type[ServiceSettings]] = {
        ("manager", "manager"): ManagerSettings,
        ("builder", "builder"): BuilderSettings,
    }
    if overlay == "dev":
        classes[("builder", "salesforce-sim")] = SimSettings
    for (deployment, container), cls in classes.items():
        for name in list(os.environ):
            if name.lower() in cls.model_fields:
                monkeypatch.delenv(name)
        for name, entry in out.container_env(deployment, container).items():
            if "value" in entry:
                value = entry["value"]
            elif "secretKeyRef" in entry.get("valueFrom", {}):
                value = secrets[name]
            else:
                assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                value = f"{deployment}-7d9f8b6c5-x2x4z"
            monkeypatch.setenv(name, str(value))
        settings = cls()  # type: ignore[call-arg]  # values come from the environment
        assert settings.service_name in (deployment, "salesforce-sim")


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_ports_agree_between_settings_containers_probes_and_services(overlay: str) -> None:
    out = k8s.rendered(overlay)
    for name, expected in (("manager", 8080), ("builder", 8081)):
        port = int(out.container_env(name)["HTTP_PORT"]["value"])
        assert port == expected
        container = out.container(name)
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert named["http"] == port
        assert {container[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe")} == {"http"}
        service = out.one("Service", name)
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]
        assert k8s.selects(
            {"matchLabels": service["spec"]["selector"]}, k8s.pod_labels(out.one("Deployment", name))
        )


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_the_mongodb_users_own_exactly_the_databases_the_services_use(overlay: str) -> None:
    out = k8s.rendered(overlay)
    users = {
        u["connectionStringSecretName"]: u for u in out.one("MongoDBCommunity", "mongodb")["spec"]["users"]
    }
    for name in SETTINGS:
        env = out.container_env(name)
        ref = env["MONGODB_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "connectionString.standard", "the key the operator writes"
        user = users[ref["name"]]
        assert user["roles"] == [{"name": "readWrite", "db": env["MONGODB_DATABASE"]["value"]}]


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_autoscalers_and_disruption_budgets_cover_each_deployment(overlay: str) -> None:
    out = k8s.rendered(overlay)
    for deployment in out.of("Deployment"):
        name = deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"
        hpa = out.one("HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        pdb = out.one("PodDisruptionBudget", name)
        assert pdb["spec"]["maxUnavailable"] == 1, "never blocks a drain, whatever the replica count"
        assert k8s.selects(pdb["spec"]["selector"], k8s.pod_labels(deployment))
        assert k8s.selects(deployment["spec"]["selector"], k8s.pod_labels(deployment))


def test_prod_runs_more_replicas_with_bigger_resources_than_dev() -> None:
    dev, prod = k8s.rendered("dev"), k8s.rendered("prod")
    for name in SETTINGS:
        dev_hpa, prod_hpa = (
            dev.one("HorizontalPodAutoscaler", name),
            prod.one("HorizontalPodAutoscaler", name),
        )
        assert dev_hpa["spec"]["minReplicas"] == 1
        assert (
            prod_hpa["spec"]["minReplicas"] >= 3
            and prod_hpa["spec"]["maxReplicas"] > dev_hpa["spec"]["maxReplicas"]
        )
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                small = k8s.quantity(dev.container(name)["resources"][kind][resource])
                big = k8s.quantity(prod.container(name)["resources"][kind][resource])
                assert big > small, f"{name} {kind}.{resource}: prod {big} <= dev {small}"
    # The simulator in the Builder's pod holds its orgs in memory: dev keeps exactly one Builder.
    assert dev.one("HorizontalPodAutoscaler", "builder")["spec"]["maxReplicas"] == 1


def test_the_simulator_runs_only_in_dev_beside_the_builder_on_loopback() -> None:
    prod_containers = [c["name"] for _, c in _containers(k8s.rendered("prod"))]
    assert "salesforce-sim" not in prod_containers
    prod_login = k8s.rendered("prod").container_env("builder")["SALESFORCE_LOGIN_URL"]["value"]
    assert urlsplit(prod_login).scheme == "https"
    dev = k8s.rendered("dev")
    sim_env = dev.container_env("builder", "salesforce-sim")
    builder_env = dev.container_env("builder")
    login = urlsplit(builder_env["SALESFORCE_LOGIN_URL"]["value"])
    assert login.hostname in ("localhost", "127.0.0.1") and login.port == int(sim_env["SIM_PORT"]["value"])
    callback = urlsplit(builder_env["SALESFORCE_CALLBACK_URL"]["value"])
    assert callback.hostname == "localhost" and callback.port == int(builder_env["HTTP_PORT"]["value"])
    sim = dev.container("builder", "salesforce-sim")
    assert {p["containerPort"] for p in sim["ports"]} == {int(sim_env["SIM_PORT"]["value"])}
