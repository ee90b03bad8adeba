"""NetworkPolicies: deny by default, then exactly the flows the services need."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.deploy import k8s_model as k8s

pytestmark = pytest.mark.unit

# Labels the operators put on the data-store pods (RabbitMQ Cluster Operator, MongoDB Community Operator).
RABBITMQ_POD = {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/component": "rabbitmq"}
MONGODB_POD = {"app": "mongodb-svc"}


def _policies_for(out: k8s.Rendered, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [p for p in out.of("NetworkPolicy") if k8s.selects(p["spec"]["podSelector"], labels)]


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


def _egress_to(policies: list[dict[str, Any]], labels: dict[str, str]) -> set[tuple[str, int]]:
    """Ports the selected pods may reach on pods carrying ``labels`` (same namespace)."""
    ports: set[tuple[str, int]] = set()
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            peers = rule.get("to", [])
            if any(
                "podSelector" in p and "namespaceSelector" not in p and k8s.selects(p["podSelector"], labels)
                for p in peers
            ):
                ports |= _ports(rule)
    return ports


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_everything_is_denied_unless_a_policy_allows_it(overlay: str) -> None:
    deny = k8s.rendered(overlay).one("NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_pod_may_resolve_names_through_cluster_dns_only(overlay: str) -> None:
    out = k8s.rendered(overlay)
    dns = out.one("NetworkPolicy", "allow-dns")
    assert dns["spec"]["podSelector"] == {} and dns["spec"]["policyTypes"] == ["Egress"]
    (rule,) = dns["spec"]["egress"]
    assert _ports(rule) == {("UDP", 53), ("TCP", 53)}
    (peer,) = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_the_services_accept_only_their_http_port_and_reach_only_the_broker_and_the_database(
    overlay: str,
) -> None:
    out = k8s.rendered(overlay)
    for name, http_port in (("manager", 8080), ("builder", 8081)):
        policies = _policies_for(out, k8s.pod_labels(out.one("Deployment", name)))
        ingress = [r for p in policies for r in p["spec"].get("ingress", [])]
        assert {port for r in ingress for port in _ports(r)} == {("TCP", http_port)}
        assert _egress_to(policies, RABBITMQ_POD) == {("TCP", 5672)}
        assert _egress_to(policies, MONGODB_POD) == {("TCP", 27017)}
        external = [
            r
            for p in policies
            for r in p["spec"].get("egress", [])
            if any("ipBlock" in peer for peer in r.get("to", []))
        ]
        if name == "manager":
            assert not external, "the Manager never calls out of the cluster"
        else:
            (rule,) = external
            assert _ports(rule) == {("TCP", 443)}, "the Builder reaches Salesforce over https only"
            (peer,) = rule["to"]
            excluded = [ipaddress.ip_network(c) for c in peer["ipBlock"]["except"]]
            for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
                assert ipaddress.ip_network(private) in excluded, f"the cluster's {private} stays closed"


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_the_data_stores_accept_clients_only_from_the_services(overlay: str) -> None:
    out = k8s.rendered(overlay)
    service_pods = [k8s.pod_labels(out.one("Deployment", n)) for n in ("manager", "builder")]
    stranger = {"app.kubernetes.io/name": "somebody-else"}
    for store, labels, port in (("rabbitmq", RABBITMQ_POD, 5672), ("mongodb", MONGODB_POD, 27017)):
        policies = _policies_for(out, labels)
        assert policies, f"no policy selects the {store} pods"
        client_rules = [
            r for p in policies for r in p["spec"].get("ingress", []) if ("TCP", port) in _ports(r)
        ]
        assert client_rules
        for rule in client_rules:
            peers = rule["from"]
            assert all("podSelector" in peer and "namespaceSelector" not in peer for peer in peers)
            for pod in service_pods:
                assert any(k8s.selects(peer["podSelector"], pod) for peer in peers)
            assert not any(k8s.selects(peer["podSelector"], stranger) for peer in peers)
