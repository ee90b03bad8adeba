"""Every overlay renders, validates offline against Kubernetes schemas, and keeps secrets out of the repo."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import k8s_model as k8s
from tests.deploy.support import ROOT, pyproject

pytestmark = pytest.mark.unit

# The oldest Kubernetes minor we support and the newest whose schemas kubernetes-validate bundles (pinned,
# so the result does not change when the package adds a version).
K8S_VERSIONS = ("1.30", "1.37")


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_overlay_renders_with_kubectl_kustomize(overlay: str) -> None:
    out = k8s.rendered(overlay)
    kinds = {d["kind"] for d in out.docs}
    assert k8s.CORE_KINDS | {"RabbitmqCluster", "MongoDBCommunity"} <= kinds
    assert {d["metadata"]["name"] for d in out.of("Deployment")} == {"manager", "builder"}
    for doc in out.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == k8s.NAMESPACES[overlay], (
                f"{doc['kind']} outside the namespace"
            )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_core_resources_validate_offline_against_the_kubernetes_schemas(overlay: str, version: str) -> None:
    validated = set()
    for doc in k8s.rendered(overlay).docs:
        if doc["kind"] not in k8s.CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
        validated.add(doc["kind"])
    assert validated == k8s.CORE_KINDS


def test_the_offline_validator_really_rejects_a_misspelt_or_mistyped_field() -> None:
    deployment = k8s.rendered("prod").one("Deployment", "manager")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    for broken in (misspelt, mistyped):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_the_data_stores_are_operator_resources_of_the_expected_shape(overlay: str) -> None:
    out = k8s.rendered(overlay)
    rabbit = out.one("RabbitmqCluster", "rabbitmq")
    assert rabbit["apiVersion"] == "rabbitmq.com/v1beta1"
    assert re.fullmatch(r"rabbitmq:4(\.\d+)*-management", rabbit["spec"]["image"])
    mongo = out.one("MongoDBCommunity", "mongodb")
    assert mongo["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    assert mongo["spec"]["type"] == "ReplicaSet"
    assert mongo["spec"]["version"].startswith("8.")
    assert mongo["spec"]["security"]["authentication"]["modes"] == ["SCRAM"]
    for user in mongo["spec"]["users"]:
        assert set(user["passwordSecretRef"]) == {"name"}, "passwords only by reference"
        assert user["roles"] and user["scramCredentialsSecretName"] and user["connectionStringSecretName"]
    expected = 3 if overlay == "prod" else 1
    assert (rabbit["spec"]["replicas"], mongo["spec"]["members"]) == (expected, expected)
    # The base (what production inherits) is the 3-node cluster and the 3-member replica set.
    base = k8s.render_dir(k8s.K8S_DIR / "base")
    base_rabbit = next(d for d in base if d["kind"] == "RabbitmqCluster")
    base_mongo = next(d for d in base if d["kind"] == "MongoDBCommunity")
    assert (base_rabbit["spec"]["replicas"], base_mongo["spec"]["members"]) == (3, 3)


def _yaml_files() -> list[Path]:
    roots = [ROOT / "deploy", ROOT / "docker-compose.yml"]
    files: list[Path] = []
    for root in roots:
        files.extend([root] if root.is_file() else sorted(root.rglob("*.y*ml")))
    return files


def test_no_secret_object_and_no_secret_generator_is_in_the_repository() -> None:
    files = _yaml_files()
    assert any(f.name == "kustomization.yaml" for f in files)
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            assert doc.get("kind") != "Secret", f"{path} holds a Secret"
            assert "secretGenerator" not in doc, f"{path} generates a Secret from files in the repo"
    for overlay in k8s.OVERLAYS:
        assert not k8s.rendered(overlay).of("Secret")


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_secret_setting_comes_from_a_secret_reference(overlay: str) -> None:
    secret_settings = {
        "manager": {"AMQP_URL", "MONGODB_URL", "ENCRYPTION_KEYS", "RECIPIENT_PRIVATE_KEYS"},
        "builder": {
            "AMQP_URL",
            "MONGODB_URL",
            "ENCRYPTION_KEYS",
            "RECIPIENT_PUBLIC_KEYS",
            "ADMIN_API_KEY",
            "SALESFORCE_CLIENT_ID",
            "SALESFORCE_CLIENT_SECRET",
        },
    }
    out = k8s.rendered(overlay)
    for deployment, names in secret_settings.items():
        env = out.container_env(deployment)
        for name in names:
            ref = env[name].get("valueFrom", {}).get("secretKeyRef")
            assert ref and ref["name"] and ref["key"], f"{deployment}.{name} must be a secretKeyRef"
            assert not ref.get("optional"), f"{deployment}.{name}: a missing Secret must stop the pod"
    every_secret = set().union(*secret_settings.values())
    for cm in out.of("ConfigMap"):
        leaked = set(cm["data"]) & every_secret
        assert not leaked, f"{cm['metadata']['name']} holds {leaked}"


def test_the_prod_image_is_pinned_to_the_project_version_and_dev_uses_a_local_build() -> None:
    version = pyproject()["project"]["version"]
    for overlay, pattern in (
        ("prod", rf"[a-z0-9.-]+/[a-z0-9/_-]+:{re.escape(version)}"),
        ("dev", r"sfconnect:dev"),
    ):
        for deployment in k8s.rendered(overlay).of("Deployment"):
            for container in k8s.pod_spec(deployment)["containers"]:
                assert re.fullmatch(pattern, container["image"]), f"{overlay}: {container['image']}"
                assert not container["image"].endswith(":latest")
