"""Head-camera devices: a bearer token bound to one nurse and one region, revocable."""

from __future__ import annotations

from ..db.database import Database
from ..records.accounts import Accounts, Holder
from .tokens import new_token, token_hash

TOKEN_PREFIX = "wcd"


class Devices:
    def __init__(self, db: Database) -> None:
        self._accounts = Accounts(db)

    async def issue(self, user_id: int, region_id: int, name: str) -> tuple[int, str]:
        """A new device; returns its id and its token (shown once)."""
        token = new_token(TOKEN_PREFIX)
        return await self._accounts.add_device(user_id, region_id, name, token_hash(token)), token

    async def resolve(self, token: str) -> Holder | None:
        """The nurse the device token ``token`` acts for, with the device and her memberships."""
        return await self._accounts.device_login(token_hash(token))

    async def revoke(self, device_id: int) -> bool:
        return await self._accounts.revoke_device(device_id)
