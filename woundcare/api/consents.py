"""``/api/consultations/{id}/consents``: the patient's consent, recorded by the nurse."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action
from ..db.models import ConsentKind
from .body import json_body
from .errors import api_error
from .guard import requires, subject
from .visible import CONSULTATION, load_visible

routes = web.RouteTableDef()


def consents_json(answers: dict[ConsentKind, bool]) -> dict[str, object]:
    return {"consents": {kind.value: given for kind, given in answers.items()}}


@routes.post("/api/consultations/{id}/consents")
@requires(Action.CONSENT_RECORD)
async def record_consent(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.CONSENT_RECORD)
    data = await json_body(request)
    given: dict[ConsentKind, bool] = {}
    for name, value in data.items():
        try:
            kind = ConsentKind(name)
        except ValueError:
            raise api_error(400, "bad_request", f"consents are {', '.join(k.value for k in ConsentKind)}") from None
        if not isinstance(value, bool):
            raise api_error(400, "bad_request", f"'{kind.value}' must be true or false")
        given[kind] = value
    if not given:
        raise api_error(400, "bad_request", "no consent given or refused")
    consents = services(request).consents
    await consents.record(view.id, view.patient_id, view.region_id, given, subject(request).ref)
    current = await consents.current(view.id)
    if not current[ConsentKind.RECORDING]:
        await services(request).recording_uploads.stop_consultation(view.id, "consent_withdrawn")
    return web.json_response(consents_json(current), status=201)


@routes.get("/api/consultations/{id}/consents")
@requires(Action.CONSULTATION_READ)
async def read_consent(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_READ)
    return web.json_response(consents_json(await services(request).consents.current(view.id)))
