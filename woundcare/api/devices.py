"""``/api/devices``: issue and revoke head-camera device tokens (admins)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from ..appkeys import services
from ..auth.policy import Action
from ..db.models import Device, Membership, Role, User
from .body import NewDevice, read_body
from .errors import api_error
from .guard import audit_target, may, requires
from .regions import checked_region

routes = web.RouteTableDef()


@routes.post("/api/devices")
@requires(Action.DEVICE_ISSUE)
async def issue_device(request: web.Request) -> web.Response:
    body = await read_body(request, NewDevice)
    region_id = await checked_region(request, body.region, Action.DEVICE_ISSUE)
    username, name = body.user, body.name
    async with services(request).database.sessions() as session:
        user_id = await session.scalar(
            select(User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(
                User.username == username,
                User.active.is_(True),
                Membership.region_id == region_id,
                Membership.role == Role.NURSE,
            )
        )
    if user_id is None:
        raise api_error(400, "bad_request", "'user' must be an active nurse of this region")
    device_id, token = await services(request).devices.issue(user_id, region_id, name)
    audit_target(request, f"device:{device_id}", region_id)
    return web.json_response({"id": device_id, "token": token}, status=201)


@routes.delete("/api/devices/{id}")
@requires(Action.DEVICE_REVOKE)
async def revoke_device(request: web.Request) -> web.Response:
    try:
        device_id = int(request.match_info["id"])
    except ValueError:
        raise api_error(404, "not_found", "no such device") from None
    async with services(request).database.sessions() as session:
        region_id = await session.scalar(select(Device.region_id).where(Device.id == device_id))
    # Another region's device answers like none, so ids do not tell what exists elsewhere.
    if region_id is None or not may(request, Action.DEVICE_REVOKE, f"device:{device_id}", region_id):
        raise api_error(404, "not_found", "no such device")
    await services(request).devices.revoke(device_id)
    return web.Response(status=204)
