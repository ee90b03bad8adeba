"""Client for generated integration code: Salesforce REST calls with a connection's token, never handled by the caller.

Usage::

    async with SalesforceClient(manager_url, api_key, integration="erp-sync") as sf:
        accounts = await sf.query("SELECT Id, Name FROM Account LIMIT 10")
        objects = await sf.describe_global()

The client asks the Manager for the token of the integration's (or connection's) connection, calls
``instance_url`` + path with it, and on ``401 INVALID_SESSION_ID`` asks once for a fresh token
(``force_refresh=true``) and retries the call once. The token stays inside the client object.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.errors import PermanentError, RetryableError

DEFAULT_API_VERSION = "68.0"


class SalesforceApiError(PermanentError):
    """Salesforce answered with an error; ``status`` and ``errors`` (the JSON error array) say which."""

    code = "salesforce_error"

    def __init__(self, status: int, errors: Any) -> None:
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        super().__init__(
            f"Salesforce answered {status}: {first.get('errorCode', '')} {first.get('message', '')}".strip()
        )
        self.status = status
        self.errors = errors


class ManagerUnavailable(RetryableError):
    code = "manager_unavailable"


class ManagerError(PermanentError):
    code = "manager_error"


class SalesforceUnavailable(RetryableError):
    """Salesforce did not answer in time, or answered 5xx / something that is not its JSON."""

    code = "salesforce_unavailable"


@dataclass(frozen=True)
class _Token:
    access_token: str
    instance_url: str
    token_type: str

    def __repr__(self) -> str:  # never print the token
        return f"_Token(instance_url={self.instance_url!r})"


class SalesforceClient:
    """Salesforce REST client bound to one integration or connection of a Manager."""

    def __init__(
        self,
        manager_url: str,
        api_key: str,
        *,
        integration: str | None = None,
        connection: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 45.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if (integration is None) == (connection is None):
            raise ValueError("give exactly one of integration= or connection=")
        scope = "integrations" if integration is not None else "connections"
        name = integration if integration is not None else connection
        self._token_url = f"{manager_url.rstrip('/')}/v1/{scope}/{quote(str(name), safe='')}/token"
        self._api_key = api_key
        self.api_version = api_version
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def __aenter__(self) -> SalesforceClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use 'async with SalesforceClient(...)' or pass session=")
        return self._session

    async def _fetch_token(self, *, force: bool) -> _Token:
        params = {"force_refresh": "true"} if force else {}
        try:
            async with self.session.get(
                self._token_url, params=params, headers={"Authorization": f"Bearer {self._api_key}"}
            ) as resp:
                status = resp.status
                body = await _json_or_none(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ManagerUnavailable(f"cannot reach the Manager: {type(exc).__name__}") from None
        problem = body if isinstance(body, dict) else {}
        if status in (502, 503, 504) or (status >= 500 and not problem):
            raise ManagerUnavailable(
                f"the Manager is unavailable ({status}): {problem.get('detail') or problem.get('title') or 'no details'}"
            )
        if status != 200:
            raise ManagerError(
                f"the Manager refused the token request ({status}): "
                f"{problem.get('detail') or problem.get('title') or 'no details'}"
            )
        try:
            return _Token(
                problem["access_token"],
                problem["instance_url"].rstrip("/"),
                problem.get("token_type", "Bearer"),
            )
        except (KeyError, AttributeError):
            raise ManagerError("the Manager's token answer lacks access_token or instance_url") from None

    async def _token_for_call(self, *, force: bool, stale: _Token | None = None) -> _Token:
        async with self._lock:
            if force and self._token is not None and self._token is not stale:
                return self._token  # another call already refreshed it
            if self._token is None or force:
                self._token = await self._fetch_token(force=force)
                if force:
                    self.refreshes += 1
            return self._token

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``instance_url + path``; retries once with a fresh token on INVALID_SESSION_ID."""
        extra_headers = dict(kwargs.pop("headers", None) or {})
        token = await self._token_for_call(force=False)
        for attempt in (1, 2):
            headers = {**extra_headers, "Authorization": f"{token.token_type} {token.access_token}"}
            try:
                async with self.session.request(
                    method, token.instance_url + path, headers=headers, **kwargs
                ) as resp:
                    status = resp.status
                    body = None if status == 204 else await _json_or_none(resp)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise SalesforceUnavailable(f"cannot reach Salesforce: {type(exc).__name__}") from None
            if status == 204:
                return None
            if status == 401 and attempt == 1 and _is_invalid_session(body):
                token = await self._token_for_call(force=True, stale=token)
                continue
            if status >= 500 or body is None:
                raise SalesforceUnavailable(f"Salesforce answered {status} without its JSON error body")
            if status >= 400:
                raise SalesforceApiError(status, body)
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    def data_path(self, suffix: str) -> str:
        return f"/services/data/v{self.api_version}/{suffix.lstrip('/')}"

    async def describe_global(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", self.data_path("sobjects/"))
        return result

    async def query(self, soql: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", self.data_path("query/"), params={"q": soql})
        return result


def _is_invalid_session(body: Any) -> bool:
    return isinstance(body, list) and any(
        isinstance(e, dict) and e.get("errorCode") == "INVALID_SESSION_ID" for e in body
    )


async def _json_or_none(resp: aiohttp.ClientResponse) -> Any:
    """The JSON body, or None when the answer is not JSON (an HTML error page from a proxy, say)."""
    try:
        return await resp.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return None
