"""What ``make demo`` (and ``make run``) need around the scenario: the current step, failure lines that
name it and never show a secret, HTTP answers checked before they are parsed, and the local broker.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devtools.stack import port_open
from shared.logging import redact_text

REDACTED = "[redacted]"


def say(text: str) -> None:
    print(text, flush=True)


class DemoFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class Progress:
    """The step the demo is on (kept in this one place) and the secrets no failure line may show."""

    step: str = "check the broker"
    secrets: set[str] = field(default_factory=set)

    def begin(self, step: str) -> str:
        self.step = step
        return step

    def fail(self, reason: str) -> DemoFailed:
        return DemoFailed(self.step, reason)

    def hide(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return redact_text(text)

    def failure_line(self, exc: BaseException) -> str:
        """``[FAILED] step '<step>': <reason>`` for any exception, secrets removed."""
        if isinstance(exc, DemoFailed):
            step, reason = exc.step, exc.reason
        else:
            step, reason = self.step, f"{type(exc).__name__}: {exc}"
        return f"[FAILED] step '{step}': {self.redact(reason)}"


def describe_answer(status: int, text: str) -> str:
    """An unexpected HTTP answer in one line: the status and, for a problem document, its code, title
    and detail; otherwise the start of the body."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, Mapping) and ("title" in body or "detail" in body):
        code = f" {body['code']}" if body.get("code") else ""
        said = " - ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
        return f"HTTP {status}{code}: {said}"
    snippet = " ".join(text.split())[:200]
    return f"HTTP {status}: {snippet or 'empty body'}"


async def answer(resp: aiohttp.ClientResponse, step: str, *expected: int) -> Any:
    """The JSON body of an answer whose status is one of ``expected``; otherwise a failure of ``step``."""
    text = await resp.text()
    if resp.status not in expected:
        raise DemoFailed(step, describe_answer(resp.status, text))
    try:
        return json.loads(text)
    except ValueError:
        raise DemoFailed(step, f"HTTP {resp.status} without a JSON body: {text[:120]!r}") from None


async def poll(
    what: str, check: Callable[[], Awaitable[Any]], deadline_s: float, every_s: float = 0.2
) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise DemoFailed(what, f"not reached within {deadline_s:.0f}s")


@dataclass(frozen=True)
class Broker:
    """The local RabbitMQ: ``started`` when this process started it (and so must stop it)."""

    started: bool
    note: str


def ensure_rabbitmq(deadline_s: float = 60.0) -> Broker:
    """Reuse the broker on 127.0.0.1:5672, or start the installed one."""
    if port_open("127.0.0.1", 5672):
        return Broker(False, "reused the broker on 127.0.0.1:5672 (it is left running)")
    if not shutil.which("rabbitmq-server"):
        raise DemoFailed(
            "check the broker",
            "nothing listens on 127.0.0.1:5672 and rabbitmq-server is not installed "
            "(apt-get install rabbitmq-server)",
        )
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
    broker = Broker(True, "started rabbitmq-server on 127.0.0.1:5672 (stopped again at the end)")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open("127.0.0.1", 5672):
            return broker
        time.sleep(0.5)
    stop_rabbitmq(broker)
    raise DemoFailed(
        "check the broker", f"rabbitmq-server did not open 127.0.0.1:5672 within {deadline_s:.0f}s"
    )


def stop_rabbitmq(broker: Broker, timeout_s: float = 60.0) -> str | None:
    """Stop the broker if this process started it; a broker that was already there is left alone.

    Returns why it could not be stopped, or None.
    """
    if not broker.started:
        return None
    why = "rabbitmqctl is not installed"
    for command in (["rabbitmqctl", "shutdown"], ["rabbitmqctl", "stop"]):
        try:
            out = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"{' '.join(command)}: {type(exc).__name__}"
            continue
        if out.returncode == 0:
            return None
        why = f"{' '.join(command)} exited {out.returncode}: {out.stderr.strip()[-200:]}"
    return why


def unclean_exits(codes: Mapping[str, int | None]) -> list[str]:
    """The processes that did not exit 0 when stopped (None: never started), as ``name exited N``."""
    return [f"{name} exited {code}" for name, code in codes.items() if code is not None and code != 0]
