"""``/api/retention``: what is past its region's retention period, and deleting it (admins)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from .body import RegionChoice, read_body
from .errors import api_error
from .guard import audit_target, requires
from .regions import checked_region

routes = web.RouteTableDef()


@routes.get("/api/retention")
@requires(Action.RETENTION_MANAGE)
async def retention_due(request: web.Request) -> web.Response:
    code = request.query.get("region")
    if not code:
        raise api_error(400, "bad_request", "'region' is required")
    region_id = await checked_region(request, code, Action.RETENTION_MANAGE)
    days, due = await services(request).retention.due(region_id)
    audit_target(request, f"region:{code}", region_id)
    return web.json_response(
        {
            "region": code,
            "retentionDays": days,
            "due": [{"consultation": d.consultation, "endedAt": d.ended_at.isoformat()} for d in due],
        }
    )


@routes.post("/api/retention/purge")
@requires(Action.RETENTION_MANAGE)
async def retention_purge(request: web.Request) -> web.Response:
    code = (await read_body(request, RegionChoice)).region
    region_id = await checked_region(request, code, Action.RETENTION_MANAGE)
    deleted = await services(request).retention.purge(region_id)
    audit_target(request, f"consultations:{len(deleted)}", region_id)
    return web.json_response({"region": code, "deleted": deleted})
