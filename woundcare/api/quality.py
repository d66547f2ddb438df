"""``/api/consultations/{id}/quality``: clients report call quality every few seconds."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action, authorize
from ..records.quality import QualityError, Sample
from .body import json_body
from .errors import http_error
from .guard import requires, subject
from .visible import CONSULTATION, load_visible

routes = web.RouteTableDef()


@routes.post("/api/consultations/{id}/quality")
@requires(Action.QUALITY_REPORT)
async def report_quality(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.QUALITY_REPORT)
    try:
        sample = Sample.from_json(await json_body(request))
    except QualityError as exc:
        raise http_error(exc) from None
    role = authorize(subject(request), Action.QUALITY_REPORT, view).role
    await services(request).quality.record(view.id, view.region_id, role.value, sample)
    return web.Response(status=204)
