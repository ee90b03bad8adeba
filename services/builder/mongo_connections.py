"""How a connection record is written to and read from MongoDB (secrets encrypted with the keyring)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from builder.store import ConnectionRecord, ConnectionStatus, IssuedReply, org_key
from shared.crypto import Keyring

Doc = dict[str, Any]


def aware(value: Any) -> Any:
    """Datetimes from the driver as timezone-aware UTC (whatever the client's tz_aware setting)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _dec(keyring: Keyring, value: str | None, record_id: str, name: str) -> str | None:
    return keyring.decrypt(value, record_id=record_id, field=name) if value else None


def connection_to_doc(record: ConnectionRecord, keyring: Keyring) -> Doc:
    """The document for a record; the private key and the last token are encrypted, bound to the id."""
    cid = record.connection_id
    doc: Doc = {
        "org_id": record.org_id,
        "org_key": org_key(record.org_id),
        "username": record.username,
        "admin_email": record.admin_email,
        "label": record.label,
        "requested_kind": record.requested_kind,
        "full_name": record.full_name,
        "permission_set_name": record.permission_set_name,
        "certificate_pem": record.certificate_pem,
        "private_key": keyring.encrypt(record.private_key_pem, record_id=cid, field="private_key")
        if record.private_key_pem
        else None,
        "consumer_key": record.consumer_key,
        "user_id": record.user_id,
        "app_kind": record.app_kind,
        "permission_set_id": record.permission_set_id,
        "deploy_id": record.deploy_id,
        "status": record.status.value,
        "app_created_at": record.app_created_at,
        "instance_url": record.instance_url,
        "audience": record.audience,
        "last_access_token": keyring.encrypt(record.last_access_token, record_id=cid, field="access_token")
        if record.last_access_token
        else None,
        "reply": {
            "key_id": record.reply.key_id,
            "sealed_token": record.reply.sealed_token,
            "issued_at": record.reply.issued_at,
            "instance_url": record.reply.instance_url,
        }
        if record.reply
        else None,
        "app_existed": record.app_existed,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    return doc


def connection_from_doc(doc: Doc, keyring: Keyring) -> ConnectionRecord:
    """The record from its document, secrets decrypted."""
    cid = doc["_id"]
    reply = doc.get("reply")
    return ConnectionRecord(
        connection_id=cid,
        org_id=doc["org_id"],
        username=doc["username"],
        admin_email=doc.get("admin_email", ""),
        label=doc.get("label", ""),
        requested_kind=doc.get("requested_kind", "auto"),
        full_name=doc["full_name"],
        permission_set_name=doc["permission_set_name"],
        certificate_pem=doc.get("certificate_pem", ""),
        private_key_pem=_dec(keyring, doc.get("private_key"), cid, "private_key"),
        consumer_key=doc.get("consumer_key", ""),
        user_id=doc.get("user_id", ""),
        app_kind=doc.get("app_kind"),
        permission_set_id=doc.get("permission_set_id"),
        deploy_id=doc.get("deploy_id"),
        status=ConnectionStatus(doc.get("status", ConnectionStatus.PROVISIONING)),
        app_created_at=aware(doc.get("app_created_at")),
        instance_url=doc.get("instance_url", ""),
        audience=doc.get("audience", ""),
        last_access_token=_dec(keyring, doc.get("last_access_token"), cid, "access_token"),
        reply=IssuedReply(
            key_id=reply["key_id"],
            sealed_token=reply["sealed_token"],
            issued_at=aware(reply["issued_at"]),
            instance_url=reply["instance_url"],
        )
        if reply
        else None,
        app_existed=bool(doc.get("app_existed", False)),
        created_at=aware(doc.get("created_at")),
        updated_at=aware(doc.get("updated_at")),
    )
