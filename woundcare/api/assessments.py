"""``/api/consultations/{id}/assessment``: the specialist's structured assessment."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import ASSESSMENTS
from ..auth.policy import Action
from ..records.assessments import AssessmentContent, AssessmentError, AssessmentSigned, AssessmentView
from .body import json_body
from .consultations import visible_consultation
from .errors import api_error
from .guard import actor, requires

routes = web.RouteTableDef()


def _signed() -> web.HTTPException:
    return api_error(409, "signed", "the assessment is signed and can no longer change")


@routes.get("/api/consultations/{id}/assessment")
@requires(Action.ASSESSMENT_READ)
async def read_assessment(request: web.Request) -> web.Response:
    view = await visible_consultation(request, Action.ASSESSMENT_READ)
    found = await request.config_dict[ASSESSMENTS].get(view.id)
    if found is None:
        raise api_error(404, "not_found", "no assessment yet")
    return web.json_response(found.json())


@routes.put("/api/consultations/{id}/assessment")
@requires(Action.ASSESSMENT_WRITE)
async def save_assessment(request: web.Request) -> web.Response:
    view = await visible_consultation(request, Action.ASSESSMENT_WRITE)
    try:
        content = AssessmentContent.from_json(await json_body(request))
        saved: AssessmentView = await request.config_dict[ASSESSMENTS].save(
            view.id, view.region_id, content, actor(request).subject
        )
    except AssessmentError as exc:
        raise api_error(400, "bad_assessment", str(exc)) from None
    except AssessmentSigned:
        raise _signed() from None
    return web.json_response(saved.json())


@routes.post("/api/consultations/{id}/assessment/sign")
@requires(Action.ASSESSMENT_SIGN)
async def sign_assessment(request: web.Request) -> web.Response:
    view = await visible_consultation(request, Action.ASSESSMENT_SIGN)
    try:
        signed = await request.config_dict[ASSESSMENTS].sign(view.id, actor(request).subject)
    except AssessmentError as exc:
        raise api_error(400, "bad_assessment", str(exc)) from None
    except AssessmentSigned:
        raise _signed() from None
    if signed is None:
        raise api_error(404, "not_found", "no assessment to sign")
    return web.json_response(signed.json())
