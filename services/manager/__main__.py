"""``python -m manager``: serve (default), ``api-keys create|revoke|list``, ``rotate-keys``.

Bad configuration stops the process with one line on stderr and exit status 2 (no traceback). ``serve``
binds its HTTP port before anything else starts (as the Builder does): a port that is taken stops it with
one line and exit status 1 before it has connected to the database or consumed a single reply.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError as MongoConfigurationError

from manager.apikeys import (
    ApiKey,
    MongoApiKeys,
    Scope,
    create_api_key,
    revoke_api_key,
    valid_connection_binding,
    valid_integration_binding,
    valid_key_name,
)
from manager.ports import utc_now_ms
from manager.repository import MongoConnections, ensure_indexes
from manager.rotation import rotate_keys
from manager.settings import ManagerSettings, ManagerStoreSettings
from shared.errors import InvalidInput, SfconnectError
from shared.logging import configure_logging, redact_text
from shared.settings import describe_validation_error

_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def _key_name(value: str) -> str:
    try:
        return valid_key_name(value)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _integration(value: str) -> str:
    try:
        return valid_integration_binding(value)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _connection(value: str) -> str:
    try:
        return valid_connection_binding(value)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _bindings_text(key: ApiKey) -> str:
    """``integration:a,connection:b`` for a bound key; ``-`` for an unbound one (reads every token)."""
    parts = [f"integration:{n}" for n in sorted(key.integrations)]
    parts += [f"connection:{c}" for c in sorted(key.connections)]
    return ",".join(_printable(p) for p in parts) or "-"


def _key_id(value: str) -> str:
    if not _KEY_ID.fullmatch(value):
        raise argparse.ArgumentTypeError("must be a key id as 'api-keys list' shows it (16 hex digits)")
    return value


def _batch_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _printable(text: str) -> str:
    """``text`` as is when printable, else with its control characters escaped (names stored earlier)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m manager", description="sfconnect Manager")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP API, the replies consumer and the sweeper (default)")
    keys = sub.add_parser("api-keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print it once")
    create.add_argument("--scope", action="append", required=True, choices=[s.value for s in Scope])
    create.add_argument("--name", required=True, type=_key_name, help="1-64 printable characters")
    create.add_argument(
        "--integration",
        action="append",
        default=[],
        type=_integration,
        help="bind the key: it reads only this integration's token (repeatable; recommended for generated code)",
    )
    create.add_argument(
        "--connection",
        action="append",
        default=[],
        type=_connection,
        help="bind the key: it reads only this connection's token (repeatable)",
    )
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", type=_key_id)
    keys.add_parser("list", help="list keys (never the keys themselves)")
    rotate = sub.add_parser("rotate-keys", help="re-encrypt stored tokens with the first ENCRYPTION_KEYS key")
    rotate.add_argument("--batch-size", type=_batch_size, default=100, help="records per batch (>= 1)")
    return parser


@asynccontextmanager
async def _database(settings: ManagerStoreSettings) -> AsyncIterator[AsyncDatabase[Any]]:
    from manager.app import _mongo_client

    client = _mongo_client(settings)
    try:
        db = client[settings.mongodb_database]
        await ensure_indexes(db)
        yield db
    finally:
        await client.close()


async def _api_keys(settings: ManagerStoreSettings, args: argparse.Namespace) -> int:
    async with _database(settings) as db:
        repo = MongoApiKeys(db)
        if args.action == "create":
            record, plaintext = await create_api_key(
                repo,
                name=args.name,
                scopes=args.scope,
                now=utc_now_ms(),
                integrations=args.integration,
                connections=args.connection,
            )
            print(plaintext)
            bindings = f"bound to {_bindings_text(record)}" if record.bound else "unbound"
            print(
                f"created API key {record.id} ({record.name}) with scopes {' '.join(sorted(record.scopes))}, "
                f"{bindings}; it is shown only this once",
                file=sys.stderr,
            )
        elif args.action == "revoke":
            await revoke_api_key(repo, args.key_id, now=utc_now_ms())
            print(f"revoked API key {args.key_id}", file=sys.stderr)
        else:
            for key in await repo.all():
                revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
                print(
                    f"{key.id}\t{_printable(key.name)}\t{','.join(sorted(key.scopes))}\t"
                    f"{key.created_at.isoformat()}\t{revoked}\t{_bindings_text(key)}"
                )
    return 0


async def _rotate(settings: ManagerSettings, batch_size: int) -> int:
    async with _database(settings) as db:
        report = await rotate_keys(MongoConnections(db), settings.keyring(), batch_size=batch_size)
    print(
        f"rotated {report.rotated} token(s) to key {settings.keyring().active_kid}; "
        f"{report.failed} unreadable; {report.passes} pass(es); "
        f"{report.remaining} still under an old key",
        file=sys.stderr,
    )
    if report.remaining and not report.failed:
        print("records kept changing during the run: run rotate-keys again", file=sys.stderr)
    return 0 if report.complete else 1


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on HTTP_HOST:HTTP_PORT (``socket.gaierror`` for a host that does not resolve,
    another ``OSError`` when the port is taken or the address is not this machine's)."""
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address, family=family, backlog=128)


async def _run(settings: ManagerSettings, listener: socket.socket) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, finish requests (15 s) and run cleanup_ctx."""
    from aiohttp import web

    from manager.app import build_app

    runner = web.AppRunner(build_app(settings), handle_signals=False, access_log=None, shutdown_timeout=15)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()  # opens the database and the broker, starts the consumer and the sweeper
        await web.SockSite(runner, listener).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def _serve(settings: ManagerSettings) -> int:
    where = f"{settings.http_host}:{settings.http_port}"
    try:
        listener = _bind(settings.http_host, settings.http_port)
    except socket.gaierror as exc:  # not an address at all: a bad setting
        print(
            f"invalid configuration: HTTP_HOST: not an address to listen on ({exc.strerror})", file=sys.stderr
        )
        return 2
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        print(
            f"manager: cannot start: cannot listen on {where} (HTTP_HOST, HTTP_PORT): {reason}",
            file=sys.stderr,
        )
        return 1
    try:
        asyncio.run(_run(settings, listener))
    finally:
        listener.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The API-key commands touch only the database: they need neither ENCRYPTION_KEYS nor
    # RECIPIENT_PRIVATE_KEYS, so they read the smaller settings class.
    settings_class = ManagerStoreSettings if args.command == "api-keys" else ManagerSettings
    try:
        settings = settings_class()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return 2
    serving = args.command in (None, "serve")
    configure_logging(
        settings.service_name,
        settings.log_level,
        json=settings.log_json,
        stream=None if serving else sys.stderr,
    )
    try:
        if args.command == "api-keys":
            return asyncio.run(_api_keys(settings, args))
        assert isinstance(settings, ManagerSettings)
        if serving:
            return _serve(settings)
        return asyncio.run(_rotate(settings, args.batch_size))
    except SfconnectError as exc:
        print(f"manager: {exc.code}: {redact_text(exc.message)}", file=sys.stderr)
        return 1
    except MongoConfigurationError as exc:  # e.g. a mongodb+srv:// name that does not resolve
        print(f"manager: invalid configuration: MONGODB_URL: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as exc:
        print(f"manager: cannot start: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else at start-up: one line, not a traceback (e.g. an unknown vhost)
        print(f"manager: cannot start: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
