"""The Builder's composition root: settings in, an aiohttp application out (HTTP API + command consumer).

Nothing connects at import time. Resources (MongoDB client, HTTP session to Salesforce, broker connection,
consumer) open when the application starts and close, in reverse order, when it stops; stopping drains the
consumer's in-flight commands first. Tests call :func:`build_app` with their own topology and clock.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from aiohttp import web
from pymongo import AsyncMongoClient

from builder.handlers import Handlers, failure_reply
from builder.http.context import CONTEXT, HttpContext
from builder.http.middlewares import admin_key, problems, request_context
from builder.http.routes import setup_routes
from builder.metrics import Metrics
from builder.mongo_store import MongoStore
from builder.salesforce.gateway import SalesforceGateway
from builder.salesforce.jwt import JwtBearer
from builder.salesforce.metadata import MetadataApi
from builder.salesforce.oauth import OAuthClient
from builder.salesforce.rest import RestApi
from builder.salesforce.transport import Transport
from builder.settings import BuilderSettings
from shared.amqp import Consumer, Publisher, Topology, connect
from shared.contracts import utcnow
from shared.http_protocol import handler_args
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass
class Running:
    """What a started app holds (for tests and the entrypoint)."""

    store: MongoStore
    handlers: Handlers
    consumer: Consumer | None = None


RUNNING = web.AppKey("builder_running", Running)


async def not_started() -> None:
    """The readiness check of a dependency the Builder has not connected to (yet, or any more)."""
    raise ConnectionError("not started")


def instance_name(settings: BuilderSettings) -> str:
    """This replica's name for leases: INSTANCE_ID, else hostname-pid."""
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"


def mongo_client(settings: BuilderSettings) -> AsyncMongoClient[dict[str, object]]:
    """The MongoDB client: every call gives up after MONGODB_TIMEOUT_SECONDS (the store then says 503)."""
    timeout_ms = int(settings.mongodb_timeout_seconds * 1000)
    return AsyncMongoClient(
        settings.mongodb_url.get_secret_value(),
        tz_aware=True,
        appname=f"sfconnect-{settings.service_name}",
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        timeoutMS=timeout_ms,
    )


def build_app(
    settings: BuilderSettings,
    *,
    topology: Topology | None = None,
    consume: bool = True,
    clock: Callable[[], datetime] = utcnow,
    metrics: Metrics | None = None,
) -> web.Application:
    """Build the application; resources open on startup and close on cleanup."""
    # The Builder reads no request body: aiohttp's decompression default is kept.
    app = web.Application(middlewares=[request_context, problems, admin_key], handler_args=handler_args())
    ctx = HttpContext(settings=settings, metrics=metrics or Metrics(), clock=clock)
    app[CONTEXT] = ctx
    # Until the resources are open (and after they close) every dependency reads as down.
    ctx.readiness.update(dict.fromkeys(("database", "broker") if consume else ("database",), not_started))
    topo = topology or Topology(prefix=settings.amqp_prefix)
    holder = instance_name(settings)
    keyring, sealer = settings.keyring(), settings.sealer()

    async def resources(app: web.Application) -> AsyncIterator[None]:
        mongo = mongo_client(settings)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.salesforce_timeout_seconds),
            headers={"User-Agent": "sfconnect-builder/1.0"},
        )
        connection = publisher = consumer = None
        handlers: Handlers | None = None
        try:
            store = MongoStore(mongo[settings.mongodb_database], keyring)
            await store.ensure_indexes()
            transport = Transport(session, settings.salesforce_timeout_seconds, ctx.metrics)
            oauth = OAuthClient(
                transport,
                settings.salesforce_client_id,
                settings.salesforce_client_secret.get_secret_value(),
                settings.salesforce_callback_url,
            )
            rest = RestApi(transport, settings.salesforce_api_version)
            gateway = SalesforceGateway(
                store=store,
                oauth=oauth,
                rest=rest,
                metadata=MetadataApi(transport, settings.salesforce_api_version),
                jwt=JwtBearer(transport),
                holder=holder,
                lease_seconds=settings.salesforce_timeout_seconds * 2,
                metrics=ctx.metrics,
            )
            handlers = Handlers(store, gateway, sealer, settings, holder, ctx.metrics, clock)
            ctx.store, ctx.oauth, ctx.salesforce, ctx.rest = store, oauth, gateway, rest
            ctx.readiness["database"] = store.ping
            if consume:
                connection = await connect(
                    settings.amqp_url.get_secret_value(), name=f"{settings.service_name}"
                )
                channel = await connection.channel()
                await topo.declare_builder(channel)
                await channel.close()
                publisher = Publisher(connection, topo, app_id="builder")
                await publisher.start()
                consumer = Consumer(
                    connection,
                    topo,
                    topo.builder_queue,
                    handlers.routes(),
                    publisher=publisher,
                    prefetch=settings.command_prefetch,
                    max_attempts=settings.command_max_attempts,
                    failure_reply=failure_reply,
                    # Commands only: their result is a reply nobody would receive without reply_to.
                    require_reply_to=True,
                )
                await consumer.start()
                broker = connection

                async def broker_connected() -> None:
                    if broker.is_closed or not broker.connected.is_set():
                        raise ConnectionError("broker connection is down")

                ctx.readiness["broker"] = broker_connected
            app[RUNNING] = Running(store, handlers, consumer)
            log.info("builder started", consuming=consume, queue=topo.builder_queue, instance=holder)
            yield
        finally:
            ctx.readiness.update(dict.fromkeys(ctx.readiness, not_started))
            if consumer is not None:
                await consumer.stop(drain_timeout=settings.shutdown_drain_seconds)
            if handlers is not None:
                await handlers.close()
            if publisher is not None:
                await publisher.close()
            if connection is not None:
                await connection.close()
            await session.close()
            await mongo.close()
            log.info("builder stopped")

    app.cleanup_ctx.append(resources)
    setup_routes(app)
    return app
