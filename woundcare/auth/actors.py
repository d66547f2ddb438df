"""Building an :class:`Actor` from a user (and the device or session it came through)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Membership, Region, Role, User
from .policy import Actor


async def actor_for(
    session: AsyncSession,
    user: User,
    *,
    device_id: int | None = None,
    device_region: int | None = None,
    session_id: str | None = None,
) -> Actor:
    rows = (
        await session.execute(
            select(Membership.region_id, Membership.role)
            .join(Region, Region.id == Membership.region_id)
            .where(Membership.user_id == user.id, Region.shredded_at.is_(None))
        )
    ).all()
    roles: dict[int, set[Role]] = defaultdict(set)
    for region_id, role in rows:
        # A device acts as its nurse in its one region and nothing more.
        if device_id is None or (region_id == device_region and role is Role.NURSE):
            roles[region_id].add(role)
    return Actor(
        subject=f"d{device_id}" if device_id is not None else f"u{user.id}",
        user_id=user.id,
        display_name=user.display_name,
        roles={region: frozenset(r) for region, r in roles.items()},
        device_id=device_id,
        session_id=session_id,
    )
