"""Run the simulator in-process on a free port: in the test's event loop, or in a thread for blocking clients."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from .app import SoapObserver, create_app
from .common import STATE_KEY
from .state import SimState


class SimulatorURL(str):
    """The base URL (a plain string) carrying the live ``state`` and, with TLS, the ``ca_file`` to trust."""

    state: SimState
    ca_file: str | None

    def __new__(cls, url: str, state: SimState, ca_file: str | None = None) -> SimulatorURL:
        obj = super().__new__(cls, url)
        obj.state = state
        obj.ca_file = ca_file
        return obj

    def org_url(self, org_key: str) -> str:
        """An org's My Domain / instance URL."""
        return f"{self}/org/{org_key}"


@asynccontextmanager
async def running_simulator(
    state_or_config: Any = None,
    *,
    tls: bool = False,
    host: str = "127.0.0.1",
    soap_observer: SoapObserver | None = None,
) -> AsyncIterator[SimulatorURL]:
    """Serve the simulator on a free port of ``host`` for the duration of the block; yields its base URL."""
    app = create_app(state_or_config, soap_observer=soap_observer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with tempfile.TemporaryDirectory(prefix="sim-tls-") as tmp:
        ssl_context, ca_file = None, None
        if tls:
            from .tls import server_context

            ssl_context, cert = server_context(Path(tmp), (host, "localhost"))
            ca_file = str(cert)
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        try:
            await site.start()
            port = runner.addresses[0][1]
            scheme = "https" if tls else "http"
            yield SimulatorURL(f"{scheme}://{host}:{port}", app[STATE_KEY], ca_file)
        finally:
            server = runner.server
            transports = [h.transport for h in server.connections] if server is not None else []
            await runner.cleanup()
            # Idle keep-alive clients never answer a TLS close_notify: drop their sockets now rather than
            # leave them to the garbage collector after the loop is gone.
            for transport in transports:
                if transport is not None:
                    transport.abort()
            await asyncio.sleep(0)


@contextmanager
def simulator_in_thread(
    state_or_config: Any = None,
    *,
    tls: bool = False,
    host: str = "127.0.0.1",
    soap_observer: SoapObserver | None = None,
    start_timeout: float = 10.0,
) -> Iterator[SimulatorURL]:
    """The simulator in a background thread with its own event loop (for blocking clients like requests)."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            box["loop"], box["stop"] = asyncio.get_running_loop(), stop
            try:
                async with running_simulator(
                    state_or_config, tls=tls, host=host, soap_observer=soap_observer
                ) as url:
                    box["url"] = url
                    ready.set()
                    await stop.wait()
            except BaseException as exc:
                box["error"] = exc
                ready.set()

        asyncio.run(main())

    thread = threading.Thread(target=run, name="salesforce-sim", daemon=True)
    thread.start()
    if not ready.wait(start_timeout) or "error" in box:
        raise RuntimeError("the simulator did not start") from box.get("error")
    try:
        yield box["url"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(start_timeout)
