"""The refresh round trip's baseline: a bare aio-pika request/reply echo over the same broker.

The server (``python -m bench.rpc_echo``) consumes ``<queue>.product`` (quorum) and ``<queue>.minimal``
(classic) and answers every message on its ``reply_to`` queue. The client (``python -m bench.loadgen rpc``) sends one request at a time and times the
round trip. With ``--guarantees product`` (the default) both sides use what sfconnect uses for a refresh:
persistent messages, publisher confirms, ``mandatory``, a durable quorum request queue and a durable
classic reply queue. ``--guarantees minimal`` drops all of that (transient messages, no confirms, a
classic request queue): the broker's floor. Message sizes match the real command and reply.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aiohttp import web

from bench.stats import latency_summary

REQUEST_BYTES = 420  # about the size of a RefreshConnectionToken command body
REPLY_BYTES = 980  # about the size of a ConnectionTokenRefreshed reply (sealed token included)


def queue_arguments(guarantees: str) -> dict[str, Any]:
    return {"x-queue-type": "quorum"} if guarantees == "product" else {"x-queue-type": "classic"}


def queue_name(base: str, guarantees: str) -> str:
    return f"{base}.{guarantees}"


async def serve(amqp_url: str, queue: str, port: int, prefetch: int) -> None:
    """Echo on both queues until SIGTERM; a tiny HTTP /readyz tells the harness the consumers are up."""
    connection = await aio_pika.connect_robust(amqp_url, timeout=10)
    queues = []
    for guarantees in ("product", "minimal"):
        confirm = guarantees == "product"
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=prefetch)
        reply_channel = await connection.channel(publisher_confirms=confirm)
        q = await consume_channel.declare_queue(
            queue_name(queue, guarantees), durable=True, arguments=queue_arguments(guarantees)
        )
        await q.consume(_echo(reply_channel, confirm))
        queues.append(q)
    app = web.Application()
    app.router.add_get("/readyz", _ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    for q in queues:
        with contextlib.suppress(Exception):
            await q.delete(if_unused=False, if_empty=False)
    await connection.close()


async def _ready(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def _echo(channel: AbstractChannel, confirm: bool) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    body = b"r" * REPLY_BYTES
    mode = aio_pika.DeliveryMode.PERSISTENT if confirm else aio_pika.DeliveryMode.NOT_PERSISTENT

    async def on_message(message: AbstractIncomingMessage) -> None:
        reply = aio_pika.Message(body, correlation_id=message.correlation_id, delivery_mode=mode)
        await channel.default_exchange.publish(reply, routing_key=message.reply_to or "", mandatory=confirm)
        await message.ack()

    return on_message


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True, help="the echo server's queue base name")
    parser.add_argument("--guarantees", choices=("product", "minimal"), default="product")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=10.0)


async def _connect(url: str, deadline_s: float = 60.0) -> AbstractConnection:
    """Connect, retrying while the shared broker is briefly down (other work restarts it)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return await aio_pika.connect(url, timeout=10)
        except (aiormq.exceptions.AMQPConnectionError, OSError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(1.0)


async def client(args: argparse.Namespace) -> dict[str, Any]:
    """Sequential round trips: publish (confirmed when asked), wait for the correlated reply."""
    connection = await _connect(args.amqp_url)
    confirm = args.guarantees == "product"
    try:
        channel = await connection.channel(publisher_confirms=confirm, on_return_raises=confirm)
        reply_queue = await channel.declare_queue(
            f"{args.queue}.replies.{args.guarantees}.{uuid.uuid4().hex[:8]}",
            durable=confirm,
            auto_delete=not confirm,
            arguments={"x-queue-type": "classic", "x-expires": 300_000},
        )
        pending: dict[str, asyncio.Future[bytes]] = {}

        async def on_reply(message: AbstractIncomingMessage) -> None:
            future = pending.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(message.body)
            await message.ack()

        await reply_queue.consume(on_reply)
        body = b"q" * REQUEST_BYTES
        mode = aio_pika.DeliveryMode.PERSISTENT if confirm else aio_pika.DeliveryMode.NOT_PERSISTENT
        latencies: list[float] = []
        cpu0 = 0.0
        for i in range(args.warmup + args.samples):
            if i == args.warmup:
                cpu0 = time.process_time()
            cid = uuid.uuid4().hex
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            pending[cid] = future
            message = aio_pika.Message(
                body, correlation_id=cid, message_id=cid, reply_to=reply_queue.name, delivery_mode=mode
            )
            started = time.perf_counter()
            await channel.default_exchange.publish(
                message, routing_key=queue_name(args.queue, args.guarantees), mandatory=confirm
            )
            await asyncio.wait_for(future, args.timeout)
            if i >= args.warmup:
                latencies.append(time.perf_counter() - started)
        await reply_queue.delete(if_unused=False, if_empty=False)
        server = connection.transport.connection.server_properties if connection.transport else {}
        version = server.get("version", b"")
        return {
            "guarantees": args.guarantees,
            "broker_version": version.decode() if isinstance(version, bytes) else str(version),
            **latency_summary(latencies),
            "loadgen_cpu_seconds": round(time.process_time() - cpu0, 2),
        }
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc_echo", description="bare AMQP echo server")
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True, help="base name: <queue>.product and <queue>.minimal")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.amqp_url, args.queue, args.port, args.prefetch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
