"""The steps of creating a connection's app (DESIGN §4 steps 1 to 5), each safe to run again on redelivery."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from builder.ports import AppReadback, CreateOutcome, OrgPort, SfUser
from builder.salesforce import apps
from builder.salesforce.certs import certificate_body, same_certificate
from builder.salesforce.errors import SalesforceApiError
from builder.settings import BuilderSettings
from builder.store import ConnectionRecord, ConnectionStatus, Store
from shared.contracts import AppKind, ErrorCode, utcnow
from shared.errors import PermanentError, RetryableError
from shared.logging import get_logger

log = get_logger(__name__)
ECA = AppKind.EXTERNAL_CLIENT_APP.value
CA = AppKind.CONNECTED_APP.value
_KEY_ALPHABET = string.ascii_letters + string.digits


def fail(code: ErrorCode, message: str) -> PermanentError:
    """A permanent error with one of the stable codes."""
    return PermanentError(message, code=code.value)


@contextlib.contextmanager
def step(code: ErrorCode, what: str) -> Iterator[None]:
    """Turn a plain Salesforce refusal inside a step into the step's stable code; keep the rest as they are."""
    try:
        yield
    except SalesforceApiError as exc:
        if exc.code != SalesforceApiError.code:
            raise
        raise fail(code, f"{what}: {exc.message}") from None


def new_consumer_key() -> str:
    """A consumer key for a ConnectedApp: alphanumeric, 48 characters, random (so globally unique)."""
    return "sfc" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(45))


async def resolve_user(org: OrgPort, username: str) -> SfUser:
    """Step 1: the user must exist and be active."""
    with step(ErrorCode.USER_NOT_FOUND, f"looking up user {username}"):
        user = await org.find_user(username)
    org_id = org.authorization.org_id
    if user is None:
        raise fail(
            ErrorCode.USER_NOT_FOUND,
            f"no user with username {username} in org {org_id}; check the spelling (usernames are "
            "email-shaped but may differ from the email address)",
        )
    if not user.is_active:
        raise fail(
            ErrorCode.USER_INACTIVE,
            f"user {username} in org {org_id} is inactive; an admin must activate the user or pick another",
        )
    return user


async def preauthorize(org: OrgPort, record: ConnectionRecord, store: Store) -> None:
    """Step 3: a permission set for the connection, assigned to the user."""
    what = f"pre-authorizing {record.username} with permission set {record.permission_set_name}"
    with step(ErrorCode.PREAUTHORIZATION_FAILED, what):
        if not record.permission_set_id:
            label = apps.clean_label(f"sfconnect {record.label}", record.permission_set_name)
            record.permission_set_id = await org.ensure_permission_set(record.permission_set_name, label)
            await store.save_connection(record)
        await org.ensure_assignment(record.user_id, record.permission_set_id)


def kinds_to_try(requested: str, support: dict[str, bool], preference: str) -> list[str]:
    """Which app kinds to try, in order: an explicit kind alone; ``auto`` from what the org is known to allow."""
    if requested in (ECA, CA):
        return [requested]
    other = CA if preference == ECA else ECA
    order = [preference, other]
    known_good = [k for k in order if support.get(k) is True]
    allowed = known_good + [k for k in order if k not in known_good and support.get(k) is not False]
    return allowed or order


@dataclass
class AppCreator:
    """Step 4: create the app (ECA deploy or ConnectedApp createMetadata), falling back under ``auto``."""

    org: OrgPort
    store: Store
    settings: BuilderSettings
    clock: Callable[[], datetime] = utcnow

    def spec(self, record: ConnectionRecord) -> apps.AppSpec:
        return apps.AppSpec(
            full_name=record.full_name,
            label=apps.clean_label(record.label, record.full_name),
            contact_email=record.admin_email,
            callback_url=self.settings.salesforce_callback_url,
            certificate_body=certificate_body(record.certificate_pem),
            permission_set_name=record.permission_set_name,
            consumer_key=record.consumer_key,
            permission_set_id=record.permission_set_id or "",
        )

    async def ensure(self, record: ConnectionRecord) -> None:
        org_id = self.org.authorization.org_id
        support = self.org.authorization.app_kind_support
        kinds = kinds_to_try(record.requested_kind, support, self.settings.app_kind_preference)
        if record.status is ConnectionStatus.APP_REQUESTED and record.app_kind in kinds:
            kinds.remove(record.app_kind)
            kinds.insert(0, record.app_kind)  # resume what an earlier delivery started
        refusals: list[str] = []
        for kind in kinds:
            if record.app_kind != kind:
                record.app_kind, record.deploy_id = kind, None
            record.status = ConnectionStatus.APP_REQUESTED
            await self.store.save_connection(record)
            with step(ErrorCode.APP_CREATION_FAILED, f"creating {kind} {record.full_name} in org {org_id}"):
                blocked = await (self._connected_app(record) if kind == CA else self._eca(record))
            if blocked is None:
                await self.store.remember_app_kind(org_id, kind, True)
                record.status, record.app_created_at = ConnectionStatus.APP_CREATED, self.clock()
                await self.store.save_connection(record)
                return
            log.info("org does not allow this app kind", kind=kind, org_id=org_id, detail=blocked)
            await self.store.remember_app_kind(org_id, kind, False)
            refusals.append(f"{kind}: {blocked}")
        raise fail(
            ErrorCode.APP_CREATION_BLOCKED,
            f"org {org_id} does not allow creating a {' or '.join(kinds)} ({'; '.join(refusals)}); "
            "an admin must enable External Client Apps, or ask Salesforce Support to allow connected apps",
        )

    async def _connected_app(self, record: ConnectionRecord) -> str | None:
        if await self.org.read_app(CA, record.full_name) is not None:
            return None
        result = await self.org.create_connected_app(self.spec(record))
        return (result.message or "blocked") if result.outcome is CreateOutcome.BLOCKED else None

    async def _eca(self, record: ConnectionRecord) -> str | None:
        if record.deploy_id is None:
            if await self.org.read_app(ECA, record.full_name) is not None:
                return None
            record.deploy_id = await self.org.start_eca_deploy(self.spec(record))
            await self.store.save_connection(record)
        deadline = time.monotonic() + self.settings.salesforce_timeout_seconds * 2
        while True:
            status = await self.org.eca_deploy_status(record.deploy_id)
            if status.done:
                break
            if time.monotonic() > deadline:
                raise RetryableError(
                    f"deploy {record.deploy_id} of {record.full_name} is still {status.status or 'running'}",
                    code=ErrorCode.SALESFORCE_UNAVAILABLE.value,
                    retry_after=5,
                )
            await asyncio.sleep(self.settings.deploy_poll_seconds)
        if status.success:
            return None
        detail = status.describe()
        record.deploy_id = None
        await self.store.save_connection(record)
        if apps.eca_unavailable(detail):
            return detail
        raise fail(
            ErrorCode.APP_CREATION_FAILED,
            f"deploying External Client App {record.full_name} failed: {detail}",
        )


def _links_permission_set(linked: tuple[str, ...], record: ConnectionRecord) -> bool:
    """An ECA lists the permission set's id (15 or 18 characters), a ConnectedApp its name."""
    ps_id = record.permission_set_id or ""
    return any(
        ref == record.permission_set_name or (len(ps_id) >= 15 and ref[:15] == ps_id[:15]) for ref in linked
    )


def verify_readback(record: ConnectionRecord, found: AppReadback | None, org_id: str) -> str:
    """Step 5: the certificate, admin approval and permission set must be what was asked; returns the key."""
    name = record.full_name
    if found is None:
        raise fail(
            ErrorCode.APP_CREATION_FAILED, f"app {name} was created in org {org_id} but cannot be read back"
        )
    problems = []
    if not same_certificate(found.certificate, record.certificate_pem):
        problems.append("its certificate is not the connection's")
    if not found.admin_approved:
        problems.append("it is not admin-approved (users could self-authorize)")
    if not _links_permission_set(found.permission_sets, record):
        problems.append(f"permission set {record.permission_set_name} is not linked to it")
    key = found.consumer_key or (record.consumer_key if found.kind == CA else "")
    if not key:
        problems.append("it has no consumer key")
    elif found.kind == CA and record.consumer_key and key != record.consumer_key:
        problems.append("its consumer key is not the one the Builder set")
    if problems:
        raise fail(
            ErrorCode.APP_CREATION_FAILED,
            f"app {name} in org {org_id} does not hold the settings the Builder asked for: "
            f"{'; '.join(problems)}. Delete the connection and create it again; if it repeats, check the "
            "org's policies for connected apps",
        )
    return key
