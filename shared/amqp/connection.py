"""Opening the process's one robust broker connection."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aiormq.exceptions import InvalidFrameError
from yarl import URL

DEFAULT_RECONNECT_INTERVAL = "1"


async def connect(url: str, *, name: str, connect_timeout: float = 10.0) -> AbstractRobustConnection:
    """``connect_robust`` with a 1 s reconnect interval (unless the URL sets one) and a client-provided name.

    The name shows in ``rabbitmqctl list_connections client_properties`` and the management UI.
    Channels, QoS, queues, bindings and consumers opened on it are restored after a broker restart.
    """
    parsed = URL(url)
    if "reconnect_interval" not in parsed.query:
        parsed = parsed.update_query(reconnect_interval=DEFAULT_RECONNECT_INTERVAL)
    try:
        return await aio_pika.connect_robust(
            parsed, timeout=connect_timeout, client_properties={"connection_name": name}
        )
    except InvalidFrameError as exc:
        # The broker answers Connection.Open for an unknown (or forbidden) vhost with Connection.Close,
        # which aiormq reports as an unexpected frame and drops the broker's reason text with it.
        if "Connection.Close" not in str(exc):
            raise
        vhost = parsed.path[1:] or "/"
        raise ConnectionError(
            f"the broker refused to open virtual host {vhost!r} (AMQP_URL): it does not exist, "
            "or this user has no permission on it"
        ) from None
