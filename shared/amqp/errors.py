"""Typed errors of the AMQP layer. Every one is a ``RetryableError``: the same publish or call may succeed later."""

from __future__ import annotations

from shared.errors import RetryableError


class AmqpError(RetryableError):
    """Base of the errors raised by ``shared.amqp``."""

    code = "broker_unavailable"


class PublishTimeout(AmqpError):
    """The broker did not confirm the publish within its deadline (the message may or may not be queued)."""

    code = "publish_timeout"


class BrokerUnavailable(PublishTimeout):
    """There is no live connection to the broker right now: the message was not sent. Retry later."""

    code = "broker_unavailable"


class PublishRejected(AmqpError):
    """The broker refused the message (``basic.nack``), e.g. a full queue with ``reject-publish``."""

    code = "publish_rejected"


class Unroutable(PublishRejected):
    """The broker returned a mandatory message (``NO_ROUTE``): no queue is bound for its routing key."""

    code = "unroutable"


class RpcTimeout(AmqpError):
    """No reply arrived within the call's deadline."""

    code = "rpc_timeout"


class RpcConnectionLost(AmqpError):
    """The broker connection went away while the call was pending (or before it could be sent)."""

    code = "rpc_connection_lost"
