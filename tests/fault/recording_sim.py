"""The Salesforce simulator, unchanged, plus a recorder of every credential it issues or receives.

``python -m tests.fault.recording_sim --record PATH [simulator arguments]`` runs ``python -m
salesforce_sim`` with two test-only additions, so the secret scan knows the plaintext values the
simulator itself only keeps as digests:

- every authorization code, refresh token and access token the simulator issues;
- every credential a client sends it: ``client_secret``, ``assertion``, ``code``, ``code_verifier``,
  ``refresh_token`` and ``token`` form fields, and bearer ``Authorization`` headers.

Each value is appended to PATH as one JSON line ``{"kind": ..., "value": ...}``. The simulator's code is
not modified; the recorder wraps three ``TokenStore`` methods and adds one aiohttp middleware.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

RECEIVED_FIELDS = ("client_secret", "assertion", "code", "code_verifier", "refresh_token", "token")


class Recorder:
    """Appends credential values to a JSON-lines file (flushed at once: the process may be killed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, kind: str, value: str | None) -> None:
        if not value:
            return
        line = json.dumps({"kind": kind, "value": value}) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)


def _wrap_token_store(record: Recorder) -> None:
    from salesforce_sim import tokens

    store = tokens.TokenStore
    new_code, rotate, issue_session = store.new_code, store.rotate, store.issue_session

    def new_code_recorded(self: Any, code: Any) -> str:
        value = new_code(self, code)
        record("authorization_code", value)
        return value

    def rotate_recorded(self: Any, grant: Any) -> str:
        value = rotate(self, grant)
        record("refresh_token", value)
        return value

    def issue_session_recorded(self: Any, **kwargs: Any) -> str:
        value = issue_session(self, **kwargs)
        record("access_token", value)
        return value

    store.new_code = new_code_recorded  # type: ignore[method-assign]
    store.rotate = rotate_recorded  # type: ignore[method-assign]
    store.issue_session = issue_session_recorded  # type: ignore[method-assign]


def _receiving_middleware(record: Recorder) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "oauth"):
            record("received_bearer", value.strip())
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()  # cached: the handler reads the same body again
            for name in RECEIVED_FIELDS:
                field = form.get(name)
                if isinstance(field, str):
                    record(f"received_{name}", field)
        return await handler(request)

    return middleware


def main(argv: list[str]) -> int:
    if "--record" not in argv:
        print("usage: python -m tests.fault.recording_sim --record PATH [simulator args]", file=sys.stderr)
        return 2
    at = argv.index("--record")
    record = Recorder(Path(argv[at + 1]))
    rest = argv[:at] + argv[at + 2 :]
    _wrap_token_store(record)

    import salesforce_sim.__main__ as sim_main

    create_app = sim_main.create_app

    def create_recording_app(*args: Any, **kwargs: Any) -> web.Application:
        app = create_app(*args, **kwargs)
        app.middlewares.append(_receiving_middleware(record))
        return app

    sim_main.create_app = create_recording_app
    return sim_main.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
