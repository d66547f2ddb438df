"""``/api/consultations/{id}/quality``: clients report call quality every few seconds."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..records.quality import QualityError, Sample
from .body import json_body
from .consultations import visible_consultation
from .errors import http_error
from .guard import check, requires

routes = web.RouteTableDef()


@routes.post("/api/consultations/{id}/quality")
@requires(Action.QUALITY_REPORT)
async def report_quality(request: web.Request) -> web.Response:
    view = await visible_consultation(request, Action.QUALITY_REPORT)
    try:
        sample = Sample.from_json(await json_body(request))
    except QualityError as exc:
        raise http_error(exc) from None
    role = check(request, Action.QUALITY_REPORT, view.region_id)
    await services(request).quality.record(view.id, view.region_id, role.value, sample)
    return web.Response(status=204)
