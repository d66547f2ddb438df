"""Closing the live sockets of revoked devices and disabled users.

Revocation happens in another process (the CLI) or another instance, so each instance
polls the database every few seconds; a revoked device's socket closes within that time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import literal, select, union_all

from signaling.protocol import CloseCode, ErrorCode
from signaling.rooms import Rooms

from ..db.database import Database
from ..db.models import Device, User

log = logging.getLogger(__name__)


class RevocationWatch:
    def __init__(self, db: Database, rooms: Rooms, interval: float) -> None:
        self._db = db
        self._rooms = rooms
        self._interval = interval

    async def run(self) -> None:
        # Look back one interval more than we sleep, so no revocation falls between polls.
        since = datetime.now(UTC) - timedelta(seconds=self._interval)
        while True:
            await asyncio.sleep(self._interval)
            now = datetime.now(UTC)
            try:
                subjects = await self._revoked_since(since - timedelta(seconds=self._interval))
            except Exception:
                log.exception("revocation poll failed")
                continue
            since = now
            if subjects and len(self._rooms):
                count = self._rooms.evict(subjects, CloseCode.UNAUTHORIZED, ErrorCode.REVOKED, "credentials revoked")
                if count:
                    log.info("closed %d signaling participants with revoked credentials", count)

    async def _revoked_since(self, since: datetime) -> set[str]:
        # One statement, one round trip to the database thread: the poll runs on the loop
        # that relays every frame, and each round trip is a pause there.
        revoked = union_all(
            select(literal("d"), Device.id).where(Device.revoked_at >= since),
            select(literal("u"), User.id).where(User.active.is_(False)),
            select(literal("d"), Device.id).join(User, User.id == Device.user_id).where(User.active.is_(False)),
        )
        async with self._db.sessions() as session:
            rows = (await session.execute(revoked)).all()
        return {f"{kind}{number}" for kind, number in rows}
