"""What a run measures and for how long: the full run (``make bench``) and the quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass, replace

# token_read and refresh_rpc run first, on connections seeded at latency 0 while the simulated org is small;
# each create batch then runs on a stack of its own (new database, simulator and services), so one and two
# Builders face the same empty org and database.
SCENARIOS = ("token_read", "refresh_rpc", "create_pipeline", "builder_scaling")


@dataclass(frozen=True)
class Config:
    """Sizes and durations of every scenario (all scaled down by ``--quick``)."""

    mode: str = "full"
    creates: int = 500  # connections per create-pipeline batch
    sim_latency_ms: int = 200  # added by the simulator to each Salesforce call in the create scenarios
    create_deadline_s: float = 900.0
    read_concurrency: int = 32
    read_seconds: float = 15.0  # per measured round, ours and baseline each
    read_rounds: int = 2  # alternating ours/baseline to even out drift on a shared machine
    read_warmup_s: float = 2.0
    min_read_connections: int = 200  # seeded through the real flow (latency 0) when fewer are active
    refresh_samples: int = 200  # per round, ours and baseline each
    refresh_rounds: int = 2
    refresh_warmup: int = 20
    seed_connections: int = 100  # for refresh_rpc alone

    def scaled(self, *, duration_scale: float = 1.0, creates: int | None = None) -> Config:
        return replace(
            self,
            creates=creates or self.creates,
            read_seconds=self.read_seconds * duration_scale,
            refresh_samples=max(10, int(self.refresh_samples * duration_scale)),
        )


FULL = Config()
QUICK = Config(
    mode="quick",
    creates=32,
    read_seconds=3.0,
    read_rounds=1,
    read_warmup_s=1.0,
    min_read_connections=20,
    refresh_samples=30,
    refresh_rounds=1,
    refresh_warmup=5,
    seed_connections=12,
)
