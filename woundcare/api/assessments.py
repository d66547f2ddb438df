"""``/api/consultations/{id}/assessment``: the specialist's structured assessment.

Its ``ETag`` is the assessment's version. A save or a signing sent with ``If-Match`` applies
only to that version, else ``412 precondition_failed``: an editor who saved from a stale page
(another tab, another specialist) learns so instead of overwriting, and signs only what they
saw.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..records.assessments import (
    AssessmentChanged,
    AssessmentContent,
    AssessmentError,
    AssessmentSigned,
    AssessmentView,
)
from .body import json_body
from .errors import api_error, http_error
from .guard import requires, subject
from .visible import CONSULTATION, load_visible

routes = web.RouteTableDef()


def _expected_version(request: web.Request) -> int | None:
    """The version ``If-Match`` names; None without one (or with ``*``)."""
    tags = request.if_match
    if not tags or any(tag.value == "*" for tag in tags):
        return None
    # If-Match compares strongly: a weak tag matches nothing.
    versions = {int(tag.value) for tag in tags if not tag.is_weak and tag.value.isdigit()}
    if len(versions) != 1:
        raise http_error(AssessmentChanged())
    return versions.pop()


def _response(view: AssessmentView) -> web.Response:
    response = web.json_response(view.json())
    response.etag = str(view.version)
    return response


@routes.get("/api/consultations/{id}/assessment")
@requires(Action.ASSESSMENT_READ)
async def read_assessment(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.ASSESSMENT_READ)
    found = await services(request).assessments.get(view.id)
    if found is None:
        raise api_error(404, "not_found", "no assessment yet")
    return _response(found)


@routes.put("/api/consultations/{id}/assessment")
@requires(Action.ASSESSMENT_WRITE)
async def save_assessment(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.ASSESSMENT_WRITE)
    expected = _expected_version(request)
    try:
        content = AssessmentContent.from_json(await json_body(request))
        saved: AssessmentView = await services(request).assessments.save(
            view.id, view.region_id, content, subject(request).ref, expected
        )
    except (AssessmentError, AssessmentSigned, AssessmentChanged) as exc:
        raise http_error(exc) from None
    return _response(saved)


@routes.post("/api/consultations/{id}/assessment/sign")
@requires(Action.ASSESSMENT_SIGN)
async def sign_assessment(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.ASSESSMENT_SIGN)
    expected = _expected_version(request)
    try:
        signed = await services(request).assessments.sign(view.id, subject(request).ref, expected)
    except (AssessmentError, AssessmentSigned, AssessmentChanged) as exc:
        raise http_error(exc) from None
    if signed is None:
        raise api_error(404, "not_found", "no assessment to sign")
    return _response(signed)
