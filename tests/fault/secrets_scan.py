"""The secret scan: every credential a stack issued, searched for in its database, queues and logs.

Secrets come from our own side, never from the services: the recording simulator's file (every access
token, refresh token and authorization code it issued, every client secret, JWT assertion and bearer
token it received), the stack's own configuration (client secret, admin key, encryption keys, the
Manager's private key), the API keys the harness minted, the tokens the Manager served to the test, and
the Builder's per-connection private keys and org tokens, decrypted from its database with its keyring.

Places searched: the raw BSON of every document of every database the stack's services use (read from
each service's MONGODB_URL and MONGODB_DATABASE, so a Builder with a server of its own is covered), every message waiting in every queue
of the stack's prefix (dead letters included; read with basic_get and requeued, headers included), and
every log file of the stack.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

from shared.crypto import Keyring
from tests.fault.harness import FaultStack

MIN_SECRET_LENGTH = 16
DATABASES = ("sfconnect_manager", "sfconnect_builder")


def databases(stack: FaultStack, services: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(MongoDB URL, database name) of every service of the stack (or of ``services``), from the
    environment it was started with; the default databases on the stack's own server are always in."""
    found: set[tuple[str, str]] = set()
    for name in stack.services() if services is None else services:
        env = stack.procs[name].env
        url, db = env.get("MONGODB_URL") or stack.mongodb_url, env.get("MONGODB_DATABASE")
        if url and db:
            found.add((url, db))
    if services is None and stack.mongodb_url:
        found.update((stack.mongodb_url, db) for db in DATABASES)
    return sorted(found)


def where(url: str, db: str) -> str:
    """A database named by its host and port only (never a password a URL may hold)."""
    return f"{db}@{urllib.parse.urlsplit(url).netloc.rpartition('@')[2]}"


@dataclass
class Secrets:
    """Plaintext credentials by kind."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str | None) -> None:
        if value and len(value) >= MIN_SECRET_LENGTH:
            self.values.setdefault(kind, set()).add(value)

    def add_pem(self, kind: str, pem: str | None) -> None:
        """A PEM private key: its base64 body joined, and each full body line (any one is a leak)."""
        if not pem:
            return
        lines = [ln for ln in pem.strip().splitlines() if ln and not ln.startswith("-----")]
        self.add(kind, "".join(lines))
        for line in lines:
            if len(line) >= 48:
                self.add(f"{kind}_line", line)

    def needles(self) -> list[tuple[str, bytes]]:
        """Each value as bytes, plus its URL-encoded and JSON-escaped forms when they differ."""
        out: dict[bytes, str] = {}
        for kind, values in self.values.items():
            for value in values:
                for form in {value, urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1]}:
                    out.setdefault(form.encode(), kind)
        return [(kind, needle) for needle, kind in out.items()]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.values.items())}


@dataclass
class Haystack:
    """Where a secret could leak: named byte blobs."""

    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)
    documents: int = 0
    messages: int = 0
    log_bytes: int = 0


def _config_secrets(stack: FaultStack, secrets: Secrets) -> None:
    secrets.add("builder_client_secret", stack.builder_client_secret)
    secrets.add("builder_admin_api_key", stack.admin_api_key)
    for entry in (stack.manager_keys, stack.builder_keys, stack.recipient[0]):
        for item in entry.split(","):
            secrets.add("configured_key", item.partition(":")[2])
    for key in stack.api_keys:
        secrets.add("manager_api_key", key)


def _recorded_secrets(stack: FaultStack, secrets: Secrets) -> None:
    if not stack.record_path.exists():
        return
    for line in stack.record_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            secrets.add(item["kind"], item["value"])


async def harvest_builder_secrets(stack: FaultStack) -> None:
    """Decrypt what the Builder keeps encrypted (private keys, org tokens) into ``stack.harvested``.

    Called at the end and, for flows that delete connections (and so their keys), while they run.
    """
    builder_dbs = databases(stack, stack.builders()) or [(str(stack.mongodb_url), "sfconnect_builder")]
    for url, name in builder_dbs:
        await _harvest_one(stack, url, name)


async def _harvest_one(stack: FaultStack, url: str, name: str) -> None:
    keyring = Keyring.parse(stack.builder_keys)
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, serverSelectionTimeoutMS=10_000)
    found = stack.harvested
    try:
        db = client[name]
        async for doc in db["connections"].find({}):
            cid = doc["_id"]
            if doc.get("private_key"):
                pem = keyring.decrypt(doc["private_key"], record_id=cid, field="private_key")
                found.add(("connection_private_key", pem))
            if doc.get("last_access_token"):
                token = keyring.decrypt(doc["last_access_token"], record_id=cid, field="access_token")
                found.add(("access_token", token))
        async for doc in db["orgs"].find({}):
            key = doc["_id"]
            for name in ("refresh_token", "access_token"):
                if doc.get(name):
                    value = keyring.decrypt(doc[name], record_id=key, field=name)
                    found.add((f"builder_org_{name}", value))
    finally:
        await client.close()


async def keep_harvesting(stack: FaultStack, every_s: float = 0.3) -> None:
    """Harvest until cancelled (run it as a task beside a flow that deletes connections)."""
    while True:
        await harvest_builder_secrets(stack)
        await asyncio.sleep(every_s)


async def collect_secrets(stack: FaultStack, served_tokens: Iterable[str] = ()) -> Secrets:
    secrets = Secrets()
    _config_secrets(stack, secrets)
    _recorded_secrets(stack, secrets)
    for token in served_tokens:
        secrets.add("served_access_token", token)
    await harvest_builder_secrets(stack)
    for kind, secret in stack.harvested:
        if kind == "connection_private_key":
            secrets.add_pem(kind, secret)
        else:
            secrets.add(kind, secret)
    return secrets


async def _database_blobs(stack: FaultStack, hay: Haystack) -> None:
    for url, name in databases(stack):
        client: AsyncMongoClient[Any] = AsyncMongoClient(
            url, document_class=RawBSONDocument, serverSelectionTimeoutMS=10_000
        )
        try:
            db = client[name]
            for coll in await db.list_collection_names():
                async for doc in db[coll].find({}):
                    hay.blobs.append((f"db {where(url, name)}.{coll}", bytes(doc.raw)))
                    hay.documents += 1
        finally:
            await client.close()
        hay.databases.append(where(url, name))


def _queues_with_prefix(prefix: str) -> list[str]:
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [q.strip() for q in out.stdout.splitlines() if q.strip().startswith(prefix)]


async def _queue_blobs(stack: FaultStack, hay: Haystack) -> None:
    queues = await asyncio.to_thread(_queues_with_prefix, stack.amqp_prefix)
    conn = await aio_pika.connect(stack.amqp_url, timeout=10)
    try:
        for name in queues:
            channel = await conn.channel()
            queue = await channel.get_queue(name, ensure=True)
            while (message := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
                headers = repr(sorted((message.headers or {}).items())).encode()
                props = repr((message.correlation_id, message.reply_to, message.type)).encode()
                hay.blobs.append((f"queue {name}", message.body + headers + props))
                hay.messages += 1
            await channel.close()  # every message got is requeued
    finally:
        await conn.close()


def _log_blobs(stack: FaultStack, hay: Haystack) -> None:
    for path in sorted(stack.logs_dir.glob("*.log")):
        data = path.read_bytes()
        hay.blobs.append((f"log {path.name}", data))
        hay.log_bytes += len(data)


@dataclass
class ScanReport:
    """What was searched for, where, and every hit (kind of secret, place)."""

    secrets: dict[str, int]
    databases: list[str]
    documents: int
    messages: int
    log_bytes: int
    hits: list[tuple[str, str]]

    def figures(self) -> dict[str, Any]:
        return {
            "secrets_checked": self.secrets,
            "databases_scanned": self.databases,
            "documents_scanned": self.documents,
            "queued_messages_scanned": self.messages,
            "log_bytes_scanned": self.log_bytes,
            "hits": len(self.hits),
            "hit_places": sorted({f"{kind} in {where}" for kind, where in self.hits}),
        }


async def scan(stack: FaultStack, served_tokens: Iterable[str] = ()) -> ScanReport:
    """Search every place for every secret; a hit names the kind of secret and the place only."""
    secrets = await collect_secrets(stack, served_tokens)
    hay = Haystack()
    await _database_blobs(stack, hay)
    await _queue_blobs(stack, hay)
    _log_blobs(stack, hay)
    hits = []
    needles = secrets.needles()
    for where, blob in hay.blobs:
        for kind, needle in needles:
            if needle in blob:
                hits.append((kind, where))
    return ScanReport(secrets.counts(), hay.databases, hay.documents, hay.messages, hay.log_bytes, hits)
