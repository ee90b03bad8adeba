"""Hand-written fakes of the Manager's own ports (in-memory, same compare-and-set rules as MongoDB)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from manager.apikeys import ApiKey
from manager.documents import connection_from_doc, connection_to_doc
from manager.domain import Connection, ConnectionStatus
from manager.errors import ConcurrentUpdate, NameTaken, StoreUnavailable
from manager.idempotency import IdempotencyRecord, StoredResponse
from manager.repository import Integration, RotationItem

from shared.contracts import Contract
from shared.crypto import Keyring, generate_key
from shared.sealing import Opener, Sealer, generate_recipient_key


class FakeClock:
    """A settable UTC clock (milliseconds, like BSON)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Outage:
    """Shared switch: while ``down`` every fake store raises StoreUnavailable."""

    def __init__(self) -> None:
        self.down = False

    def check(self) -> None:
        if self.down:
            raise StoreUnavailable("database unavailable (fake outage)", retry_after=5)


class FakeConnections:
    """Connections kept as stored documents, so mapping bugs show up here too."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.outage = outage or Outage()
        self.saves = 0

    async def add(
        self,
        connection: Connection,
        *,
        idempotency_ref: str | None = None,
        idempotency_fingerprint: str | None = None,
    ) -> None:
        self.outage.check()
        doc = connection_to_doc(connection)
        if any(d.get("name_key") == doc.get("name_key") for d in self.docs.values()):
            raise NameTaken(f"a connection named {connection.name!r} already exists")
        if idempotency_ref is not None:
            doc["idempotency_ref"] = idempotency_ref
            doc["idempotency_fingerprint"] = idempotency_fingerprint
        self.docs[connection.id] = doc

    async def find_by_idempotency_ref(self, ref: str) -> tuple[Connection, str | None] | None:
        self.outage.check()
        doc = next((d for d in self.docs.values() if d.get("idempotency_ref") == ref), None)
        return (connection_from_doc(doc), doc.get("idempotency_fingerprint")) if doc else None

    async def get(self, connection_id: str) -> Connection | None:
        self.outage.check()
        doc = self.docs.get(connection_id)
        return connection_from_doc(doc) if doc else None

    async def page(
        self, *, limit: int, after: str | None, statuses: frozenset[ConnectionStatus] | None = None
    ) -> list[Connection]:
        self.outage.check()
        wanted = None if statuses is None else {s.value for s in statuses}
        ids = sorted(
            i
            for i, doc in self.docs.items()
            if (after is None or i > after) and (wanted is None or doc["status"] in wanted)
        )[:limit]
        return [connection_from_doc(self.docs[i]) for i in ids]

    async def save(self, connection: Connection, *, expected_version: int) -> None:
        self.outage.check()
        doc = self.docs.get(connection.id)
        if doc is None or doc["version"] != expected_version:
            raise ConcurrentUpdate(f"connection {connection.id} changed")
        new = connection_to_doc(connection)
        for kept in ("refresh_lease", "idempotency_ref", "idempotency_fingerprint"):
            if kept in doc:
                new[kept] = doc[kept]
        if connection.status is ConnectionStatus.DELETED:
            new.pop("name_key", None)
        self.docs[connection.id] = new
        self.saves += 1

    async def mark_published(self, connection_id: str, message_id: str, *, at: datetime) -> bool:
        self.outage.check()
        doc = self.docs.get(connection_id)
        if doc and doc.get("command") and doc["command"]["message_id"] == message_id:
            doc["command"]["published_at"] = at
            doc["command"]["publishes"] = doc["command"].get("publishes", 0) + 1
            return True
        return False

    async def due_commands(
        self, *, recorded_before: datetime, published_before: datetime, limit: int
    ) -> list[Connection]:
        self.outage.check()
        out = []
        for i in sorted(self.docs):
            d = self.docs[i]
            c = d.get("command")
            if d["status"] not in ("pending", "deleting") or not c:
                continue
            if (c["published_at"] is None and c["recorded_at"] < recorded_before) or (
                c["published_at"] is not None and c["published_at"] < published_before
            ):
                out.append(connection_from_doc(d))
        return out[:limit]

    async def claim_command(
        self, connection_id: str, message_id: str, *, new_message_id: str, now: datetime
    ) -> bool:
        self.outage.check()
        d = self.docs.get(connection_id)
        if not d or not d.get("command") or d["command"]["message_id"] != message_id:
            return False
        c = d["command"]
        c.update(message_id=new_message_id, recorded_at=now, published_at=None, attempts=c["attempts"] + 1)
        return True

    async def acquire_refresh_lease(
        self, connection_id: str, *, holder: str, until: datetime, now: datetime
    ) -> bool:
        self.outage.check()
        d = self.docs.get(connection_id)
        if not d or d["status"] != "active":
            return False
        lease = d.get("refresh_lease")
        if lease is not None and lease["until"] >= now:
            return False
        d["refresh_lease"] = {"holder": holder, "until": until, "since": now}
        return True

    async def release_refresh_lease(self, connection_id: str, *, holder: str) -> None:
        self.outage.check()
        d = self.docs.get(connection_id)
        if d and d.get("refresh_lease") and d["refresh_lease"]["holder"] == holder:
            d["refresh_lease"] = None

    async def tokens_to_rotate(self, *, active_kid: str, after: str | None, limit: int) -> list[RotationItem]:
        self.outage.check()
        out = []
        for i in sorted(self.docs):
            d = self.docs[i]
            token = d.get("token")
            if (
                (after is None or i > after)
                and token
                and not token["ciphertext"].startswith(f"v1.{active_kid}.")
            ):
                out.append(RotationItem(i, d["version"], token["ciphertext"]))
        return out[:limit]

    async def count_tokens_to_rotate(self, *, active_kid: str) -> int:
        self.outage.check()
        return len(await self.tokens_to_rotate(active_kid=active_kid, after=None, limit=len(self.docs) + 1))

    async def replace_ciphertext(self, item: RotationItem, new_ciphertext: str) -> bool:
        self.outage.check()
        d = self.docs.get(item.connection_id)
        if not d or d["version"] != item.version or not d.get("token"):
            return False
        if d["token"]["ciphertext"] != item.ciphertext:
            return False
        d["token"]["ciphertext"] = new_ciphertext
        d["version"] += 1
        return True


class FakeIntegrations:
    def __init__(self, outage: Outage | None = None) -> None:
        self.items: dict[str, Integration] = {}
        self.outage = outage or Outage()

    async def associate(self, name: str, connection_id: str, *, now: datetime) -> Integration:
        self.outage.check()
        old = self.items.get(name)
        self.items[name] = Integration(name, connection_id, old.created_at if old else now, now)
        return self.items[name]

    async def get(self, name: str) -> Integration | None:
        self.outage.check()
        return self.items.get(name)


class FakeApiKeys:
    def __init__(self, outage: Outage | None = None) -> None:
        self.by_id: dict[str, tuple[ApiKey, str]] = {}
        self.outage = outage or Outage()
        self.lookups = 0

    async def add(self, key: ApiKey, *, digest: str) -> None:
        self.outage.check()
        self.by_id[key.id] = (key, digest)

    async def find_by_digest(self, digest: str) -> tuple[ApiKey, str] | None:
        self.outage.check()
        self.lookups += 1
        return next(((k, d) for k, d in self.by_id.values() if d == digest), None)

    async def revoke(self, key_id: str, *, now: datetime) -> bool:
        self.outage.check()
        found = self.by_id.get(key_id)
        if found is None or found[0].revoked_at is not None:
            return False
        self.by_id[key_id] = (dataclasses.replace(found[0], revoked_at=now), found[1])
        return True

    async def all(self) -> list[ApiKey]:
        return [k for k, _ in self.by_id.values()]


class FakeIdempotency:
    """``fail_complete`` makes the next ``complete`` raise, as a process killed at that point would."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.outage = outage or Outage()
        self.fail_complete = False

    async def begin(
        self, key: str, *, fingerprint: str, now: datetime, stale_before: datetime
    ) -> IdempotencyRecord | None:
        self.outage.check()
        rec = self.records.get(key)
        stale = rec is not None and rec["response"] is None and rec["created_at"] < stale_before
        if rec is None or (stale and rec["fingerprint"] == fingerprint):
            self.records[key] = {"fingerprint": fingerprint, "response": None, "created_at": now}
            return None
        return IdempotencyRecord(rec["fingerprint"], rec["response"])

    async def complete(self, key: str, response: StoredResponse) -> None:
        self.outage.check()
        if self.fail_complete:
            self.fail_complete = False
            raise StoreUnavailable("database unavailable (fake crash before complete)", retry_after=5)
        self.records[key]["response"] = response

    async def abandon(self, key: str) -> None:
        rec = self.records.get(key)
        if rec is not None and rec["response"] is None:
            del self.records[key]


@dataclasses.dataclass
class Sent:
    command: Contract
    reply_to: str
    message_id: str | None
    request_id: str | None


class FakePublisher:
    """Records commands; ``fail_with`` makes the next publishes raise."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.fail_with: Exception | None = None

    async def send_command(
        self,
        command: Contract,
        *,
        reply_to: str,
        correlation_id: str | None = None,
        request_id: str | None = None,
        message_id: str | None = None,
    ) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(Sent(command, reply_to, message_id, request_id))
        return message_id or f"m{len(self.sent)}"


class FakeRpc:
    """Answers each call with ``answer(command)`` after ``delay`` seconds; counts calls."""

    def __init__(self, answer: Callable[[Any], Awaitable[Contract]], delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls: list[Contract] = []
        self.deadlines: list[float] = []

    async def call(self, command: Contract, *, deadline: float, request_id: str | None = None) -> Contract:
        self.calls.append(command)
        self.deadlines.append(deadline)
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self.answer(command)


@dataclasses.dataclass(frozen=True)
class Keys:
    """A keyring, the Manager's opener and the Builder's sealer that matches it."""

    keyring: Keyring
    opener: Opener
    sealer: Sealer
    encryption_entry: str
    private_entry: str


def make_keys(kid: str = "k1", recipient: str = "r1") -> Keys:
    enc = f"{kid}:{generate_key()}"
    private, public = generate_recipient_key(recipient)
    return Keys(Keyring.parse(enc), Opener.parse(private), Sealer.parse(public), enc, private)
