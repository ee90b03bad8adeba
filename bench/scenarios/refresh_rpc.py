"""Scenario 3: ``?force_refresh=true`` (Manager → broker → Builder → simulator → broker → Manager), one at a
time, against a bare aio-pika request/reply echo over the same broker.

The primary baseline uses the delivery guarantees the product uses (persistent, confirmed, mandatory,
quorum request queue); the minimal one (transient, unconfirmed, classic) is reported beside it. The same
run also times a plain token read one at a time, and reads the Builder's own timings of the refresh
command and of its JWT call to the simulator, so that the round trip can be taken apart.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

from bench import creation
from bench.config import Config
from bench.harness import BenchStack, free_port
from bench.stats import ratio

PATH = "/v1/connections/{id}/token"
REFRESH_TYPE = "connection.refresh_token.v1"


def _mean(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return round(statistics.fmean(values), 3) if values else None


def _agg(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "p50_ms": _mean(rounds, "p50_ms"),
        "p90_ms": _mean(rounds, "p90_ms"),
        "p99_ms": _mean(rounds, "p99_ms"),
        "samples": sum(r["samples"] for r in rounds),
        "errors": sum(r.get("errors", 0) for r in rounds),
        "rounds": rounds,
    }


def _delta_mean_ms(before: dict[str, float], after: dict[str, float], name: str, label: str) -> float | None:
    total = after.get(f"{name}_sum{{{label}}}", 0.0) - before.get(f"{name}_sum{{{label}}}", 0.0)
    count = after.get(f"{name}_count{{{label}}}", 0.0) - before.get(f"{name}_count{{{label}}}", 0.0)
    return round(total / count * 1000.0, 3) if count else None


def refresh_rpc(bench: BenchStack, cfg: Config, ctx: dict[str, Any]) -> dict[str, Any]:
    asyncio.run(bench.set_latency(0))
    ids = asyncio.run(creation.all_active_ids(bench))
    if len(ids) < cfg.seed_connections:
        ids += creation.seed(bench, cfg.seed_connections - len(ids))
    ids_file = bench.ids_file(ids, "refresh")
    auth = ["--header", f"Authorization: Bearer {bench.api_key}"]

    def ours(query: str, samples: int) -> dict[str, Any]:
        return bench.loadgen(
            "http", "--base", bench.url("manager"), "--path", PATH, "--ids-file", str(ids_file),
            "--query", query, "--concurrency", "1", "--max-requests", str(samples), "--warmup", "1", *auth,
        )  # fmt: skip

    port = free_port()
    queue = f"{bench.stack.amqp_prefix}bench.echo"
    amqp = bench.stack.amqp_url
    bench.launch(
        "rpc_echo",
        [sys.executable, "-m", "bench.rpc_echo", "--amqp-url", amqp, "--queue", queue, "--port", str(port)],
        ready_url=f"http://127.0.0.1:{port}/readyz",
        port=port,
    )

    def echo(guarantees: str) -> dict[str, Any]:
        return bench.loadgen(
            "rpc", "--amqp-url", amqp, "--queue", queue, "--guarantees", guarantees,
            "--samples", str(cfg.refresh_samples), "--warmup", str(cfg.refresh_warmup),
        )  # fmt: skip

    rounds: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": [], "minimal": [], "read": []}
    builders = list(bench.builders)
    before = {b: asyncio.run(bench.metrics(b)) for b in builders}
    try:
        for r in range(cfg.refresh_rounds):
            steps = ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")
            for who in steps:
                if who == "ours":
                    rounds["ours"].append(ours("force_refresh=true", cfg.refresh_samples))
                else:
                    rounds["baseline"].append(echo("product"))
                print(f"  round {r + 1} {who}: p50 {rounds[who][-1]['p50_ms']} ms", flush=True)
            rounds["minimal"].append(echo("minimal"))
            rounds["read"].append(ours("", cfg.refresh_samples))
    finally:
        bench.stop_proc("rpc_echo")
    after = {b: asyncio.run(bench.metrics(b)) for b in builders}
    ours_agg, base_agg = _agg(rounds["ours"]), _agg(rounds["baseline"])
    minimal_agg, read_agg = _agg(rounds["minimal"]), _agg(rounds["read"])
    handled = [
        _delta_mean_ms(before[b], after[b], "builder_command_seconds", f'type="{REFRESH_TYPE}"')
        for b in builders
    ]
    jwt = [
        _delta_mean_ms(before[b], after[b], "builder_salesforce_call_seconds", 'operation="jwt_bearer"')
        for b in builders
    ]
    p50_ratio = ratio(ours_agg["p50_ms"], base_agg["p50_ms"])
    return {
        "connections": len(ids),
        "concurrency": 1,
        "ours": ours_agg,
        "baseline": {**base_agg, "what": "bare aio-pika echo, persistent + confirms + quorum request queue"},
        "baseline_minimal": {
            **minimal_agg,
            "what": "bare aio-pika echo, transient, no confirms, classic queue",
        },
        "plain_read": {**read_agg, "what": "GET .../token without force_refresh, one at a time"},
        "builder_breakdown": {
            "refresh_command_mean_ms": [h for h in handled if h is not None],
            "jwt_call_mean_ms": [j for j in jwt if j is not None],
        },
        "broker_version": (rounds["baseline"][0].get("broker_version") if rounds["baseline"] else None),
        "p50_ratio": p50_ratio,
        "p99_ratio": ratio(ours_agg["p99_ms"], base_agg["p99_ms"]),
        "p50_ratio_vs_minimal": ratio(ours_agg["p50_ms"], minimal_agg["p50_ms"]),
        "targets": {"p50_ratio": "<= 1.5"},
        "met": {"p50_ratio": p50_ratio is not None and p50_ratio <= 1.5},
    }
