"""Salesforce REST: versions, describeGlobal (If-Modified-Since), SOQL, sObject create/delete, Connect GETs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from yarl import URL

from builder.salesforce.errors import SalesforceApiError, SalesforceUnavailable, rest_error
from builder.salesforce.transport import Response, Transport

_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_quote(value: str) -> str:
    """A SOQL string literal: single quotes around ``value`` with backslash escapes (``'`` → ``\\'``)."""
    return "'" + "".join(_SOQL_ESCAPES.get(ch, ch) for ch in value) + "'"


def soql_select(fields: str, sobject: str, **equals: str) -> str:
    """``SELECT fields FROM sobject WHERE k = 'v' AND ...`` with every value quoted by :func:`soql_quote`."""
    clauses = " AND ".join(f"{name} = {soql_quote(value)}" for name, value in equals.items())
    return " ".join(("SELECT", fields, "FROM", sobject, "WHERE", clauses))


@dataclass(frozen=True)
class Access:
    """Where and as whom to call: ``instance_url`` exactly as Salesforce returned it, and a bearer token."""

    instance_url: str
    access_token: str = field(repr=False)


@dataclass(frozen=True)
class DescribeGlobal:
    """describeGlobal's answer: the sObjects and the response's Last-Modified time, when given."""

    sobjects: list[dict[str, Any]]
    last_modified: datetime | None


def _json(resp: Response, operation: str) -> Any:
    try:
        return json.loads(resp.text) if resp.text else None
    except ValueError:
        raise SalesforceUnavailable(f"Salesforce {operation} answered with a body that is not JSON") from None


@dataclass
class RestApi:
    """REST calls for one API version; every call takes an :class:`Access`."""

    transport: Transport
    api_version: str

    def _url(self, access: Access, path: str) -> URL:
        return URL(f"{access.instance_url.rstrip('/')}/services/data/v{self.api_version}/{path.lstrip('/')}")

    async def _call(
        self,
        method: str,
        access: Access,
        url: URL,
        *,
        operation: str,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = {"Authorization": f"Bearer {access.access_token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        resp = await self.transport.request(
            method, url, operation=operation, headers=all_headers, json=json_body
        )
        if resp.status >= 400:
            raise rest_error(resp.status, resp.text, operation=operation)
        return resp

    async def versions(self, instance_url: str) -> list[dict[str, Any]]:
        """``GET /services/data/`` (no authentication needed)."""
        resp = await self.transport.request(
            "GET", f"{instance_url.rstrip('/')}/services/data/", operation="versions"
        )
        if resp.status >= 400:
            raise rest_error(resp.status, resp.text, operation="versions")
        data = _json(resp, "versions")
        return data if isinstance(data, list) else []

    async def describe_global(
        self, access: Access, *, if_modified_since: datetime | None = None
    ) -> DescribeGlobal | None:
        """List the org's sObjects; None when ``if_modified_since`` is given and nothing changed (304)."""
        headers = {}
        if if_modified_since is not None:
            headers["If-Modified-Since"] = format_datetime(if_modified_since, usegmt=True)
        resp = await self._call(
            "GET", access, self._url(access, "sobjects/"), operation="describe_global", headers=headers
        )
        if resp.status == 304:
            return None
        data = _json(resp, "describe_global")
        sobjects = data.get("sobjects") if isinstance(data, dict) else None
        if not isinstance(sobjects, list):
            raise SalesforceUnavailable("Salesforce describeGlobal answered without an sobjects list")
        last_modified = None
        if lm := resp.headers.get("Last-Modified"):
            try:
                last_modified = parsedate_to_datetime(lm)
            except (TypeError, ValueError):
                last_modified = None
        return DescribeGlobal(sobjects, last_modified)

    async def query(self, access: Access, soql: str) -> list[dict[str, Any]]:
        """Run a SOQL query and return every record (following nextRecordsUrl)."""
        url = self._url(access, "query/").with_query({"q": soql})
        records: list[dict[str, Any]] = []
        for _page in range(100):
            resp = await self._call("GET", access, url, operation="query")
            data = _json(resp, "query")
            if not isinstance(data, dict):
                raise SalesforceUnavailable("Salesforce query answered without a records list")
            records.extend(r for r in data.get("records", []) if isinstance(r, dict))
            next_url = data.get("nextRecordsUrl")
            if data.get("done", True) or not next_url:
                return records
            url = URL(access.instance_url.rstrip("/") + str(next_url))
        return records

    async def is_sandbox(self, access: Access) -> bool | None:
        """The org's own word on whether it is a sandbox (Organization.IsSandbox); None when unreadable."""
        rows = await self.query(access, "SELECT Id, IsSandbox FROM Organization")
        return bool(rows[0].get("IsSandbox")) if rows else None

    async def create(self, access: Access, sobject: str, fields: dict[str, Any]) -> str:
        """Insert one record and return its id."""
        resp = await self._call(
            "POST",
            access,
            self._url(access, f"sobjects/{sobject}/"),
            operation=f"create_{sobject}",
            json_body=fields,
        )
        data = _json(resp, f"create_{sobject}")
        if not isinstance(data, dict) or not data.get("id"):
            raise SalesforceApiError(f"Salesforce created no {sobject} record", status=resp.status)
        return str(data["id"])

    async def delete(self, access: Access, sobject: str, record_id: str) -> bool:
        """Delete one record; False when it was already gone."""
        try:
            await self._call(
                "DELETE",
                access,
                self._url(access, f"sobjects/{sobject}/{record_id}"),
                operation=f"delete_{sobject}",
            )
        except SalesforceApiError as exc:
            if exc.status == 404 or exc.sf_code in ("NOT_FOUND", "ENTITY_IS_DELETED"):
                return False
            raise
        return True

    async def get(self, access: Access, path: str, *, operation: str) -> Any:
        """GET a path under ``/services/data/vNN.N/`` and return the JSON body."""
        resp = await self._call("GET", access, self._url(access, path), operation=operation)
        return _json(resp, operation)
