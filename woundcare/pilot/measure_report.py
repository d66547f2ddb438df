"""The effect figures as HL7 FHIR R4 ``MeasureReport`` resources, one per region, in a
``Bundle`` of type ``collection``.

Each report is a ``summary`` over the period's cohort of wounds (see
:mod:`woundcare.pilot.effect` for the definitions), its reporter the region by code. One
``group`` per figure, coded in the local system ``urn:woundcare:effect``; populations use the
standard ``measure-population`` codes (initial-population, denominator, numerator) and the
score is a UCUM quantity: ``%`` for the median area reduction, ``d`` for the median time to
healing, ``1`` for proportions. A score with no values behind it is left out, not sent as 0.

Only counts and medians leave: no patient, pseudonym or time of care is in the report.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from .effect import PREDICTIVE_REDUCTION_PCT, RE_REFERRAL_DAYS, EffectFigures
from .figures import Period

MEASURE = "urn:woundcare:measure:wound-effect"
"""The canonical the reports are of; the measure's definition is docs/pilot-figures.md."""
EFFECT_SYSTEM = "urn:woundcare:effect"
REGION_SYSTEM = "urn:woundcare:region"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
UCUM = "http://unitsofmeasure.org"

_NAMESPACE = uuid.UUID("8a7d1f0e-3c55-5b8e-a0f4-656666656374")
"""Fixed: a report's id is the UUIDv5 of its region and period, so a re-export matches."""


def _population(code: str, count: int, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}
    if text:
        concept["text"] = text
    return {"code": concept, "count": count}


def _score(value: float | int | None, unit: str) -> dict[str, Any]:
    if value is None:
        return {}
    return {"measureScore": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def _group(code: str, text: str, populations: list[dict[str, Any]], score: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": EFFECT_SYSTEM, "code": code}], "text": text},
        "population": populations,
        **score,
    }


def _number(value: object) -> int:
    return value if isinstance(value, int) else 0


def _decimal(value: object) -> float | None:
    return value if isinstance(value, int | float) else None


def measure_report(found: EffectFigures, start: date, end: date, generated: datetime) -> dict[str, Any]:
    """One region's effect figures for the days ``start`` to ``end`` as a MeasureReport."""
    v = found.values()
    wounds = _number(v["wounds"])
    at_home, referred = _number(v["treated_at_home"]), _number(v["referred"])
    report_id = uuid.uuid5(_NAMESPACE, f"{found.region.code}|{start.isoformat()}|{end.isoformat()}")
    return {
        "resourceType": "MeasureReport",
        "id": str(report_id),
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": generated.isoformat(),
        "reporter": {
            "identifier": {"system": REGION_SYSTEM, "value": found.region.code},
            "display": found.region.name,
        },
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "group": [
            _group(
                "area-reduction-4w",
                "Wound area reduction at 4 weeks (median %)",
                [
                    _population("initial-population", wounds),
                    _population("denominator", _number(v["area_reduction_4w_wounds"]), "measured at 0 and 3-5 weeks"),
                    _population(
                        "numerator",
                        _number(v["area_reduction_4w_at_least_40"]),
                        f"reduced by at least {PREDICTIVE_REDUCTION_PCT:g} %",
                    ),
                ],
                _score(_decimal(v["area_reduction_4w_median_pct"]), "%"),
            ),
            _group(
                "time-to-healing",
                "Days from first consultation to healing (median)",
                [_population("initial-population", wounds), _population("numerator", _number(v["healed"]), "healed")],
                _score(_decimal(v["days_to_healing_median"]), "d"),
            ),
            _group(
                "treated-at-home",
                "Share of wounds treated at home (of those with an outcome)",
                [
                    _population("initial-population", wounds),
                    _population("denominator", at_home + referred, "treated at home or referred"),
                    _population("numerator", at_home, "treated at home"),
                ],
                _score(_decimal(v["share_at_home"]), "1"),
            ),
            _group(
                "re-referral",
                f"Share re-referred within {RE_REFERRAL_DAYS} days of treatment at home",
                [
                    _population("initial-population", wounds),
                    _population("denominator", _number(v["kept_at_home"]), "kept at home"),
                    _population("numerator", _number(v["re_referred"]), "re-referred"),
                ],
                _score(_decimal(v["re_referral_share"]), "1"),
            ),
        ],
    }


def measure_bundle(figures: Sequence[EffectFigures], period: Period, generated: datetime) -> dict[str, Any]:
    """The regions' MeasureReports in one ``collection`` Bundle.

    A report needs a period with both ends: an open start is the first cohort wound's day
    (else the report's own day), an open end the day the report is made.
    """
    today = generated.astimezone(period.zone).date()
    firsts = [w.first_at.astimezone(period.zone).date() for f in figures for w in f.wounds]
    start = period.first or (min(firsts) if firsts else today)
    end = period.last or max(today, start)
    reports = [measure_report(f, start, end, generated) for f in figures]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": generated.isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in reports],
    }
