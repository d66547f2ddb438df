"""Browser sessions: an HttpOnly cookie holding a random token, a CSRF token beside it,
an idle timeout and an absolute lifetime; revocable one by one or all for a user."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..db.database import Database
from ..db.models import LoginSession
from ..records.accounts import Accounts, Holder
from .tokens import new_token, token_hash

COOKIE = "wc_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class OpenSession:
    id: str
    user_id: int
    csrf_token: str
    expires_at: datetime


class Sessions:
    def __init__(self, db: Database, idle: timedelta, lifetime: timedelta) -> None:
        self._accounts = Accounts(db)
        self._idle = idle
        self._lifetime = lifetime

    async def create(self, user_id: int, method: str) -> tuple[str, OpenSession]:
        """A new session; returns the cookie token (shown once) and the session."""
        token = new_token("wcs")
        now = datetime.now(UTC)
        row = LoginSession(
            id=token_hash(token),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(24),
            method=method,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._lifetime,
        )
        await self._accounts.add_session(row)
        return token, OpenSession(row.id, user_id, row.csrf_token, row.expires_at)

    async def resolve(self, token: str) -> tuple[OpenSession, Holder] | None:
        """The session the cookie ``token`` opens, with its user and her memberships."""
        session_id = token_hash(token)
        found = await self._accounts.open_session(session_id, self._idle)
        if found is None:
            return None
        holder = found.holder
        return OpenSession(session_id, holder.user_id, found.csrf_token, found.expires_at), holder

    async def revoke(self, session_id: str) -> None:
        await self._accounts.revoke_session(session_id)
