"""The Manager's ``handler_args``: the shared quiet protocol logger (shared/http_protocol.py), and no body
inflation."""

from __future__ import annotations

from typing import Any

from shared.http_protocol import ProtocolLogger
from shared.http_protocol import handler_args as shared_handler_args

__all__ = ["ProtocolLogger", "handler_args"]


def handler_args() -> dict[str, Any]:
    """``auto_decompress`` off: aiohttp never inflates a body (nor answers 400 for an encoding it cannot);
    ``read_body`` refuses any Content-Encoding but identity with a problem document instead."""
    return shared_handler_args(auto_decompress=False)
