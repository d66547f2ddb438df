"""Head-camera devices: a bearer token bound to one nurse and one region, revocable."""

from __future__ import annotations

from dataclasses import dataclass

from ..db.database import Database
from ..db.models import Device, User
from ..records.accounts import Accounts
from .tokens import new_token, token_hash

TOKEN_PREFIX = "wcd"


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    device: Device
    user: User


class Devices:
    def __init__(self, db: Database) -> None:
        self._accounts = Accounts(db)

    async def issue(self, user_id: int, region_id: int, name: str) -> tuple[int, str]:
        """A new device; returns its id and its token (shown once)."""
        token = new_token(TOKEN_PREFIX)
        return await self._accounts.add_device(user_id, region_id, name, token_hash(token)), token

    async def resolve(self, token: str) -> DeviceLogin | None:
        found = await self._accounts.device_login(token_hash(token))
        return None if found is None else DeviceLogin(*found)

    async def revoke(self, device_id: int) -> bool:
        return await self._accounts.revoke_device(device_id)
