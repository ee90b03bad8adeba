"""Step 6: JWT bearer minting, deferred through the delayed-retry queues while a new app propagates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from builder.metrics import Metrics
from builder.ports import SalesforcePort
from builder.provisioning import fail
from builder.salesforce.errors import OAuthError
from builder.salesforce.oauth import TokenResponse
from builder.settings import BuilderSettings
from builder.store import ConnectionRecord
from shared.contracts import ErrorCode
from shared.errors import RetryableError
from shared.logging import get_logger

log = get_logger(__name__)
MAX_PROPAGATION_DELAY = 120.0
_PROPAGATING = ("user hasn't approved", "audience is invalid", "audience validation")


class PropagationPending(RetryableError):
    """The new app is not accepted by the token endpoint yet: try again after ``retry_after``."""

    code = "propagation_pending"


def oauth_kind(exc: OAuthError) -> str:
    """What a token-endpoint refusal means for a JWT bearer grant of a connection's app."""
    description = exc.description.lower()
    if exc.error == "invalid_client_id" or (
        exc.error == "invalid_grant" and any(p in description for p in _PROPAGATING)
    ):
        return "propagating"
    if exc.error == "inactive_user":
        return "inactive"
    if exc.error == "inactive_org":
        return "org_inactive"
    if exc.error == "invalid_app_access":
        return "not_preauthorized"
    return "refused"


@dataclass
class Minter:
    """Mints a connection's access token with its stored key and app."""

    salesforce: SalesforcePort
    settings: BuilderSettings
    clock: Callable[[], datetime]
    metrics: Metrics | None = None

    async def mint(
        self, record: ConnectionRecord, *, app_created_at: datetime, attempt: int, window: bool
    ) -> TokenResponse:
        """JWT bearer; inside the propagation ``window`` a not-yet-known app defers, outside it fails.

        The propagation deadline (``PROPAGATION_DEADLINE_SECONDS``) bounds how long the app may stay unknown
        to the token endpoint, so it runs from ``app_created_at``, not from the command's first delivery.
        """
        assert record.private_key_pem is not None, "an active connection keeps its key"
        try:
            return await self.salesforce.mint_token(
                token_host=record.instance_url,
                consumer_key=record.consumer_key,
                username=record.username,
                audience=record.audience,
                private_key_pem=record.private_key_pem,
            )
        except OAuthError as exc:
            kind = oauth_kind(exc)
            answer = f"{exc.error}: {exc.description}"
            if kind == "inactive":
                raise fail(
                    ErrorCode.USER_INACTIVE, f"Salesforce says user {record.username} is inactive ({answer})"
                ) from None
            if kind == "org_inactive":
                raise fail(
                    ErrorCode.AUTHORIZATION_REVOKED,
                    f"Salesforce says org {record.org_id} is inactive ({answer}); the org must be active again "
                    "(an expired trial or sandbox?) before it can issue tokens",
                ) from None
            if kind == "not_preauthorized":
                raise fail(
                    ErrorCode.PREAUTHORIZATION_FAILED,
                    f"user {record.username} is not pre-authorized for app {record.full_name} ({answer}); check "
                    f"that permission set {record.permission_set_name} is assigned and the user's license allows it",
                ) from None
            if kind == "refused" or not window:
                raise fail(
                    ErrorCode.APP_CREATION_FAILED,
                    f"Salesforce refused a token for app {record.full_name} ({answer}); check the app's "
                    "certificate and JWT_AUDIENCE, or delete and recreate the connection",
                ) from None
            self.defer(record, app_created_at, max(1, attempt), answer)
            raise AssertionError("unreachable") from None

    def defer(self, record: ConnectionRecord, app_created_at: datetime, attempt: int, answer: str) -> None:
        limit = timedelta(seconds=self.settings.propagation_deadline_seconds)
        now = self.clock()
        waited = (now - app_created_at).total_seconds()
        if now >= app_created_at + limit:
            raise fail(
                ErrorCode.PROPAGATION_TIMEOUT,
                f"Salesforce still does not accept app {record.full_name} {waited:.0f}s after it was created "
                f"(last answer: {answer}); new apps can take longer to propagate: retry the connection later"
                + ("; check JWT_AUDIENCE for this org's login host" if "audience" in answer else ""),
            )
        remaining = (app_created_at + limit - now).total_seconds()
        delay = min(
            MAX_PROPAGATION_DELAY, self.settings.propagation_retry_seconds * 2 ** min(10, attempt - 1)
        )
        if self.metrics is not None:
            self.metrics.propagation_retries.inc()
        log.info(
            "new app not accepted yet; retrying later", app=record.full_name, answer=answer, waited_s=waited
        )
        raise PropagationPending(
            f"app {record.full_name} is not accepted by Salesforce yet ({answer})",
            retry_after=max(1.0, min(delay, remaining)),
        )
