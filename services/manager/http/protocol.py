"""Knobs of aiohttp's HTTP protocol handler (``handler_args``): what happens before any view runs."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from shared.logging import get_logger

log = get_logger("manager.http")


class ProtocolLogger(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's protocol logger, except that a request its parser refuses (a body that is not chunked as
    its ``Transfer-Encoding`` says, a malformed header) is a warning without a traceback: a client's
    mistake, answered with a 400, not an error of ours. Nothing of the request is logged."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            log.warning("malformed request refused by the HTTP parser", error=type(exc_info).__name__)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def handler_args() -> dict[str, Any]:
    """``auto_decompress`` off: aiohttp never inflates a body (nor answers 400 for an encoding it cannot);
    ``read_body`` refuses any Content-Encoding but identity with a problem document instead."""
    return {"auto_decompress": False, "logger": ProtocolLogger(logging.getLogger("aiohttp.server"), {})}
