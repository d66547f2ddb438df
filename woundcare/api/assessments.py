"""``/api/consultations/{id}/assessment``: the specialist's structured assessment, and its
plan back to the nurse: acknowledged once (``/acknowledge``), the unacknowledged ones of her
regions listed (``/api/plans/unacknowledged``).

Its ``ETag`` is the assessment's version. A save or a signing sent with ``If-Match`` applies
only to that version, else ``412 precondition_failed``: an editor who saved from a stale page
(another tab, another specialist) learns so instead of overwriting, and signs only what they
saw.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action, regions_for
from ..records.assessments import (
    AssessmentChanged,
    AssessmentContent,
    AssessmentError,
    AssessmentSigned,
    AssessmentView,
)
from .body import json_body
from .errors import api_error, http_error
from .guard import audit_target, requires, subject
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


def _response(view: AssessmentView | None, missing: str = "no assessment yet") -> web.Response:
    """The assessment with its version as the ``ETag``; None is a 404 saying ``missing``."""
    if view is None:
        raise api_error(404, "not_found", missing)
    response = web.json_response(view.json())
    response.etag = str(view.version)
    return response


@routes.get("/api/consultations/{id}/assessment")
@requires(Action.ASSESSMENT_READ)
async def read_assessment(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.ASSESSMENT_READ)
    return _response(await services(request).assessments.get(view.id))


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
    return _response(signed, "no assessment to sign")


@routes.post("/api/consultations/{id}/assessment/acknowledge")
@requires(Action.PLAN_ACKNOWLEDGE)
async def acknowledge_plan(request: web.Request) -> web.Response:
    """The nurse has received the signed plan. Idempotent: again, it answers the first
    acknowledgement (each call is audited; the row records the first). A draft's
    :class:`~woundcare.records.assessments.NotSigned` rises to the guard, which answers and
    audits it (409 not_signed)."""
    view = await load_visible(request, CONSULTATION, Action.PLAN_ACKNOWLEDGE)
    return _response(await services(request).assessments.acknowledge(view.id, subject(request).ref))


@routes.get("/api/plans/unacknowledged")
@requires(Action.PLAN_LIST)
async def unacknowledged_plans(request: web.Request) -> web.Response:
    """The signed plans of the caller's regions that no nurse has acknowledged, oldest first."""
    pending = await services(request).assessments.unacknowledged(regions_for(subject(request), Action.PLAN_LIST))
    audit_target(request, f"plans:{len(pending)}")
    return web.json_response({"plans": [p.json() for p in pending]})
