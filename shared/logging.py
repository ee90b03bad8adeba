"""structlog set-up: JSON lines, context variables, and a redaction step that runs last.

The redaction step removes the values of secret-bearing keys at any depth and anything shaped like a
Salesforce session token, a JWT, a PEM block or a bearer header inside any string, exception text
included. Tracebacks are rendered without local variables.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "consumer_secret",
        "consumersecret",
        "private_key",
        "privatekey",
        "assertion",
        "authorization",
        "password",
        "passwd",
        "sessionid",
        "session_id",
        "token",
        "secret",
        "sealed_token",
        "api_key",
        "x-api-key",
        "code_verifier",
        "signature",
        "key",
        "keys",
        "encryption_keys",
        "recipient_private_keys",
        "cookie",
        "set-cookie",
    }
)

# Salesforce session ids / access tokens: 15 or 18 char org id starting 00D, "!", then the secret part.
_SF_TOKEN = re.compile(r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._\-]{10,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$)", re.S)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-!]{8,}")
_URL_CREDS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^:/@\s]+):([^@\s]+)@")
_KV = re.compile(
    r"(?i)\b(access_token|refresh_token|client_secret|assertion|code_verifier|password|sessionId|token)"
    r"(\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')([^\s&\"',;<]+)"
)
_SESSION_XML = re.compile(r"(?i)(<(?:\w+:)?sessionId>)(.*?)(</(?:\w+:)?sessionId>)", re.S)


def redact_text(text: str) -> str:
    """Remove token-shaped substrings from free text (messages, exception strings, URLs)."""
    text = _PEM.sub(REDACTED, text)
    text = _SESSION_XML.sub(rf"\1{REDACTED}\3", text)
    text = _SF_TOKEN.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _URL_CREDS.sub(rf"\1\2:{REDACTED}@", text)
    text = _KV.sub(rf"\1\2{REDACTED}", text)
    return text


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace(" ", "_") in SECRET_KEYS


def redact(value: Any, _depth: int = 0) -> Any:
    """Return a copy of ``value`` with secrets removed, at any depth of dicts, lists and tuples."""
    if _depth > 20:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _is_secret_key(k) and v not in (None, "") else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if hasattr(value, "get_secret_value"):
        return REDACTED
    return value


def redaction_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: runs after exception rendering so tracebacks are cleaned too."""
    return {
        k: (REDACTED if _is_secret_key(k) and v not in (None, "") else redact(v))
        for k, v in event_dict.items()
    }


def configure_logging(service: str, level: str = "INFO", *, json: bool = True, stream: Any = None) -> None:
    """Configure structlog and the standard library root logger to emit one redacted line per event."""
    out = stream if stream is not None else sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    exc = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            _add_service(service),
            exc if json else structlog.processors.format_exc_info,
            redaction_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, aio-pika, pymongo) log through the standard library: route them through the same chain.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _add_service(service), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exc if json else structlog.processors.format_exc_info,
            redaction_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))


def _add_service(service: str) -> Any:
    def processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
