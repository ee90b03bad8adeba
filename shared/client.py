"""Client for generated integration code: Salesforce REST calls with a connection's token, never handled by the caller.

Usage::

    async with SalesforceClient(manager_url, api_key, integration="erp-sync") as sf:
        accounts = await sf.query("SELECT Id, Name FROM Account LIMIT 10")
        objects = await sf.describe_global()

The client asks the Manager for the token of the integration's (or connection's) connection, calls
``instance_url`` + path with it, and on ``401 INVALID_SESSION_ID`` asks once for a fresh token
(``force_refresh=true``) and retries the call once. The token stays inside the client object.

Errors (all from :mod:`shared.errors`, so ``PermanentError`` / ``RetryableError`` still sort them):

* ``InvalidArgument`` (an ``InvalidInput`` and a ``ValueError``): a bad constructor argument (an API key
  with whitespace, control or non-ASCII characters, which cannot go into a header) or a ``path`` that is
  not a plain absolute path on ``instance_url`` (no ``//host``, ``@``/``.`` host tricks, backslashes,
  schemes or control characters). Raised before any request, and before the token is sent anywhere.
* ``ManagerError`` (permanent): the Manager refused the token request. ``status`` (HTTP status),
  ``code`` (the problem document's ``code``, or ``manager_error`` when there is none), ``cause`` and
  ``request_id`` (from the problem document, else the ``X-Request-ID`` header) say why. Subclasses:
  ``ManagerAccessDenied`` for 401/403 (the key is wrong, lacks ``tokens:read`` or is bound elsewhere) and
  ``ManagerNotFound`` for 404 (no such integration or connection). A 409 ``connection_not_active``,
  500 ``decryption_failed`` or 502 ``token_refresh_failed`` is a plain ``ManagerError`` with that ``code``.
* ``ManagerUnavailable`` (retryable): the Manager did not answer, or answered 503/504 (or a 502 or 5xx
  without its problem document, e.g. from a proxy). Same attributes, plus ``retry_after`` (seconds from
  ``Retry-After``, or None).
* ``SalesforceApiError`` / ``SalesforceUnavailable``: Salesforce's own answers, as before.

No message carries the API key or a token.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from shared.errors import InvalidInput, PermanentError, RetryableError

DEFAULT_API_VERSION = "68.0"
_API_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a Bearer credential may hold
_CODE_SHAPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_REQUEST_ID_SHAPE = re.compile(r"[\x21-\x7e]{1,128}")


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


class InvalidArgument(InvalidInput, ValueError):
    """A constructor argument or request path the client refuses; the message never echoes a key."""


class _ManagerProblem:
    """What the Manager said: HTTP status, problem ``code``/``cause`` and ``request_id``."""

    status: int | None = None
    cause: str | None = None
    request_id: str | None = None


class ManagerUnavailable(_ManagerProblem, RetryableError):
    code = "manager_unavailable"


class ManagerError(_ManagerProblem, PermanentError):
    code = "manager_error"


class ManagerAccessDenied(ManagerError):
    """401/403: the API key is wrong, lacks ``tokens:read``, or is bound to another integration."""


class ManagerNotFound(ManagerError):
    """404: no such integration or connection."""


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
            raise InvalidArgument("give exactly one of integration= or connection=")
        scope = "integrations" if integration is not None else "connections"
        name = integration if integration is not None else connection
        self._token_url = f"{manager_url.rstrip('/')}/v1/{scope}/{quote(str(name), safe='')}/token"
        if not isinstance(api_key, str) or not _API_KEY_CHARS.fullmatch(api_key):
            raise InvalidArgument(
                "the API key is empty or has characters an HTTP header cannot carry "
                "(whitespace, control or non-ASCII characters); pass the key exactly as issued"
            )
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
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ManagerUnavailable(f"cannot reach the Manager: {type(exc).__name__}") from None
        problem = body if isinstance(body, dict) else {}
        if status != 200:
            raise _manager_error(status, problem, headers)
        try:
            token = _Token(
                problem["access_token"],
                problem["instance_url"].rstrip("/"),
                problem.get("token_type", "Bearer"),
            )
        except (KeyError, AttributeError):
            raise ManagerError("the Manager's token answer lacks access_token or instance_url") from None
        origin = URL(token.instance_url)
        if origin.scheme not in ("http", "https") or not origin.host or origin.user or origin.query_string:
            raise ManagerError("the Manager's token answer has an instance_url that is not an http(s) URL")
        return token

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
        """Call ``instance_url + path``; retries once with a fresh token on INVALID_SESSION_ID.

        ``path`` must be an absolute path (``/services/...``) on the org: anything that could move the
        call to another host is refused with ``InvalidArgument`` before the token is fetched or sent.
        """
        _check_path(path)
        extra_headers = dict(kwargs.pop("headers", None) or {})
        token = await self._token_for_call(force=False)
        for attempt in (1, 2):
            url = _url_on_instance(token.instance_url, path)
            headers = {**extra_headers, "Authorization": f"{token.token_type} {token.access_token}"}
            try:
                async with self.session.request(method, url, headers=headers, **kwargs) as resp:
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


def _check_path(path: object) -> None:
    """Refuse a path that is not a plain absolute path: it could move the call (and the token) elsewhere."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument("path must be a string starting with '/', e.g. '/services/data/v68.0/limits'")
    if path.startswith("//"):
        raise InvalidArgument("path must not start with '//' (that names another host)")
    if "\\" in path:
        raise InvalidArgument("path must not contain a backslash")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidArgument("path must not contain control characters (CR, LF, tab, ...)")
    if "://" in path.split("?", 1)[0]:
        raise InvalidArgument("path must not contain a scheme; give the path only, not a URL")


def _url_on_instance(instance_url: str, path: str) -> URL:
    """``instance_url + path``, checked to stay on the instance's scheme, host and port."""
    origin = URL(instance_url)
    url = URL(instance_url + path)
    if (url.scheme, url.host, url.port, url.user) != (origin.scheme, origin.host, origin.port, origin.user):
        raise InvalidArgument("the path would send the call to another host than instance_url; refused")
    return url


def _manager_error(status: int, problem: dict[str, Any], headers: Any) -> ManagerError | ManagerUnavailable:
    """The typed error for a token request the Manager did not answer with 200."""
    raw_code = problem.get("code")
    code = raw_code if isinstance(raw_code, str) and _CODE_SHAPE.fullmatch(raw_code) else None
    raw_cause = problem.get("cause")
    cause = raw_cause if isinstance(raw_cause, str) and _CODE_SHAPE.fullmatch(raw_cause) else None
    raw_id = problem.get("request_id") or headers.get("X-Request-ID")
    request_id = raw_id if isinstance(raw_id, str) and _REQUEST_ID_SHAPE.fullmatch(raw_id) else None
    detail = problem.get("detail") or problem.get("title") or "no details"
    suffix = "".join(
        f"; {name}={value}"
        for name, value in (("code", code), ("cause", cause), ("request_id", request_id))
        if value
    )
    error: ManagerError | ManagerUnavailable
    transient = status in (503, 504) or (status >= 500 and not problem) or (status == 502 and code is None)
    if transient:
        error = ManagerUnavailable(
            f"the Manager is unavailable ({status}): {detail}{suffix}",
            code=code,
            retry_after=_retry_after(headers.get("Retry-After")),
        )
    else:
        kind = {401: ManagerAccessDenied, 403: ManagerAccessDenied, 404: ManagerNotFound}.get(
            status, ManagerError
        )
        error = kind(f"the Manager refused the token request ({status}): {detail}{suffix}", code=code)
    error.status, error.cause, error.request_id = status, cause, request_id
    return error


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the Manager sends delta-seconds); None when absent or not a number."""
    value = (value or "").strip()
    return float(value) if value.isdigit() else None
