"""``/api/patients``: register and look up patients of one's regions.

A patient outside the caller's regions answers exactly like a patient that does not
exist, so nobody learns whether a pseudonym exists in another region.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action, regions_for
from ..records.patients import PatientIdentity, PatientView
from .body import NationalIdLookup, NewPatient
from .errors import api_error
from .guard import audit_target, requires, subject
from .regions import read_regional_body, region_id_for
from .visible import PATIENT, load_visible

routes = web.RouteTableDef()


def patient_json(view: PatientView) -> dict[str, object]:
    body: dict[str, object] = {"id": view.pseudonym}
    if view.identity is not None:
        body["name"] = view.identity.name
        body["nationalId"] = view.identity.national_id
    return body


@routes.post("/api/patients")
@requires(Action.PATIENT_CREATE)
async def register_patient(request: web.Request) -> web.Response:
    """201 with a new patient; 200 with the region's patient of that national id if there is
    one (``existed``: the name given is not stored, the one registered first is answered)."""
    body, region_id = await read_regional_body(request, NewPatient, Action.PATIENT_CREATE)
    known = await services(request).pilot.municipalities(region_id) if body.municipality is not None else []
    if body.municipality is not None and body.municipality not in known:
        # From the lead's list only: a free-text name would never match a travel distance.
        raise api_error(400, "unknown_municipality", "'municipality' must be one of the region's municipalities")
    identity = PatientIdentity(body.national_id, body.name)
    view = await services(request).patients.register(region_id, identity, body.municipality)
    # A known number answers the patient registered first: audited as that record read, not made.
    audit_target(request, f"patient:{view.pseudonym}{':existing' if view.existed else ''}", region_id)
    return web.json_response({**patient_json(view), "existed": view.existed}, status=200 if view.existed else 201)


@routes.post("/api/patients/lookup")
@requires(Action.PATIENT_LIST)
async def find_patient(request: web.Request) -> web.Response:
    """The region's patient of a national id, or ``null``: the number comes in the body, so
    it is in no URL, access log or browser history."""
    body, region_id = await read_regional_body(request, NationalIdLookup, Action.PATIENT_LIST)
    patients = services(request).patients
    found = await patients.by_national_id(region_id, body.national_id)
    audit_target(request, f"patient:{found.pseudonym if found else 'none'}", region_id)
    if found is None:
        return web.json_response({"patient": None})
    view = PatientView(found.pseudonym, found.region_id, await patients.identity(found))
    return web.json_response({"patient": patient_json(view)})


@routes.get("/api/patients")
@requires(Action.PATIENT_LIST)
async def list_patients(request: web.Request) -> web.Response:
    regions = regions_for(subject(request), Action.PATIENT_LIST)
    code = request.query.get("region")
    if code is not None:
        region_id = await region_id_for(request, code)
        regions = [r for r in regions if r == region_id]
    patients = services(request).patients
    rows = await patients.in_regions(regions)
    audit_target(request, f"patients:{len(rows)}")
    return web.json_response(
        {
            "patients": [
                patient_json(PatientView(p.pseudonym, p.region_id, await patients.identity(p))) for p in rows
            ]
        }
    )


@routes.get("/api/patients/{id}")
@requires(Action.PATIENT_READ)
async def read_patient(request: web.Request) -> web.Response:
    patient = await load_visible(request, PATIENT, Action.PATIENT_READ)
    patients = services(request).patients
    return web.json_response(
        patient_json(PatientView(patient.pseudonym, patient.region_id, await patients.identity(patient)))
    )


@routes.get("/api/patients/{id}/access-log")
@requires(Action.PATIENT_ACCESS_LOG)
async def access_log(request: web.Request) -> web.Response:
    """Which staff opened this patient's records and when (the patient's right to know)."""
    patient = await load_visible(request, PATIENT, Action.PATIENT_ACCESS_LOG)
    entries = await services(request).access_log.of_patient(patient.id, patient.pseudonym)
    return web.json_response({"patient": patient.pseudonym, "accesses": [e.json() for e in entries]})
