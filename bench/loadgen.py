"""The load generator, run as its own process so it never shares an event loop with a service.

``python -m bench.loadgen http ...``   closed-loop HTTP GETs (fixed duration or a fixed count)
``python -m bench.loadgen create ...`` POST /v1/connections n times
``python -m bench.loadgen rpc ...``    sequential AMQP request/reply round trips against bench.rpc_echo
Each prints one JSON document on stdout (latencies in ms, counts, its own CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.stats import latency_summary


def _headers(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition(":")
        out[name.strip()] = value.strip()
    return out


async def http_load(args: argparse.Namespace) -> dict[str, Any]:
    """``concurrency`` workers each looping GETs over the ids until the duration or the count is spent."""
    ids = [line.strip() for line in args.ids_text.splitlines() if line.strip()]
    if not ids:
        raise SystemExit("no ids to request")
    headers = _headers(args.header)
    next_id = itertools.cycle(ids)
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    budget = {"left": args.max_requests if args.max_requests else None}

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:

        async def one(record: bool) -> None:
            url = args.base + args.path.format(id=next(next_id)) + (f"?{args.query}" if args.query else "")
            started = time.perf_counter()
            try:
                async with http.get(url) as resp:
                    await resp.read()
                    status = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            if record:
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                if record and budget["left"] is not None:
                    if budget["left"] <= 0:
                        return
                    budget["left"] -= 1
                await one(record)

        if args.warmup > 0:
            end = time.perf_counter() + args.warmup
            await asyncio.gather(*(worker(end, False) for _ in range(args.concurrency)))
        cpu0 = time.process_time()
        started = time.perf_counter()
        end = started + (args.duration if args.duration else 3600.0)
        await asyncio.gather(*(worker(end, True) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    return {
        "concurrency": args.concurrency,
        "duration_s": round(elapsed, 3),
        "requests": len(latencies),
        "ok": ok,
        "errors": len(latencies) - ok,
        "statuses": dict(statuses),
        "rps": round(ok / elapsed, 1) if elapsed > 0 else None,
        **latency_summary(latencies),
        "loadgen_cpu_seconds": round(time.process_time() - cpu0, 2),
    }


async def create_load(args: argparse.Namespace) -> dict[str, Any]:
    """POST ``n`` connections (``concurrency`` at a time); returns their ids and when the first POST left."""
    headers = {"Authorization": f"Bearer {args.api_key}"}
    ids: list[str] = []
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    sem = asyncio.Semaphore(args.concurrency)
    run = uuid.uuid4().hex[:6]

    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=args.request_timeout)
    ) as http:

        async def post(i: int) -> None:
            body = {
                "name": f"{args.name_prefix}-{run}-{i:05d}",
                "admin_email": "it-admin@acme.example",
                "salesforce_username": args.username,
                "org_id": args.org_id,
                "label": f"bench {i}",
            }
            async with sem:
                started = time.perf_counter()
                try:
                    async with http.post(f"{args.base}/v1/connections", json=body) as resp:
                        data = await resp.json(content_type=None)
                        if resp.status == 202:
                            ids.append(data["id"])
                        else:
                            failures[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - started)

        t0 = time.time()
        await asyncio.gather(*(post(i) for i in range(args.n)))
        t1 = time.time()
    return {
        "first_post_at": t0,
        "last_post_done_at": t1,
        "ids": ids,
        "failures": dict(failures),
        "post": latency_summary(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    http = sub.add_parser("http", help="closed-loop GETs")
    http.add_argument("--base", required=True)
    http.add_argument("--path", required=True, help="path template with {id}")
    http.add_argument("--ids-file", required=True)
    http.add_argument("--query", default="")
    http.add_argument("--header", action="append", default=[])
    http.add_argument("--concurrency", type=int, default=32)
    http.add_argument("--duration", type=float, default=0.0, help="seconds (0: until --max-requests)")
    http.add_argument("--max-requests", type=int, default=0)
    http.add_argument("--warmup", type=float, default=1.0)
    http.add_argument("--request-timeout", type=float, default=30.0)
    create = sub.add_parser("create", help="POST connections")
    create.add_argument("--base", required=True)
    create.add_argument("--api-key", required=True)
    create.add_argument("--org-id", required=True)
    create.add_argument("--username", required=True)
    create.add_argument("--n", type=int, required=True)
    create.add_argument("--concurrency", type=int, default=16)
    create.add_argument("--name-prefix", default="bench")
    create.add_argument("--request-timeout", type=float, default=60.0)
    rpc = sub.add_parser("rpc", help="AMQP request/reply round trips (see bench.rpc_echo)")
    from bench.rpc_echo import add_client_arguments

    add_client_arguments(rpc)
    args = parser.parse_args(argv)
    if args.mode == "http":
        args.ids_text = Path(args.ids_file).read_text()
        result = asyncio.run(http_load(args))
    elif args.mode == "create":
        result = asyncio.run(create_load(args))
    else:
        from bench.rpc_echo import client

        result = asyncio.run(client(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
