"""``python -m builder``: settings → logging → HTTP API and command consumer; SIGTERM drains and stops."""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web
from pydantic import ValidationError

from builder.app import build_app
from builder.settings import BuilderSettings
from shared.errors import ConfigurationError
from shared.logging import configure_logging, get_logger, redact_text
from shared.settings import describe_validation_error

log = get_logger("builder")


async def serve(settings: BuilderSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop taking work, finish what is in flight and close."""
    app = build_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        log.info("listening", host=settings.http_host, port=settings.http_port)
        await stop.wait()
        log.info("stopping: draining in-flight commands")
    finally:
        await runner.cleanup()


def main() -> int:
    try:
        settings = BuilderSettings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"builder could not start: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"builder could not start: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
