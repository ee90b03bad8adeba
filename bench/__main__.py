"""``python -m bench [--quick] [--only SCENARIO ...] [--out DIR]``: run the benchmarks, write the results.

Writes ``<out>/latest.json`` (every figure with its baseline) and ``<out>/latest.md`` (a summary). A
scenario that fails is recorded under ``errors`` and the others still run; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.config import FULL, QUICK, SCENARIOS, Config
from bench.harness import BenchStack
from bench.scenarios.create import builder_scaling, create_pipeline
from bench.scenarios.refresh_rpc import refresh_rpc
from bench.scenarios.token_read import token_read
from devtools.demo_support import Broker, DemoFailed, ensure_rabbitmq, stop_rabbitmq
from devtools.stack import LOCAL_AMQP, Stack

RESULTS = Path(__file__).resolve().parent / "results"
Scenario = Callable[[BenchStack, Config, dict[str, Any]], dict[str, Any]]
RUNNERS: dict[str, Scenario] = {
    "create_pipeline": create_pipeline,
    "builder_scaling": builder_scaling,
    "token_read": token_read,
    "refresh_rpc": refresh_rpc,
}


def say(text: str) -> None:
    print(text, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for latest.json and latest.md")
    parser.add_argument("--creates", type=int, help="connections per create batch (default 500; quick 32)")
    parser.add_argument(
        "--duration-scale", type=float, default=1.0, help="multiply read durations and refresh samples"
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=("manager", "builder", "builder2"),
        help="run this service under pyinstrument; writes <out>/profile-<name>.txt (figures get slower)",
    )
    parser.add_argument(
        "--amqp-url", help="broker to use (default: the one on 127.0.0.1:5672, started if installed and down)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the stack's work directory and logs")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    cfg = (QUICK if args.quick else FULL).scaled(duration_scale=args.duration_scale, creates=args.creates)
    chosen = [s for s in SCENARIOS if not args.only or s in args.only]
    started = time.monotonic()
    doc: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "config": asdict(cfg),
        "scenarios": chosen,
        "errors": {},
    }
    say(f"== sfconnect benchmarks ({cfg.mode}): {', '.join(chosen)}")
    broker = Broker(False, "")
    if args.amqp_url is None:
        try:
            broker = ensure_rabbitmq()
        except DemoFailed as exc:
            doc["errors"]["broker"] = exc.reason
            return _finish(doc, started), 1
        say(f"  {broker.note}")
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    bench = BenchStack(
        stack=Stack(amqp_url=args.amqp_url or LOCAL_AMQP, amqp_prefix=prefix),
        manager_env={"REFRESH_MIN_INTERVAL_SECONDS": "0"},
        profile=frozenset(args.profile),
        profile_dir=args.out,
    )
    doc["profiled"] = sorted(args.profile)
    ctx: dict[str, Any] = {}
    try:
        bench.start(max_builders=2)
        say(f"  stack up in {time.monotonic() - started:.1f}s (logs: {bench.stack.workdir / 'logs'})")
        for name in chosen:
            t0 = time.monotonic()
            say(f"== {name}")
            try:
                doc[name] = RUNNERS[name](bench, cfg, ctx)
            except Exception as exc:
                doc["errors"][name] = f"{type(exc).__name__}: {exc}"
                say(f"[FAILED] {name}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                continue
            say(f"  {name} done in {time.monotonic() - t0:.0f}s: {_headline(doc[name])}")
    except Exception as exc:
        doc["errors"]["stack"] = f"{type(exc).__name__}: {exc}"
        say(f"[FAILED] starting the stack: {exc}")
    finally:
        bench.close(keep_logs=args.keep_logs or bool(doc["errors"]))
        if (why := stop_rabbitmq(broker)) is not None:  # only a broker this run started
            say(f"  could not stop the broker this run started: {why}")
    return _finish(doc, started), 1 if doc["errors"] else 0


def _headline(section: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={section.get(k)} ({'met' if ok else 'missed'})" for k, ok in section.get("met", {}).items()
    )


def _finish(doc: dict[str, Any], started: float) -> dict[str, Any]:
    doc["duration_s"] = round(time.monotonic() - started, 1)
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    doc, code = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "latest.md").write_text(report.summary(doc))
    say(f"== wrote {args.out / 'latest.json'} and latest.md in {doc['duration_s']:.0f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
