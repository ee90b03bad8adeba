"""Knobs of aiohttp's HTTP protocol handler (``handler_args``), shared by the Manager and the Builder: what
happens to a request before any view (or middleware) runs."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from shared.logging import get_logger

log = get_logger("sfconnect.http")


class ProtocolLogger(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's protocol logger, except that a request its parser refuses (an over-long request line or
    header, a body that is not chunked as its ``Transfer-Encoding`` says, a malformed header) is a warning
    without a traceback: a client's mistake, answered with a 400, not an error of ours. Nothing of the
    request is logged (aiohttp's own message quotes the start of the request line: on the Builder's OAuth
    callback that is the authorization code)."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            log.warning("malformed request refused by the HTTP parser", error=type(exc_info).__name__)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def handler_args(*, auto_decompress: bool = True) -> dict[str, Any]:
    """``handler_args`` for ``web.Application``: the quiet protocol logger, and aiohttp's body inflation on
    or off (the Manager turns it off and refuses any Content-Encoding but identity itself)."""
    return {
        "auto_decompress": auto_decompress,
        "logger": ProtocolLogger(logging.getLogger("aiohttp.server"), {}),
    }
