"""``/api/consultations``: start (a call or an e-consult), the caller's live calls and sent
e-consults, queue, read, join, end (guests: :mod:`.guests`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from signaling.handler import ROOMS
from signaling.protocol import CloseCode, ErrorCode

from ..appkeys import QUEUE, SERVICES, services
from ..auth.policy import Action, authorize, regions_for, room_role
from ..db.models import ConsultationKind
from ..records.consultations import ConsultationLive, ConsultationView
from .body import NewConsultation, read_body
from .errors import api_error, http_error
from .guard import audit_target, requires, subject
from .visible import CONSULTATION, PATIENT, load_visible

routes = web.RouteTableDef()

JOIN_TOKEN_SECONDS = 600


@routes.post("/api/consultations")
@requires(Action.CONSULTATION_START)
async def start_consultation(request: web.Request) -> web.Response:
    body = await read_body(request, NewConsultation)
    econsult = body.kind is ConsultationKind.ECONSULT
    if econsult != (body.question is not None) or econsult != (body.urgency is not None):
        raise api_error(400, "bad_request", "'question' and 'urgency' are given for an e-consult, and only for one")
    patient = await load_visible(request, PATIENT, Action.CONSULTATION_START, body.patient)
    who = subject(request)
    try:
        if body.question is not None and body.urgency is not None:
            view = await services(request).consultations.send_econsult(
                patient, who.user_id, body.question, body.urgency
            )
        else:
            view = await services(request).consultations.start(patient, who.user_id)
    except ConsultationLive as error:
        # A second one would split the record while the specialist waits in the first: the
        # nurse rejoins that one instead, which the answer names.
        audit_target(request, f"consultation:{error.live.id}", error.live.region_id)
        raise http_error(error) from None
    audit_target(request, f"consultation:{view.id}", view.region_id)
    return web.json_response(view.json(), status=201)


@routes.get("/api/consultations/live")
@requires(Action.CONSULTATION_READ)
async def live_consultations(request: web.Request) -> web.Response:
    """The caller's own consultations that are not over (waiting or active), to rejoin."""
    who = subject(request)
    views = (
        await services(request).consultations.live(who.user_id, regions_for(who, Action.CONSULTATION_READ))
        if who.user_id is not None
        else []
    )
    return web.json_response({"consultations": [v.json() for v in views]})


@routes.get("/api/consultations/econsults")
@requires(Action.CONSULTATION_READ)
async def sent_econsults(request: web.Request) -> web.Response:
    """The caller's own e-consults, newest first, each with its question and, once signed,
    the answer."""
    who = subject(request)
    found = services(request)
    views = (
        await found.consultations.sent_econsults(who.user_id, regions_for(who, Action.CONSULTATION_READ))
        if who.user_id is not None
        else []
    )
    listed = []
    for view in views:
        answer = await found.assessments.get(view.id)
        listed.append({
            **await _with_question(request, view),
            "answer": answer.json() if answer is not None and answer.signed_at is not None else None,
        })
    audit_target(request, f"econsults:{len(listed)}")
    return web.json_response({"consultations": listed})


async def _with_question(request: web.Request, view: ConsultationView) -> dict[str, object]:
    body = view.json()
    if view.kind is ConsultationKind.ECONSULT:
        body["question"] = await services(request).consultations.question(view)
    return body


@routes.get("/api/consultations/queue")
@requires(Action.CONSULTATION_QUEUE)
async def queue(request: web.Request) -> web.Response:
    entries = await request.config_dict[QUEUE].entries(regions_for(subject(request), Action.CONSULTATION_QUEUE))
    now = datetime.now(UTC)
    return web.json_response({"consultations": [e.json(now) for e in entries]})


@routes.get("/api/consultations/{id}")
@requires(Action.CONSULTATION_READ)
async def read_consultation(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_READ)
    body = await _with_question(request, view)
    body["events"] = [e.json() for e in await services(request).consultations.events(view.id)]
    return web.json_response(body)


@routes.post("/api/consultations/{id}/join-token")
@requires(Action.CONSULTATION_JOIN)
async def join_token(request: web.Request) -> web.Response:
    """A short-lived signaling token for the logged-in nurse (camera) or specialist."""
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_JOIN)
    if view.ended_at is not None:
        raise api_error(409, "ended", "this consultation has ended")
    if view.kind is ConsultationKind.ECONSULT:
        raise api_error(409, "econsult", "an e-consult has no call to join")
    who = subject(request)
    wire_role = room_role(authorize(who, Action.CONSULTATION_JOIN, view).role)
    token = services(request).invitations.issue(
        view.id, wire_role, who.ref, who.display_name, view.region, JOIN_TOKEN_SECONDS
    )
    return web.json_response({"token": token, "role": wire_role.value, "consultation": view.id})


@routes.post("/api/consultations/{id}/end")
@requires(Action.CONSULTATION_END)
async def end_consultation(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_END)
    await services(request).consultations.end(view.id)
    # Finished before the answer, so the recording is complete once the consultation has ended.
    await close_consultation(request.config_dict, view.id, "the consultation has ended")
    return web.Response(status=204)


async def close_consultation(app: Mapping[Any, Any], consultation_id: str, message: str) -> None:
    """After the record says ended or abandoned: finish the recording, then close the room."""
    await app[SERVICES].recording_uploads.stop_consultation(consultation_id, "ended")
    app[ROOMS].close_room(consultation_id, CloseCode.NORMAL, ErrorCode.ENDED, message)
