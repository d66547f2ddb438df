"""Closing the live sockets of revoked devices and disabled users.

Revocation happens in another process (the CLI) or another instance, so each instance
polls the database every few seconds; a revoked device's socket closes within that time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

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
        async with self._db.sessions() as session:
            devices = (await session.scalars(select(Device.id).where(Device.revoked_at >= since))).all()
            users = (await session.scalars(select(User.id).where(User.active.is_(False)))).all()
            user_devices = (
                await session.scalars(select(Device.id).where(Device.user_id.in_(users)))
            ).all() if users else []
        return {f"d{d}" for d in (*devices, *user_devices)} | {f"u{u}" for u in users}
