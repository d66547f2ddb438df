"""``GET /api/ice-servers``: STUN/TURN servers with short-lived TURN credentials."""

from __future__ import annotations

from aiohttp import web

from signaling.turn import ice_servers

from ..appkeys import INVITATIONS, SETTINGS
from ..auth.invitations import Invitation, InvitationError
from .errors import api_error

routes = web.RouteTableDef()


def bearer_invitation(request: web.Request) -> Invitation:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise api_error(401, "unauthorized", "a bearer token is required")
    try:
        return request.config_dict[INVITATIONS].verify(token.strip())
    except InvitationError as exc:
        raise api_error(401, exc.code, exc.message) from None


@routes.get("/api/ice-servers")
async def get_ice_servers(request: web.Request) -> web.Response:
    invitation = bearer_invitation(request)
    settings = request.config_dict[SETTINGS]
    secret = settings.turn_secret.get_secret_value().encode() if settings.turn_secret else None
    servers = ice_servers(
        settings.stun_urls, settings.turn_urls, secret, invitation.subject, settings.turn_ttl_seconds
    )
    return web.json_response(
        {"iceServers": servers, "ttlSeconds": settings.turn_ttl_seconds},
        headers={"Cache-Control": "no-store"},
    )
