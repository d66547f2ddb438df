"""``/api/devices``: issue and revoke head-camera device tokens (admins)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ACCOUNTS, DEVICES
from ..auth.policy import Action
from .body import json_body, text_field
from .errors import api_error
from .guard import audit_target, requires
from .regions import checked_region
from .visible import DEVICE, load_visible

routes = web.RouteTableDef()


@routes.post("/api/devices")
@requires(Action.DEVICE_ISSUE)
async def issue_device(request: web.Request) -> web.Response:
    data = await json_body(request)
    region_id = await checked_region(request, text_field(data, "region", max_length=32) or "", Action.DEVICE_ISSUE)
    username = text_field(data, "user", max_length=64) or ""
    name = text_field(data, "name", max_length=100) or ""
    user_id = await request.config_dict[ACCOUNTS].active_nurse(username, region_id)
    if user_id is None:
        raise api_error(400, "bad_request", "'user' must be an active nurse of this region")
    device_id, token = await request.config_dict[DEVICES].issue(user_id, region_id, name)
    audit_target(request, f"device:{device_id}", region_id)
    return web.json_response({"id": device_id, "token": token}, status=201)


@routes.delete("/api/devices/{id}")
@requires(Action.DEVICE_REVOKE)
async def revoke_device(request: web.Request) -> web.Response:
    device = await load_visible(request, DEVICE, Action.DEVICE_REVOKE)
    await request.config_dict[DEVICES].revoke(device.id)
    return web.Response(status=204)
