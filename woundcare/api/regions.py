"""``/api/regions``: the pilot regions the caller serves, with their roles there."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from ..appkeys import services
from ..auth.policy import Action, Denied, InRegion, authorize
from ..auth.subject import Subject
from .body import RegionChoice, body_as, json_body
from .errors import api_error
from .guard import AUDIT_REGION, SUBJECT, requires, subject

routes = web.RouteTableDef()

M = TypeVar("M", bound=BaseModel)


async def regions_of(request: web.Request, who: Subject) -> list[dict[str, object]]:
    rows = await services(request).accounts.regions(list(who.roles))
    return [
        {"code": r.code, "name": r.name, "roles": sorted(role.value for role in who.roles[r.id])} for r in rows
    ]


@routes.get("/api/regions")
@requires(Action.REGIONS_LIST)
async def list_regions(request: web.Request) -> web.Response:
    return web.json_response({"regions": await regions_of(request, subject(request))})


async def region_id_for(request: web.Request, code: str) -> int | None:
    return await services(request).accounts.region_id(code)


async def checked_region(request: web.Request, code: str, action: Action) -> int:
    """The id of region ``code`` if the caller may ``action`` there; an unknown region is
    refused like a foreign one (403: a region's code is no secret, its existence neither)."""
    region_id = await region_id_for(request, code)
    if region_id is None:
        raise api_error(403, "forbidden", "not allowed")
    try:
        authorize(request.get(SUBJECT), action, InRegion(region_id))
    except Denied:
        request[AUDIT_REGION] = region_id
        raise api_error(403, "forbidden", "not allowed") from None
    return region_id


async def read_regional_body(request: web.Request, model: type[M], action: Action) -> tuple[M, int]:
    """The body as ``model`` and the id of the region it names, that region checked first.

    The caller's right in the region comes before the rest of the form, as it did when
    fields were read one by one: a foreign or unknown region answers 403 (audited as denied,
    with the region) whatever else the body holds, never a 400 about another field.
    """
    data = await json_body(request)
    region_id = await checked_region(request, body_as(RegionChoice, data).region, action)
    return body_as(model, data), region_id
