"""The demo's accounts: written once, into an empty database, by :mod:`woundcare.demo`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from ..db.database import Database
from ..db.models import Membership, Region, StaffRole, User


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    display_name: str
    password_hash: str
    role: StaffRole


async def seed_accounts(db: Database, code: str, name: str, users: Sequence[DemoUser]) -> int | None:
    """Region ``code`` with ``users`` in their roles, in one transaction, if the database has
    no region yet; returns the region's id, or None if it was not empty."""
    async with db.sessions() as session, session.begin():
        if await session.scalar(select(func.count()).select_from(Region)):
            return None
        region = Region(code=code, name=name)
        session.add(region)
        await session.flush()
        for demo in users:
            user = User(username=demo.username, display_name=demo.display_name, password_hash=demo.password_hash)
            session.add(user)
            await session.flush()
            session.add(Membership(user_id=user.id, region_id=region.id, role=demo.role))
        return region.id
