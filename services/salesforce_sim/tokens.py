"""Authorization codes, approvals (grants with refresh tokens) and sessions (access tokens).

Only SHA-256 digests of codes and tokens are kept: the simulator can recognise a token it issued but
cannot hand one out again, and its admin API can only count them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

MAX_APPROVALS_PER_USER_PER_APP = 5


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class AuthCode:
    app_key: str
    org_key: str
    user_id: str
    redirect_uri: str
    scopes: list[str]
    challenge: str | None
    expires_at: float
    used: bool = False
    grant_id: str | None = None


@dataclass
class Grant:
    """One user's approval of one app: holds the current refresh token (as a digest)."""

    id: str
    org_key: str
    user_id: str
    app_key: str
    scopes: list[str]
    created_at: float
    refresh_digest: str | None = None
    retired: set[str] = field(default_factory=set)


@dataclass
class Session:
    org_key: str
    user_id: str
    app_key: str
    grant_id: str | None
    scopes: list[str]
    issued_at: float
    last_used: float


RefreshLookup = Literal["current", "replayed", "unknown"]


class TokenStore:
    """Every credential the simulator has issued, by digest."""

    def __init__(self) -> None:
        self.codes: dict[str, AuthCode] = {}
        self.grants: dict[str, Grant] = {}
        self._refresh_index: dict[str, str] = {}
        self.sessions: dict[str, Session] = {}
        self.issued: Counter[str] = Counter()
        self._grant_seq = 0

    # --- authorization codes -------------------------------------------------------------
    def new_code(self, code: AuthCode) -> str:
        value = "aPrx" + secrets.token_urlsafe(60) + "=="
        self.codes[digest(value)] = code
        return value

    def take_code(self, value: str) -> AuthCode | None:
        """The code's record (the caller marks it used), or None for a code never issued."""
        return self.codes.get(digest(value))

    # --- approvals and refresh tokens ----------------------------------------------------
    def approve(
        self, *, org_key: str, user_id: str, app_key: str, scopes: list[str], now: float, with_refresh: bool
    ) -> tuple[Grant, str | None]:
        """Record an approval; the sixth approval of one app by one user revokes the oldest."""
        mine = sorted(
            (g for g in self.grants.values() if g.user_id == user_id and g.app_key == app_key),
            key=lambda g: (g.created_at, g.id),
        )
        while len(mine) >= MAX_APPROVALS_PER_USER_PER_APP:
            self.revoke_grant(mine.pop(0).id)
        self._grant_seq += 1
        grant = Grant(f"g{self._grant_seq}", org_key, user_id, app_key, list(scopes), now)
        self.grants[grant.id] = grant
        refresh = self.rotate(grant) if with_refresh else None
        return grant, refresh

    def rotate(self, grant: Grant) -> str:
        """Give the grant a new refresh token; the previous one is retired (replaying it revokes)."""
        value = "5Aep861" + secrets.token_urlsafe(64)
        if grant.refresh_digest is not None:
            grant.retired.add(grant.refresh_digest)
        grant.refresh_digest = digest(value)
        self._refresh_index[grant.refresh_digest] = grant.id
        self.issued["refresh_token"] += 1
        return value

    def find_refresh(self, value: str) -> tuple[RefreshLookup, Grant | None]:
        grant_id = self._refresh_index.get(digest(value))
        grant = self.grants.get(grant_id) if grant_id else None
        if grant is None:
            return "unknown", None
        if grant.refresh_digest == digest(value):
            return "current", grant
        return "replayed", grant

    def revoke_grant(self, grant_id: str) -> None:
        grant = self.grants.pop(grant_id, None)
        if grant is None:
            return
        for d in [grant.refresh_digest, *grant.retired]:
            if d is not None:
                self._refresh_index.pop(d, None)
        for key in [k for k, s in self.sessions.items() if s.grant_id == grant_id]:
            del self.sessions[key]

    # --- sessions ------------------------------------------------------------------------
    def issue_session(
        self,
        *,
        org_id: str,
        org_key: str,
        user_id: str,
        app_key: str,
        grant_id: str | None,
        scopes: list[str],
        now: float,
        flow: str,
    ) -> str:
        value = f"{org_id[:15]}!AR{secrets.token_urlsafe(72)}"
        self.sessions[digest(value)] = Session(org_key, user_id, app_key, grant_id, list(scopes), now, now)
        self.issued[flow] += 1
        self.issued["access_token"] += 1
        return value

    def live_session(self, value: str, *, now: float, timeout: float) -> Session | None:
        """The session if it exists and has been used within ``timeout`` seconds; expired ones are dropped."""
        key = digest(value)
        session = self.sessions.get(key)
        if session is None:
            return None
        if now - session.last_used >= timeout:
            del self.sessions[key]
            return None
        return session

    # --- revocation ----------------------------------------------------------------------
    def revoke(self, value: str) -> bool:
        """Revoke an access token, or a refresh token with its grant and access tokens."""
        key = digest(value)
        if self.sessions.pop(key, None) is not None:
            return True
        grant_id = self._refresh_index.get(key)
        if grant_id is not None:
            self.revoke_grant(grant_id)
            return True
        return False

    def revoke_where(self, *, org_key: str | None = None, app_key: str | None = None) -> int:
        """Revoke every grant (and its sessions) matching the filters; returns how many grants went."""
        doomed = [
            g.id
            for g in self.grants.values()
            if (org_key is None or g.org_key == org_key) and (app_key is None or g.app_key == app_key)
        ]
        for grant_id in doomed:
            self.revoke_grant(grant_id)
        return len(doomed)

    def drop_sessions(self, *, org_key: str | None = None, app_key: str | None = None) -> int:
        doomed = [
            k
            for k, s in self.sessions.items()
            if (org_key is None or s.org_key == org_key) and (app_key is None or s.app_key == app_key)
        ]
        for key in doomed:
            del self.sessions[key]
        return len(doomed)

    def drop_user(self, user_id: str) -> None:
        for grant in [g for g in self.grants.values() if g.user_id == user_id]:
            self.revoke_grant(grant.id)
        for key in [k for k, s in self.sessions.items() if s.user_id == user_id]:
            del self.sessions[key]

    def stats(self, org_key: str | None = None) -> dict[str, int]:
        sessions = [s for s in self.sessions.values() if org_key is None or s.org_key == org_key]
        grants = [g for g in self.grants.values() if org_key is None or g.org_key == org_key]
        return {
            "active_access_tokens": len(sessions),
            "active_refresh_tokens": sum(1 for g in grants if g.refresh_digest is not None),
            "approvals": len(grants),
        }
