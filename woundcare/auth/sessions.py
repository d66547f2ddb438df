"""Browser sessions: an HttpOnly cookie holding a random token, a CSRF token beside it,
an idle timeout and an absolute lifetime; revocable one by one or all for a user."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Update, select, update

from ..db.database import Database
from ..db.models import LoginSession, User
from .tokens import new_token, token_hash

COOKIE = "wc_session"
CSRF_HEADER = "X-CSRF-Token"
_TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class OpenSession:
    id: str
    user: User
    csrf_token: str
    expires_at: datetime


class Sessions:
    def __init__(self, db: Database, idle: timedelta, lifetime: timedelta) -> None:
        self._db = db
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
        async with self._db.sessions() as session, session.begin():
            session.add(row)
            user = await session.get_one(User, user_id)
        return token, OpenSession(row.id, user, row.csrf_token, row.expires_at)

    async def resolve(self, token: str) -> OpenSession | None:
        now = datetime.now(UTC)
        async with self._db.sessions() as session, session.begin():
            found = (
                await session.execute(
                    select(LoginSession, User)
                    .join(User, User.id == LoginSession.user_id)
                    .where(LoginSession.id == token_hash(token))
                )
            ).one_or_none()
            if found is None:
                return None
            row, user = found
            if (
                row.revoked_at is not None
                or row.expires_at <= now
                or row.last_seen_at + self._idle <= now
                or not user.active
            ):
                return None
            if now - row.last_seen_at > _TOUCH_EVERY:
                row.last_seen_at = now
        return OpenSession(row.id, user, row.csrf_token, row.expires_at)

    async def revoke(self, session_id: str) -> None:
        async with self._db.sessions() as session, session.begin():
            await session.execute(
                update(LoginSession)
                .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )

    async def revoke_user(self, user_id: int) -> None:
        async with self._db.sessions() as session, session.begin():
            await session.execute(revoke_user_sessions(user_id))


def revoke_user_sessions(user_id: int) -> Update:
    """The statement that ends all of a user's open sessions (run it in your transaction)."""
    return (
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
