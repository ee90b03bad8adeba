"""Prometheus metrics, on a registry of the app's own (several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_PREFIX = "sfconnect_manager"


class Metrics:
    """Every metric the Manager exposes on ``/metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            f"{_PREFIX}_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            f"{_PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            registry=r,
        )
        self.commands_published = Counter(
            f"{_PREFIX}_commands_published",
            "Commands published to the Builder.",
            ["type", "outcome"],
            registry=r,
        )
        self.replies = Counter(
            f"{_PREFIX}_replies", "Replies from the Builder processed.", ["type", "outcome"], registry=r
        )
        self.refreshes = Counter(
            f"{_PREFIX}_token_refreshes",
            "Token refreshes: sent (this replica asked the Builder), coalesced (served by another "
            "refresh), failed.",
            ["outcome"],
            registry=r,
        )
        self.token_reads = Counter(f"{_PREFIX}_token_reads", "Tokens served.", ["refreshed"], registry=r)
        self.sweeps = Counter(
            f"{_PREFIX}_sweeper_republished", "Commands re-published by the sweeper.", registry=r
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
