"""Closing the live sockets of revoked devices, disabled users and withdrawn guests.

Revocation happens in another process (the CLI) or another instance, so each instance
polls the database every few seconds; a revoked device's socket closes within that time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from signaling.protocol import CloseCode, ErrorCode
from signaling.rooms import Rooms

from ..db.database import Database
from ..records.accounts import Accounts
from ..records.guests import Guests
from .subject import Subject

log = logging.getLogger(__name__)


class RevocationWatch:
    def __init__(self, db: Database, rooms: Rooms, interval: float) -> None:
        self._accounts = Accounts(db)
        self._guests = Guests(db)
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
        users, devices = await self._accounts.revoked_since(since)
        guests = await self._guests.revoked_since(since)
        return {Subject.user_ref(n) for n in users} | {Subject.device_ref(n) for n in devices} | guests
