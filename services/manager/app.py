"""The composition root: settings → clients → services → aiohttp application.

Nothing connects at import time. ``build_app(settings)`` returns an application whose ``cleanup_ctx``
opens MongoDB and RabbitMQ on start-up and closes them (draining the consumer) on shutdown. Tests pass
``Overrides`` to swap any port for a fake, or to run several apps (instances) against one database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from manager.apikeys import ApiKeyRepository, Authenticator, MongoApiKeys
from manager.consumers import late_reply_handler, reply_handlers
from manager.errors import StoreUnavailable
from manager.http.middlewares import MIDDLEWARES
from manager.http.protocol import handler_args
from manager.http.routes import setup_routes
from manager.http.state import COMPONENTS, METRICS, Check, Components
from manager.http.views import MAX_BODY_BYTES
from manager.idempotency import IdempotencyRepository, MongoIdempotencyKeys
from manager.metrics import Metrics
from manager.ports import Clock, CommandPublisher, RpcCaller, utc_now_ms
from manager.repository import (
    ConnectionRepository,
    IntegrationRepository,
    MongoConnections,
    MongoIntegrations,
    ensure_indexes,
    ping,
)
from manager.services import ConnectionService
from manager.settings import ManagerSettings, ManagerStoreSettings
from manager.sweeper import Sweeper
from manager.tokens import TokenService
from shared.amqp import Consumer, Publisher, RpcClient, Topology, connect
from shared.logging import get_logger

log = get_logger("manager.app")

DRAIN_SECONDS = 10.0


@dataclass
class Overrides:
    """Ports to use instead of the real adapters, and knobs tests need."""

    connections: ConnectionRepository | None = None
    integrations: IntegrationRepository | None = None
    api_keys: ApiKeyRepository | None = None
    idempotency: IdempotencyRepository | None = None
    publisher: CommandPublisher | None = None
    rpc: RpcCaller | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    clock: Clock | None = None
    background: bool = True
    poll_interval: float = 0.05
    auth_cache_seconds: float = 5.0


def _mongo_client(settings: ManagerStoreSettings) -> AsyncMongoClient[Any]:
    timeout_ms = int(settings.mongodb_timeout_seconds * 1000)
    return AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        tz_aware=True,
        appname=f"{settings.service_name}-{settings.instance_id}",
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        timeoutMS=timeout_ms,
    )


async def _ensure_indexes_until_done(db: AsyncDatabase[Any], done: asyncio.Event) -> None:
    """Create the indexes, waiting out an unreachable database.

    Any other error (a mongodb+srv:// name that does not resolve, an index that conflicts with an existing
    one) will not heal by waiting: it propagates, start-up fails, and ``__main__`` says why in one line.
    """
    delay = 0.5
    while True:
        try:
            await ensure_indexes(db)
        except StoreUnavailable as exc:
            log.warning("indexes not created yet; retrying", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        done.set()
        return


def build_app(settings: ManagerSettings, *, overrides: Overrides | None = None) -> web.Application:
    """The Manager's aiohttp application; resources open and close with it (``cleanup_ctx``)."""
    ov = overrides or Overrides()
    metrics = Metrics()
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=list(MIDDLEWARES), handler_args=handler_args()
    )
    app[METRICS] = metrics
    setup_routes(app)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            checks: dict[str, Check] = dict(ov.checks)
            stores = (ov.connections, ov.integrations, ov.api_keys, ov.idempotency)
            db: AsyncDatabase[Any] | None = None
            if any(s is None for s in stores):
                client = _mongo_client(settings)
                stack.push_async_callback(client.close)
                db = client[settings.mongodb_database]
                indexed = asyncio.Event()
                index_task = asyncio.create_task(_ensure_indexes_until_done(db, indexed))
                stack.callback(index_task.cancel)
                startup_wait = settings.mongodb_timeout_seconds * 2
                try:
                    await asyncio.wait_for(asyncio.shield(index_task), startup_wait)
                except TimeoutError:
                    # Unreachable at start-up is a configuration problem: refuse to start, as the Builder
                    # does (tests/fault/test_security_bad_config.py). Outages after start-up only make
                    # the Manager answer 503 until the database is back.
                    raise StoreUnavailable(
                        f"cannot reach MongoDB (MONGODB_URL) within {startup_wait:g}s at start-up"
                    ) from None

                async def database_up(db: AsyncDatabase[Any] = db) -> bool:
                    await asyncio.wait_for(ping(db), timeout=2.0)
                    return indexed.is_set()

                checks.setdefault("database", database_up)

            topology = Topology(prefix=settings.amqp_prefix)
            publisher: CommandPublisher | None = ov.publisher
            rpc: RpcCaller | None = ov.rpc
            amqp = None
            if publisher is None or rpc is None:
                amqp = await connect(
                    settings.amqp_url.get_secret_value(), name=f"manager-{settings.instance_id}"
                )
                stack.push_async_callback(amqp.close)
                channel = await amqp.channel()
                await topology.declare_manager(channel, settings.instance_id)
                await channel.close()
                real_publisher = Publisher(
                    amqp, topology, app_id="manager", deadline=settings.publish_deadline_seconds
                )
                await real_publisher.start()
                stack.push_async_callback(real_publisher.close)
                publisher = publisher or real_publisher

                async def broker_up(conn: Any = amqp) -> bool:
                    return bool(conn.connected.is_set() and not conn.is_closed)

                checks.setdefault("broker", broker_up)

            clock = ov.clock or utc_now_ms
            connections = ConnectionService(
                repo=ov.connections or MongoConnections(_need(db)),
                integrations=ov.integrations or MongoIntegrations(_need(db)),
                publisher=publisher,
                keyring=settings.keyring(),
                opener=settings.opener(),
                replies_queue=topology.replies_queue,
                metrics=metrics,
                publish_grace=timedelta(seconds=settings.publish_deadline_seconds * 2),
                republish_after=timedelta(seconds=settings.pending_republish_seconds),
                clock=clock,
            )
            if rpc is None:
                assert amqp is not None
                # a refresh reply arriving after its call gave up still carries a minted token: keep it
                rpc_client = RpcClient(
                    amqp,
                    topology,
                    real_publisher,
                    instance_id=settings.instance_id,
                    on_unmatched=late_reply_handler(connections),
                )
                await rpc_client.start()
                stack.push_async_callback(rpc_client.close)
                rpc = rpc_client
            tokens = TokenService(
                connections=connections,
                rpc=rpc,
                instance_id=settings.instance_id,
                token_lifetime=timedelta(seconds=settings.token_lifetime_seconds),
                rpc_deadline=settings.rpc_deadline_seconds,
                min_refresh_interval=timedelta(seconds=settings.refresh_min_interval_seconds),
                poll_interval=ov.poll_interval,
                clock=clock,
            )
            app[COMPONENTS] = Components(
                connections=connections,
                tokens=tokens,
                authenticator=Authenticator(
                    ov.api_keys or MongoApiKeys(_need(db)), cache_seconds=ov.auth_cache_seconds
                ),
                idempotency=ov.idempotency or MongoIdempotencyKeys(_need(db)),
                metrics=metrics,
                checks=checks,
            )
            if ov.background:
                if amqp is not None:
                    consumer = Consumer(
                        amqp,
                        topology,
                        topology.replies_queue,
                        reply_handlers(connections),
                        publisher=real_publisher,
                        prefetch=16,
                    )
                    await consumer.start()
                    stack.push_async_callback(consumer.stop, DRAIN_SECONDS)
                sweeper = Sweeper(connections, interval=settings.sweeper_interval_seconds)
                sweeper.start()
                stack.push_async_callback(sweeper.stop)
            log.info("manager started", instance_id=settings.instance_id)
            yield
            log.info("manager stopping", instance_id=settings.instance_id)

    app.cleanup_ctx.append(resources)
    return app


def _need(db: AsyncDatabase[Any] | None) -> AsyncDatabase[Any]:
    assert db is not None, "a MongoDB-backed port was requested without a database"
    return db
