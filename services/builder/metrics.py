"""Prometheus metrics of the Builder, on a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class Metrics:
    """Every metric the Builder exports."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter(
            "builder_http_requests", "HTTP requests served.", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "builder_http_request_seconds", "HTTP request duration.", ["route"], registry=r
        )
        self.commands = Counter(
            "builder_commands", "Commands handled, by outcome.", ["type", "outcome"], registry=r
        )
        self.command_seconds = Histogram(
            "builder_command_seconds", "Time spent handling one delivery of a command.", ["type"], registry=r
        )
        self.salesforce_calls = Counter(
            "builder_salesforce_calls",
            "Calls to Salesforce, by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self.salesforce_seconds = Histogram(
            "builder_salesforce_call_seconds", "Salesforce call duration.", ["operation"], registry=r
        )
        self.org_refreshes = Counter(
            "builder_org_token_refreshes", "Refreshes of an org's access token.", ["outcome"], registry=r
        )
        self.propagation_retries = Counter(
            "builder_propagation_retries", "JWT attempts deferred while a new app propagates.", registry=r
        )
        self.apps_created = Counter("builder_apps_created", "Apps created in orgs.", ["kind"], registry=r)
