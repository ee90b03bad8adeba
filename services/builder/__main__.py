"""``python -m builder``: settings → logging → HTTP API and command consumer; SIGTERM drains and stops.

The HTTP port is bound before anything else starts, so a port that is taken stops the process before it
has connected to the database or taken a single command from the broker. Bad configuration (an HTTP_HOST
that is not an address included) stops it with one line on stderr and exit status 2; a failure to start
(a port in use included), with one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import Sequence
from enum import Enum

from aiohttp import web
from pydantic import SecretStr, ValidationError
from pymongo.errors import ConfigurationError as MongoConfigurationError

from builder.app import build_app
from builder.settings import BuilderSettings
from shared.errors import ConfigurationError, SfconnectError
from shared.logging import configure_logging, get_logger, redact_text
from shared.settings import describe_validation_error

log = get_logger("builder")


def _default(value: object) -> str:
    if isinstance(value, SecretStr) or value is None:
        return ""  # a URL default may hold a user and password: not shown
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    return f" (default: {value})" if value != "" else " (default: empty)"


def _settings_help() -> str:
    """Every setting (environment variable) by name: the required ones, then the rest with defaults."""
    required, optional = [], []
    for name, field in BuilderSettings.model_fields.items():
        if field.is_required():
            required.append(f"  {name.upper()}")
        else:
            optional.append(f"  {name.upper()}{_default(field.default)}")
    title = "settings, read from the environment (docs/configuration.md):"
    return "\n".join([title, "required:", *required, "optional:", *optional])


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m builder",
        description="sfconnect Builder: the admin HTTP API (OAuth authorization of orgs, their objects) "
        "and the consumer of connection commands. Runs until SIGTERM or SIGINT, then finishes the "
        "commands in flight and stops.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on HTTP_HOST:HTTP_PORT (raises OSError when the port is taken)."""
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address, family=family, backlog=128)


async def serve(settings: BuilderSettings, listener: socket.socket) -> None:
    """Run until SIGTERM or SIGINT, then stop taking work, finish what is in flight and close."""
    app = build_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()  # opens the database, the broker connection and the consumer
        await web.SockSite(runner, listener).start()
        log.info("listening", host=settings.http_host, port=settings.http_port)
        await stop.wait()
        log.info("stopping: draining in-flight commands")
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    _parser().parse_args(argv)  # --help needs no settings
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
        listener = bind(settings.http_host, settings.http_port)
    except socket.gaierror as exc:  # not an address at all: a bad setting, like any other
        print(
            f"invalid configuration: HTTP_HOST: not an address to listen on ({exc.strerror})", file=sys.stderr
        )
        return 2
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"builder could not start: cannot listen on {settings.http_host}:{settings.http_port} "
            f"(HTTP_HOST, HTTP_PORT): {reason.lower()}",
            file=sys.stderr,
        )
        return 1
    try:
        asyncio.run(serve(settings, listener))
    except SfconnectError as exc:
        print(f"builder could not start: {exc.code}: {redact_text(exc.message)}", file=sys.stderr)
        return 1
    except MongoConfigurationError as exc:  # e.g. a mongodb+srv:// name that does not resolve
        print(f"builder could not start: invalid MONGODB_URL: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"builder could not start: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"builder could not start: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
