"""AMQP layer over aio-pika: topology, confirmed publishing, a consumer wrapper, and an RPC client.

Public API (both services use only these names):

- ``connect(url, *, name) -> AbstractRobustConnection`` — ``connect_robust`` with a 1 s reconnect interval
  (unless the URL sets one) and the client-provided connection name ``name``.
- ``Topology(prefix="", delivery_limit=5, retry_delays=(1, 5, 30, 120), rpc_expires_ms=300_000)`` — every
  exchange/queue name of DESIGN §3 (prefixed for test isolation) and ``declare_builder(channel)``,
  ``declare_manager(channel, instance_id)``, ``declare_queue(channel, name)``, ``delete_all(channel,
  instance_ids=())`` (tests; refuses an empty prefix).
- ``Publisher(connection, topology, *, app_id, deadline=5.0)`` — ``start()``, ``close()``,
  ``send_command(cmd, *, reply_to, correlation_id=None, request_id=None, message_id=None) -> message_id``,
  ``send_reply(reply, *, reply_to, correlation_id, request_id=None)``, ``publish(message, *, exchange,
  routing_key)``. Confirms + mandatory + a deadline; raises ``PublishTimeout`` / ``BrokerUnavailable``
  (a ``PublishTimeout``: no connection, not sent) / ``PublishRejected`` (``Unroutable`` is one).
- ``Consumer(connection, topology, queue_name, handlers, *, publisher, prefetch=8, max_attempts=10,
  failure_reply=None, require_reply_to=False)`` — ``start()``, ``stop(drain_timeout)``; see consumer.py for the ack / retry /
  dead-letter rules.
- ``RpcClient(connection, topology, publisher, *, instance_id, on_unmatched=None)`` — ``start()``, ``close()``,
  ``call(cmd, *, deadline, request_id=None) -> Contract``; raises ``RpcTimeout`` / ``RpcConnectionLost``.
- ``Delivery`` — what a handler learns about the message besides its body; ``command_message`` /
  ``reply_message`` / ``to_message`` build the AMQP message of a contract (what the publisher sends),
  ``delivery_of`` / ``decode_message`` read one back.

Every error here is a ``shared.errors.RetryableError``.
"""

from shared.amqp.connection import connect
from shared.amqp.consumer import (
    REASON_NO_CORRELATION_ID,
    REASON_NO_REPLY_TO,
    REASON_RETRIES_EXHAUSTED,
    Consumer,
    FailureReply,
    Handler,
)
from shared.amqp.errors import (
    AmqpError,
    BrokerUnavailable,
    PublishRejected,
    PublishTimeout,
    RpcConnectionLost,
    RpcTimeout,
    Unroutable,
)
from shared.amqp.message import (
    H_ATTEMPT,
    H_DETAIL,
    H_FIRST_ATTEMPT_AT,
    H_REASON,
    H_REQUEST_ID,
    Delivery,
    command_message,
    decode_message,
    delivery_of,
    reply_message,
    to_message,
)
from shared.amqp.publisher import Publisher
from shared.amqp.rpc import RpcClient
from shared.amqp.topology import Topology

__all__ = [
    "H_ATTEMPT",
    "H_DETAIL",
    "H_FIRST_ATTEMPT_AT",
    "H_REASON",
    "H_REQUEST_ID",
    "REASON_NO_CORRELATION_ID",
    "REASON_NO_REPLY_TO",
    "REASON_RETRIES_EXHAUSTED",
    "AmqpError",
    "BrokerUnavailable",
    "Consumer",
    "Delivery",
    "FailureReply",
    "Handler",
    "PublishRejected",
    "PublishTimeout",
    "Publisher",
    "RpcClient",
    "RpcConnectionLost",
    "RpcTimeout",
    "Topology",
    "Unroutable",
    "command_message",
    "connect",
    "decode_message",
    "delivery_of",
    "reply_message",
    "to_message",
]
