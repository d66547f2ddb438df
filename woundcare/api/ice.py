"""``GET /api/ice-servers``: STUN/TURN servers with short-lived TURN credentials."""

from __future__ import annotations

from aiohttp import web

from signaling.turn import ice_servers

from ..appkeys import services
from ..auth.policy import Action
from .guard import requires, subject

routes = web.RouteTableDef()


@routes.get("/api/ice-servers")
@requires(Action.ICE_SERVERS)
async def get_ice_servers(request: web.Request) -> web.Response:
    settings = services(request).settings
    secret = settings.turn_secret.get_secret_value().encode() if settings.turn_secret else None
    servers = ice_servers(
        settings.stun_urls, settings.turn_urls, secret, subject(request).ref, settings.turn_ttl_seconds
    )
    return web.json_response(
        {
            "iceServers": servers,
            "iceTransportPolicy": settings.ice_transport_policy,
            "ttlSeconds": settings.turn_ttl_seconds,
        },
        headers={"Cache-Control": "no-store"},
    )
