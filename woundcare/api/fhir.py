"""``GET /api/consultations/{id}/fhir``: the consultation as a FHIR R4 Bundle
(pseudonymous; see ``woundcare.pilot.fhir``)."""

from __future__ import annotations

import orjson
from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..pilot.fhir import export_bundle
from .errors import api_error
from .guard import requires
from .visible import CONSULTATION, load_visible

routes = web.RouteTableDef()


@routes.get("/api/consultations/{id}/fhir")
@requires(Action.FHIR_EXPORT)
async def consultation_bundle(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.FHIR_EXPORT)
    bundle = await export_bundle(services(request), view.id)
    if bundle is None:
        raise api_error(404, "not_found", "no such consultation")
    return web.Response(
        body=orjson.dumps(bundle),
        content_type="application/fhir+json",
        headers={"Cache-Control": "no-store"},
    )
