"""AMQP layer over aio-pika: topology, confirmed publishing, a consumer wrapper, and an RPC client.

Public API (both services use only these names):

- ``connect(url, *, name) -> AbstractRobustConnection`` — ``connect_robust`` with a short reconnect interval.
- ``Topology(prefix="", delivery_limit=5, retry_delays=(1, 5, 30, 120), rpc_expires_ms=300_000)`` — every
  exchange/queue name of DESIGN §3 (prefixed for test isolation) and ``declare_builder(channel)``,
  ``declare_manager(channel, instance_id)``, ``delete_all(channel, instance_ids=())`` (tests).
- ``Publisher(connection, topology, *, app_id, deadline=5.0)`` — ``start()``, ``close()``,
  ``send_command(cmd, *, reply_to, correlation_id=None, request_id=None) -> message_id``,
  ``send_reply(reply, *, reply_to, correlation_id, request_id=None)``. Confirms + mandatory; raises
  ``PublishTimeout`` / ``PublishRejected`` (``Unroutable`` is a ``PublishRejected``).
- ``Consumer(connection, topology, queue_name, handlers, *, publisher, prefetch=8, max_attempts=10,
  failure_reply=None)`` — ``start()``, ``stop(drain_timeout)``; see consumer.py for the ack / retry /
  dead-letter rules.
- ``RpcClient(connection, topology, publisher, *, instance_id)`` — ``start()``, ``close()``,
  ``call(cmd, *, deadline, request_id=None) -> Contract``; raises ``RpcTimeout`` / ``RpcConnectionLost``.
- ``Delivery`` — what a handler learns about the message besides its body.
"""
