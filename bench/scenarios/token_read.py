"""Scenario 1: GET /v1/connections/{id}/token at fixed concurrency against a bare find-by-id handler.

Both servers are separate processes reading the same documents from the same database; the load
generator is a third process. Rounds alternate which server goes first so that drift on a shared
machine (other work, the database's cache) falls on both alike.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any

from bench import creation
from bench.config import Config
from bench.harness import BenchStack, free_port
from bench.sampler import Sampler
from bench.stats import ratio

PATH = "/v1/connections/{id}/token"


def _mean(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return round(statistics.fmean(values), 3) if values else None


def _aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": _mean(rounds, "rps"),
        "p50_ms": _mean(rounds, "p50_ms"),
        "p99_ms": _mean(rounds, "p99_ms"),
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "rounds": rounds,
    }


def _active_ids(bench: BenchStack, cfg: Config, ctx: dict[str, Any]) -> tuple[list[str], str]:
    ids = asyncio.run(creation.all_active_ids(bench))
    if len(ids) >= cfg.min_read_connections:
        return ids, "created through the real flow by the create scenarios of this run"
    ids += creation.seed(bench, cfg.min_read_connections - len(ids))
    return ids, "created through the real flow (POST /v1/connections, Builder, simulator, reply), latency 0"


def token_read(bench: BenchStack, cfg: Config, ctx: dict[str, Any]) -> dict[str, Any]:
    ids, seeded_by = _active_ids(bench, cfg, ctx)
    ids_file = bench.ids_file(ids, "token_read")
    port = free_port()
    bench.launch(
        "baseline_http",
        [
            sys.executable,
            "-m",
            "bench.baseline_http",
            "--port",
            str(port),
            "--mongodb-url",
            str(bench.stack.mongodb_url),
        ],
        ready_url=f"http://127.0.0.1:{port}/readyz",
        port=port,
    )
    targets = {
        "ours": (bench.url("manager"), ["--header", f"Authorization: Bearer {bench.api_key}"]),
        "baseline": (f"http://127.0.0.1:{port}", []),
    }
    rounds: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    processes: dict[str, Any] = {}
    try:
        for r in range(cfg.read_rounds):
            order = ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours")
            for who in order:
                url, extra = targets[who]
                server = "manager" if who == "ours" else "baseline_http"
                pids = {"server": bench.pid(server), "database": bench.pid("secantusdb")}
                with Sampler(pids, interval=0.25) as sampler:
                    result = bench.loadgen(
                        "http", "--base", url, "--path", PATH, "--ids-file", str(ids_file),
                        "--concurrency", str(cfg.read_concurrency), "--duration", str(cfg.read_seconds),
                        "--warmup", str(cfg.read_warmup_s), *extra,
                    )  # fmt: skip
                result["processes"] = sampler.summary()
                print(f"  round {r + 1} {who}: {result['rps']} req/s, p99 {result['p99_ms']} ms", flush=True)
                rounds[who].append(result)
                processes.setdefault(who, []).append(result["processes"])
    finally:
        bench.stop_proc("baseline_http")
    ours, base = _aggregate(rounds["ours"]), _aggregate(rounds["baseline"])
    rss = [p["server"] for p in processes["ours"]]
    throughput_ratio = ratio(ours["rps"], base["rps"])
    p99_ratio = ratio(ours["p99_ms"], base["p99_ms"])
    return {
        "concurrency": cfg.read_concurrency,
        "seconds_per_round": cfg.read_seconds,
        "rounds": cfg.read_rounds,
        "connections": len(ids),
        "seeded_by": seeded_by,
        "ours": ours,
        "baseline": base,
        "manager_rss_mb": {
            "start": rss[0]["rss_start_mb"],
            "max": max(p["rss_max_mb"] for p in rss),
            "end": rss[-1]["rss_end_mb"],
        },
        "throughput_ratio": throughput_ratio,
        "p50_ratio": ratio(ours["p50_ms"], base["p50_ms"]),
        "p99_ratio": p99_ratio,
        "targets": {"throughput_ratio": ">= 0.85", "p99_ratio": "<= 2.0"},
        "met": {
            "throughput_ratio": (throughput_ratio or 0) >= 0.85,
            "p99_ratio": p99_ratio is not None and p99_ratio <= 2.0,
        },
    }
