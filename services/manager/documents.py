"""Mapping between the connection aggregate and its MongoDB document (plain dicts, no I/O)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from manager.domain import AppInfo, CommandRecord, Connection, ConnectionStatus, ErrorInfo, StoredToken


def connection_to_doc(c: Connection) -> dict[str, Any]:
    """The stored form; ``name_key`` holds the name while the connection is not deleted (unique index)."""
    doc: dict[str, Any] = {
        "_id": c.id,
        "name": c.name,
        "org_id": c.org_id,
        "salesforce_username": c.salesforce_username,
        "admin_email": c.admin_email,
        "label": c.label,
        "app_kind": c.app_kind,
        "status": c.status.value,
        "version": c.version,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "app": asdict(c.app) if c.app else None,
        "instance_url": c.instance_url,
        "token": asdict(c.token) if c.token else None,
        "error": asdict(c.error) if c.error else None,
        "command": asdict(c.command) if c.command else None,
        "refreshed_at": c.refreshed_at,
        "token_generation": c.token_generation,
        "last_refresh_error": asdict(c.last_refresh_error) if c.last_refresh_error else None,
    }
    if c.status is not ConnectionStatus.DELETED:
        doc["name_key"] = c.name
    return doc


def connection_from_doc(doc: dict[str, Any]) -> Connection:
    """Rebuild the aggregate from its stored form."""
    app, token, error, command = (doc.get(k) for k in ("app", "token", "error", "command"))
    return Connection(
        id=doc["_id"],
        name=doc["name"],
        org_id=doc["org_id"],
        salesforce_username=doc["salesforce_username"],
        admin_email=doc["admin_email"],
        label=doc["label"],
        app_kind=doc["app_kind"],
        status=ConnectionStatus(doc["status"]),
        version=doc["version"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        app=AppInfo(**app) if app else None,
        instance_url=doc.get("instance_url"),
        token=StoredToken(**token) if token else None,
        error=ErrorInfo(**error) if error else None,
        command=CommandRecord(**command) if command else None,
        refreshed_at=doc.get("refreshed_at"),
        token_generation=doc.get("token_generation", 0),
        last_refresh_error=ErrorInfo(**refresh_error)
        if (refresh_error := doc.get("last_refresh_error"))
        else None,
    )
