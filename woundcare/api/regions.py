"""``/api/regions``: the pilot regions the caller serves, with their roles there."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from ..appkeys import services
from ..auth.policy import Action, Actor
from ..db.models import Region
from .errors import api_error
from .guard import actor, check, requires

routes = web.RouteTableDef()


async def regions_of(request: web.Request, who: Actor) -> list[dict[str, object]]:
    if not who.roles:
        return []
    async with services(request).database.sessions() as session:
        rows = (await session.scalars(select(Region).where(Region.id.in_(who.roles)).order_by(Region.code))).all()
    return [
        {"code": r.code, "name": r.name, "roles": sorted(role.value for role in who.roles[r.id])} for r in rows
    ]


@routes.get("/api/regions")
@requires(Action.REGIONS_LIST)
async def list_regions(request: web.Request) -> web.Response:
    return web.json_response({"regions": await regions_of(request, actor(request))})


async def region_id_for(request: web.Request, code: str) -> int | None:
    async with services(request).database.sessions() as session:
        return await session.scalar(select(Region.id).where(Region.code == code, Region.shredded_at.is_(None)))


async def checked_region(request: web.Request, code: str, action: Action) -> int:
    """The id of region ``code`` if the caller may ``action`` there; an unknown region is
    refused like a foreign one."""
    region_id = await region_id_for(request, code)
    if region_id is None:
        raise api_error(403, "forbidden", "not allowed")
    check(request, action, region_id)
    return region_id
