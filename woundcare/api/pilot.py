"""``/api/pilot``: the pilot's figures per region, and the session log behind them.

For pilot leads (and admins) of a region; a named region where the caller holds no such
role is refused like an unknown one (403), and without a region the answer covers exactly
the caller's own regions. Every call, the CSV exports included, is audited by the guard.

Query parameters: ``region`` (code, optional), ``from`` and ``to`` (``YYYY-MM-DD``, days in
the pilot's time zone, both included, each optional): see :mod:`woundcare.pilot.figures` and
:mod:`woundcare.pilot.effect` for the definitions (docs/pilot-figures.md). The effect comes as
JSON, CSV (per region and per wound) and FHIR MeasureReports.

``/api/pilot/municipalities`` is for nurses: the region's municipalities to register a patient
in, which are the ones its lead entered a distance for.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action, regions_for
from ..pilot.figures import (
    DEFAULT_TRAVEL,
    FIGURES_COLUMNS,
    SESSIONS_COLUMNS,
    Period,
    RegionRef,
    compute_figures,
    econsult_figures,
    list_sessions,
    to_csv,
    visible_regions,
)
from ..pilot.effect import EFFECT_COLUMNS, WOUNDS_COLUMNS, EffectFigures, compute_effect
from ..pilot.measure_report import measure_bundle
from .body import Travel
from .errors import api_error
from .guard import audit_target, requires, subject
from .regions import checked_region, read_regional_body

routes = web.RouteTableDef()

ACTION = Action.PILOT_FIGURES


def _day(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise api_error(400, "bad_date", f"'{name}' must be a date as YYYY-MM-DD") from None


def _period(request: web.Request) -> Period:
    try:
        zone = ZoneInfo(services(request).settings.pilot_timezone)
        return Period(_day(request, "from"), _day(request, "to"), zone)
    except ValueError as exc:
        raise api_error(400, "bad_period", str(exc)) from None


async def _regions(request: web.Request, what: str) -> list[RegionRef]:
    """The regions asked for, all of them the caller's; a foreign or unknown one is a 403."""
    code = request.query.get("region")
    if code:
        region_id = await checked_region(request, code, ACTION)
        audit_target(request, f"pilot:{what}:{code}"[:120], region_id)
        ids = [region_id]
    else:
        audit_target(request, f"pilot:{what}")
        ids = regions_for(subject(request), ACTION)
    return await visible_regions(services(request).accounts, ids)


def _csv(text: str, filename: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@routes.get("/api/pilot/figures")
@requires(Action.PILOT_FIGURES)
async def figures(request: web.Request) -> web.Response:
    period = _period(request)
    regions = await _regions(request, "figures")
    found = await compute_figures(services(request).pilot, regions, period)
    return web.json_response(
        {
            **period.json(),
            "percentile": "nearest-rank",
            "travelAssumption": {
                "kmPerTrip": DEFAULT_TRAVEL.km,
                "hoursPerTrip": DEFAULT_TRAVEL.hours,
                "usedFor": "municipalities without an entered distance",
            },
            "regions": [f.json() for f in found],
        },
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/api/pilot/figures.csv")
@requires(Action.PILOT_FIGURES)
async def figures_csv(request: web.Request) -> web.Response:
    period = _period(request)
    regions = await _regions(request, "figures.csv")
    found = await compute_figures(services(request).pilot, regions, period)
    return _csv(to_csv(FIGURES_COLUMNS, [f.row() for f in found]), "pilot-figures.csv")


@routes.get("/api/pilot/sessions")
@requires(Action.PILOT_FIGURES)
async def sessions(request: web.Request) -> web.Response:
    period = _period(request)
    regions = await _regions(request, "sessions")
    found = await list_sessions(services(request).pilot, regions, period)
    return web.json_response(
        {**period.json(), "sessions": [s.json() for s in found]}, headers={"Cache-Control": "no-store"}
    )


@routes.get("/api/pilot/sessions.csv")
@requires(Action.PILOT_FIGURES)
async def sessions_csv(request: web.Request) -> web.Response:
    period = _period(request)
    regions = await _regions(request, "sessions.csv")
    found = await list_sessions(services(request).pilot, regions, period)
    return _csv(to_csv(SESSIONS_COLUMNS, [s.row() for s in found]), "pilot-sessions.csv")


async def _effect(request: web.Request, what: str) -> tuple[Period, list[EffectFigures]]:
    """The period asked for and the effect figures of the regions asked for in it."""
    period = _period(request)
    regions = await _regions(request, what)
    return period, await compute_effect(services(request).pilot, regions, period)


@routes.get("/api/pilot/effect")
@requires(Action.PILOT_FIGURES)
async def effect(request: web.Request) -> web.Response:
    """Evidence of effect per region (see :mod:`woundcare.pilot.effect`), with each wound's
    area over time by pseudonym."""
    period, found = await _effect(request, "effect")
    wounds = [w.json() for f in found for w in f.wounds]
    body = {**period.json(), "regions": [f.json() for f in found], "wounds": wounds}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.get("/api/pilot/effect.csv")
@requires(Action.PILOT_FIGURES)
async def effect_csv(request: web.Request) -> web.Response:
    _, found = await _effect(request, "effect.csv")
    return _csv(to_csv(EFFECT_COLUMNS, [f.row() for f in found]), "pilot-effect.csv")


@routes.get("/api/pilot/wounds.csv")
@requires(Action.PILOT_FIGURES)
async def wounds_csv(request: web.Request) -> web.Response:
    _, found = await _effect(request, "wounds.csv")
    return _csv(to_csv(WOUNDS_COLUMNS, [w.row() for f in found for w in f.wounds]), "pilot-wounds.csv")


@routes.get("/api/pilot/effect.fhir")
@requires(Action.PILOT_FIGURES)
async def effect_fhir(request: web.Request) -> web.Response:
    """The effect figures as a FHIR Bundle of MeasureReports, one per region."""
    period, found = await _effect(request, "effect.fhir")
    return web.Response(
        body=orjson.dumps(measure_bundle(found, period, datetime.now(UTC))),
        content_type="application/fhir+json",
        headers={"Content-Disposition": 'attachment; filename="pilot-effect.fhir.json"', "Cache-Control": "no-store"},
    )


@routes.get("/api/pilot/travel")
@requires(Action.PILOT_FIGURES)
async def travel_table(request: web.Request) -> web.Response:
    """The region's round-trip distances per municipality, as the lead entered them."""
    code = request.query.get("region") or ""
    region_id = await checked_region(request, code, Action.PILOT_FIGURES)
    rows = await services(request).pilot.travel(region_id)
    return web.json_response(
        {
            "region": code,
            "default": {"km": DEFAULT_TRAVEL.km, "hours": DEFAULT_TRAVEL.hours},
            "municipalities": [{"municipality": r.municipality, "km": r.km, "hours": r.hours} for r in rows],
        }
    )


@routes.put("/api/pilot/travel")
@requires(Action.PILOT_TRAVEL_EDIT)
async def set_travel(request: web.Request) -> web.Response:
    """Enter (or change) one municipality's round trip to the region's hospital."""
    body, region_id = await read_regional_body(request, Travel, Action.PILOT_TRAVEL_EDIT)
    code, municipality = body.region, body.municipality
    values = {"km": body.km, "hours": body.hours}
    await services(request).pilot.set_travel(region_id, municipality, body.km, body.hours)
    audit_target(request, f"travel:{code}", region_id)
    return web.json_response({"region": code, "municipality": municipality, **values})


@routes.get("/api/pilot/econsults")
@requires(ACTION)
async def econsults(request: web.Request) -> web.Response:
    """E-consults per region, apart from the video calls' figures: sent, answered, by urgency,
    time to answer (issue 18)."""
    period = _period(request)
    regions = await _regions(request, "econsults")
    found = await econsult_figures(services(request).pilot, regions, period)
    return web.json_response({**period.json(), "percentile": "nearest-rank", "regions": [f.json() for f in found]})


@routes.get("/api/pilot/municipalities")
@requires(Action.PATIENT_CREATE)
async def municipalities(request: web.Request) -> web.Response:
    """The municipalities a nurse may register a patient in: the region's list, which its
    pilot lead keeps through the travel table (a name, not free text, so distances apply)."""
    code = request.query.get("region") or ""
    region_id = await checked_region(request, code, Action.PATIENT_CREATE)
    names = await services(request).pilot.municipalities(region_id)
    audit_target(request, f"municipalities:{code}"[:120], region_id)
    return web.json_response({"region": code, "municipalities": names})
