"""Scenarios 2 and 4: the create-connection pipeline against its ideal, with one and with two Builders.

Ideal = ceil(n / (prefetch x builders)) x calls per create x simulator latency: what the configured
concurrency allows if nothing but Salesforce took time. Calls per create are counted during the run from
the simulator's own counters (REST/SOAP API requests + JWT bearer grants), cross-checked against the
Builder's ``builder_salesforce_calls`` metric.

Every batch runs on a stack of its own (a new SecantusDB, simulator, Builders and Manager), so that neither
batch pays for the documents and the server-side bookkeeping another batch or scenario left behind: the
two-Builder batch once ran after the one-Builder batch on the same database and was slower per create
for it (docs/PERFORMANCE.md, 2026-12-04).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from bench import creation
from bench.config import Config
from bench.harness import BenchError, BenchStack
from bench.sampler import Sampler
from bench.stats import ratio

PREFETCH = 8  # the Builder's COMMAND_PREFETCH default; the harness does not override it
WARMUP_SHARE = 0.1  # the first 10 % of activations are the Builder's warm-up


def _calls(before: dict[str, Any], after: dict[str, Any]) -> int:
    api = after["api_requests"] - before["api_requests"]
    issued = after["issued"].get("jwt_bearer", 0) - before["issued"].get("jwt_bearer", 0)
    return int(api + issued)


def _builder_calls(before: dict[str, float], after: dict[str, float]) -> float:
    key = "builder_salesforce_calls_total"
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(key))


def run_batch(bench: BenchStack, cfg: Config, label: str) -> dict[str, Any]:
    """Create ``cfg.creates`` connections with the simulator's latency on; measure against the ideal."""
    n, latency = cfg.creates, cfg.sim_latency_ms
    builders = list(bench.builders)
    bench.reset_simulator()  # every batch starts from the same (empty) org
    asyncio.run(bench.set_latency(latency))
    sim0 = asyncio.run(bench.sim_counts())
    metrics0 = {b: asyncio.run(bench.metrics(b)) for b in builders}
    pids = {b: bench.pid(b) for b in builders}
    pids.update(
        manager=bench.pid("manager"), simulator=bench.pid("simulator"), database=bench.pid("secantusdb")
    )
    try:
        with Sampler(pids, interval=0.5) as sampler:
            posted = creation.create(bench, n, name_prefix=label)
            batch = asyncio.run(creation.wait_for(bench, posted, deadline_s=cfg.create_deadline_s))
            time.sleep(1.0)  # one more RSS sample after the last activation
    finally:
        asyncio.run(bench.set_latency(0))
    print(
        f"  {label}: {batch.active}/{n} active with {len(builders)} Builder(s) in {batch.completion_s}s "
        f"({batch.failed} failed, {batch.pending} pending)",
        flush=True,
    )
    sim1 = asyncio.run(bench.sim_counts())
    metrics1 = {b: asyncio.run(bench.metrics(b)) for b in builders}
    if batch.active == 0:
        raise BenchError(f"{label}: no connection became active ({batch.failed} failed: {batch.errors})")
    calls_sim = _calls(sim0, sim1)
    calls_builder = sum(_builder_calls(metrics0[b], metrics1[b]) for b in builders)
    per_create = calls_sim / batch.active
    concurrency = PREFETCH * len(builders)
    ideal = math.ceil(n / concurrency) * round(per_create) * latency / 1000.0
    measured = batch.completion_s
    warm_at = batch.time_when(max(1, int(n * WARMUP_SHARE)))
    rss: dict[str, Any] = {}
    for b in builders:
        series = sampler.series[b]
        warm = series.max_rss_mb_between(series.rss[0][0], warm_at) if warm_at else None
        after = series.rss_mb_at_or_before(time.time())
        rss[b] = {"warmup_mb": warm, "after_mb": after, "after_over_warmup": ratio(after, warm)}
    return {
        "builders": len(builders),
        "prefetch_per_builder": PREFETCH,
        "concurrency": concurrency,
        "connections": n,
        "active": batch.active,
        "failed": batch.failed,
        "pending_at_deadline": batch.pending,
        "errors": batch.errors,
        "sim_latency_ms": latency,
        "salesforce_calls_per_create": round(per_create, 2),
        "salesforce_calls_counted": {"simulator": calls_sim, "builder_metrics": int(calls_builder)},
        "ideal_s": round(ideal, 3),
        "measured_s": measured,
        "ideal_ratio": ratio(ideal, measured),
        "posting_s": round(batch.last_post_done_at - batch.first_post_at, 3),
        "post_latency": batch.post,
        "builder_rss": rss,
        "processes": sampler.summary(),
        "window_s": round(sampler.elapsed, 2),
    }


def fresh_batch(bench: BenchStack, cfg: Config, label: str, builders: int) -> dict[str, Any]:
    """``run_batch`` on a new stack with ``builders`` Builder processes, closed afterwards."""
    fresh = bench.sibling(label)
    failed = True
    try:
        fresh.start(max_builders=builders)
        while len(fresh.builders) < builders:
            fresh.add_builder()
        result = run_batch(fresh, cfg, label)
        failed = False
        return result
    finally:
        fresh.close(keep_logs=failed)


def create_pipeline(bench: BenchStack, cfg: Config, ctx: dict[str, Any]) -> dict[str, Any]:
    """Scenario 2: one Builder, ``cfg.creates`` connections, ideal ÷ measured and the Builder's RSS."""
    result = fresh_batch(bench, cfg, "pipe", builders=1)
    ctx["one_builder"] = result
    rss = result["builder_rss"]["builder"]
    return {
        **result,
        "builder_rss_ratio": rss["after_over_warmup"],
        "targets": {"ideal_ratio": ">= 0.8", "builder_rss_ratio": "< 1.5"},
        "met": {
            "ideal_ratio": (result["ideal_ratio"] or 0) >= 0.8,
            "builder_rss_ratio": rss["after_over_warmup"] is not None and rss["after_over_warmup"] < 1.5,
        },
    }


def builder_scaling(bench: BenchStack, cfg: Config, ctx: dict[str, Any]) -> dict[str, Any]:
    """Scenario 4: the same batch with one and with two Builder processes; speedup of completion time."""
    one = ctx.get("one_builder") or fresh_batch(bench, cfg, "one", builders=1)
    two = fresh_batch(bench, cfg, "two", builders=2)
    speedup = ratio(one["measured_s"], two["measured_s"])
    return {
        "one_builder": _brief(one),
        "two_builders": _brief(two),
        "speedup": speedup,
        "ideal_speedup": ratio(one["ideal_s"], two["ideal_s"]),
        "two_builders_detail": two,
        "targets": {"speedup": ">= 1.6"},
        "met": {"speedup": (speedup or 0) >= 1.6},
    }


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "builders",
        "concurrency",
        "connections",
        "active",
        "failed",
        "ideal_s",
        "measured_s",
        "ideal_ratio",
    )
    return {k: result[k] for k in keys}
