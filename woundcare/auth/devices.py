"""Head-camera devices: a bearer token bound to one nurse and one region, revocable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from ..db.database import Database
from ..db.models import Device, User
from .tokens import new_token, token_hash

TOKEN_PREFIX = "wcd"


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    device: Device
    user: User


class Devices:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(self, user_id: int, region_id: int, name: str) -> tuple[int, str]:
        """A new device; returns its id and its token (shown once)."""
        token = new_token(TOKEN_PREFIX)
        async with self._db.sessions() as session, session.begin():
            device = Device(name=name, user_id=user_id, region_id=region_id, token_hash=token_hash(token))
            session.add(device)
            await session.flush()
            return device.id, token

    async def resolve(self, token: str) -> DeviceLogin | None:
        async with self._db.sessions() as session, session.begin():
            found = (
                await session.execute(
                    select(Device, User)
                    .join(User, User.id == Device.user_id)
                    .where(Device.token_hash == token_hash(token))
                )
            ).one_or_none()
            if found is None:
                return None
            device, user = found
            if device.revoked_at is not None or not user.active:
                return None
            device.last_seen_at = datetime.now(UTC)
        return DeviceLogin(device, user)

    async def revoke(self, device_id: int) -> bool:
        async with self._db.sessions() as session, session.begin():
            result = await session.execute(
                update(Device)
                .where(Device.id == device_id, Device.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return bool(result.rowcount)
