"""A running Builder (real broker, real MongoDB-wire server) against the in-process Salesforce simulator."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from builder.app import RUNNING, build_app
from builder.settings import BuilderSettings
from pymongo import AsyncMongoClient
from salesforce_sim.model import SimConfig
from salesforce_sim.testing import SimulatorURL, running_simulator

from shared.amqp import Publisher, Topology, connect
from shared.contracts import Contract, CreateConnection, decode
from shared.crypto import Keyring, generate_key
from shared.logging import configure_logging
from shared.sealing import Opener, generate_recipient_key
from tests.infra import free_port
from tests.integration import sim_wsdl

ADMIN_KEY = "integration-admin-key-0123456789"
RECIPIENT_PRIVATE, RECIPIENT_PUBLIC = generate_recipient_key("mgr1")
ACME_ADMIN = "admin@acme.example"
BOT = "integration+bot@acme.example"
OBRIEN = "o'brien&co+sales@acme.example"
FORMER = "former.employee@acme.example"


def sim_config(callback_url: str, **org_knobs: Any) -> SimConfig:
    """The simulator's default orgs, auto-approving, with the Builder's callback registered."""
    from salesforce_sim.config import default_config

    cfg = default_config()
    data = cfg.model_dump()
    data["auto_approve"] = True
    data["builder_app"]["callback_urls"] = [callback_url]
    for org in data["orgs"]:
        org["knobs"].update(org_knobs)
    return SimConfig.model_validate(data)


@dataclass
class BuilderRig:
    """Handles on everything a Builder integration test touches."""

    builder: str
    sim: SimulatorURL
    settings: BuilderSettings
    app: web.Application
    http: aiohttp.ClientSession
    topology: Topology
    amqp: aio_pika.abc.AbstractRobustConnection
    publisher: Publisher
    replies: aio_pika.abc.AbstractQueue
    db: Any
    logs: io.StringIO
    keyring: Keyring
    server: TestServer
    opener: Opener = field(default_factory=lambda: Opener.parse(RECIPIENT_PRIVATE))

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def knobs(self, org_key: str, **values: Any) -> None:
        async with self.http.patch(f"{self.sim}/__sim/orgs/{org_key}", json=values) as resp:
            assert resp.status == 200, await resp.text()

    async def sim_post(self, path: str, payload: Any = None) -> Any:
        async with self.http.post(f"{self.sim}{path}", json=payload) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()

    async def sim_apps(self, org_key: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.sim}/__sim/orgs/{org_key}/apps") as resp:
            return list((await resp.json())["apps"])

    async def authorize_url(self, org_key: str = "acme", *, method: str = "GET") -> str:
        """Start an authorization with the admin key: the Salesforce URL (GET's 302, or POST's JSON)."""
        url = f"{self.builder}/v1/salesforce/authorize"
        params = {"login_url": self.sim.org_url(org_key)}
        async with self.http.request(
            method, url, params=params, headers=self.admin, allow_redirects=False
        ) as resp:
            if method == "POST":
                assert resp.status == 200, await resp.text()
                return str((await resp.json())["authorize_url"])
            assert resp.status == 302, await resp.text()
            return resp.headers["Location"]

    async def authorize(self, org_key: str = "acme", *, method: str = "GET") -> str:
        """Run authorize → Salesforce consent (auto-approved) → callback; returns the callback page."""
        location = await self.authorize_url(org_key, method=method)
        async with self.http.get(location, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            callback = resp.headers["Location"]
        async with self.http.get(callback, allow_redirects=False) as resp:
            page = await resp.text()
            assert resp.status == 200, page
            return page

    def org_id(self, org_key: str = "acme") -> str:
        org = self.sim.state.org(org_key)
        assert org is not None
        return org.org_id

    async def send(self, command: Contract, **kw: Any) -> str:
        return await self.publisher.send_command(command, reply_to=self.topology.replies_queue, **kw)

    async def reply(self, within: float = 20.0) -> Contract:
        """The next reply on the replies queue (polled with a deadline)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            msg = await self.replies.get(no_ack=True, fail=False)
            if msg is not None:
                return decode(msg.type, msg.body, msg.content_type)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reply within {within}s")

    def create(self, connection_id: str, username: str = BOT, **kw: Any) -> CreateConnection:
        values: dict[str, Any] = {
            "connection_id": connection_id,
            "org_id": self.org_id("acme"),
            "salesforce_username": username,
            "admin_email": "admin@acme.example.com",
            "label": "Acme <integration> & 'friends'",
            "recipient_key_id": "mgr1",
        }
        values.update(kw)
        return CreateConnection(**values)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line.strip()]


@asynccontextmanager
async def builder_rig(
    *,
    mongodb_url: str,
    database: str,
    amqp_url: str,
    prefix: str,
    org_knobs: dict[str, Any] | None = None,
    retry_delays: tuple[int, ...] = (1,),
    **overrides: Any,
) -> AsyncIterator[BuilderRig]:
    """Start the simulator, then the Builder (HTTP on a free port + consumer), then a test publisher."""
    logs = io.StringIO()
    configure_logging("builder-test", "DEBUG", json=True, stream=logs)
    port = free_port()
    callback = f"http://127.0.0.1:{port}/v1/salesforce/callback"
    topology = Topology(prefix=prefix, retry_delays=retry_delays)
    soap: list[
        tuple[bytes, bytes, int]
    ] = []  # every SOAP exchange, checked against the WSDL's XSD at the end
    async with running_simulator(
        sim_config(callback, **(org_knobs or {})),
        soap_observer=lambda request, response, status: soap.append((request, response, status)),
    ) as sim:
        key = generate_key()
        values: dict[str, Any] = {
            "mongodb_url": mongodb_url,
            "mongodb_database": database,
            "amqp_url": amqp_url,
            "amqp_prefix": prefix,
            "encryption_keys": f"k1:{key}",
            "recipient_public_keys": RECIPIENT_PUBLIC,
            "admin_api_key": ADMIN_KEY,
            "salesforce_client_id": sim.state.builder_app.consumer_key,
            "salesforce_client_secret": sim.state.builder_app.consumer_secret,
            "salesforce_callback_url": callback,
            "salesforce_login_url": str(sim),
            "salesforce_allowed_login_urls": ",".join(sim.org_url(k) for k in sim.state.orgs),
            "salesforce_timeout_seconds": 5,
            "propagation_retry_seconds": 1,
            "deploy_poll_seconds": 0.05,
            "command_max_attempts": 4,
            "shutdown_drain_seconds": 5,
            "instance_id": "builder-test",
        }
        values.update(overrides)
        settings = BuilderSettings(**values)
        app = build_app(settings, topology=topology)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server(access_log=None)
        mongo: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_url, tz_aware=True)
        amqp = await connect(amqp_url, name="builder-test-client")
        try:
            publisher = Publisher(amqp, topology, app_id="manager")
            await publisher.start()
            channel = await amqp.channel()
            replies = await topology.declare_queue(channel, topology.replies_queue)
            async with aiohttp.ClientSession() as http:
                rig = BuilderRig(
                    builder=f"http://127.0.0.1:{port}",
                    sim=sim,
                    settings=settings,
                    app=app,
                    http=http,
                    topology=topology,
                    amqp=amqp,
                    publisher=publisher,
                    replies=replies,
                    db=mongo[database],
                    logs=logs,
                    keyring=Keyring.parse(f"k1:{key}"),
                    server=server,
                )
                yield rig
            assert_no_secret_shapes(logs.getvalue())
            assert_valid_soap(soap)
        finally:
            await server.close()
            cleanup = await amqp.channel()
            await topology.delete_all(cleanup)
            await amqp.close()
            await mongo.close()


def running(rig: BuilderRig) -> Any:
    return rig.app[RUNNING]


_SECRET_SHAPES = {
    "a Salesforce session token": re.compile(r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._\-]{10,}"),
    "a JWT (assertion)": re.compile(r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"),
    "a PEM block": re.compile(r"-----BEGIN [A-Z ]+-----"),
    "a refresh token": re.compile(r"5Aep861[A-Za-z0-9._\-]{10,}"),
    "an authorization code": re.compile(r"code=aPrx"),
}


def assert_valid_soap(exchanges: list[tuple[bytes, bytes, int]]) -> None:
    """The Builder's Metadata API requests and the simulator's answers all validate against the XSD of
    the Salesforce WSDL that simple-salesforce bundles (tests/integration/sim_wsdl.py)."""
    for request, response, status in exchanges:
        for what, message in (("request", request), (f"response ({status})", response)):
            try:
                sim_wsdl.validate(message)
            except AssertionError as exc:
                raise AssertionError(f"SOAP {what} does not validate: {exc}\n{message[:600]!r}") from None


def assert_no_secret_shapes(text: str) -> None:
    """Every Builder test ends by scanning what the Builder logged for anything shaped like a secret."""
    for what, pattern in _SECRET_SHAPES.items():
        found = pattern.search(text)
        assert found is None, (
            f"{what} appears in the Builder's logs: ...{text[max(0, found.start() - 80) : found.end()]}"
        )
