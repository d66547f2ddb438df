"""``/api/devices``: issue and revoke head-camera device tokens (admins)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from .body import NewDevice
from .errors import api_error
from .guard import audit_target, requires
from .regions import read_regional_body
from .visible import DEVICE, load_visible

routes = web.RouteTableDef()


@routes.post("/api/devices")
@requires(Action.DEVICE_ISSUE)
async def issue_device(request: web.Request) -> web.Response:
    body, region_id = await read_regional_body(request, NewDevice, Action.DEVICE_ISSUE)
    username, name = body.user, body.name
    user_id = await services(request).accounts.active_nurse(username, region_id)
    if user_id is None:
        raise api_error(400, "bad_request", "'user' must be an active nurse of this region")
    device_id, token = await services(request).devices.issue(user_id, region_id, name)
    audit_target(request, f"device:{device_id}", region_id)
    return web.json_response({"id": device_id, "token": token}, status=201)


@routes.delete("/api/devices/{id}")
@requires(Action.DEVICE_REVOKE)
async def revoke_device(request: web.Request) -> web.Response:
    device = await load_visible(request, DEVICE, Action.DEVICE_REVOKE)
    await services(request).devices.revoke(device.id)
    return web.Response(status=204)
