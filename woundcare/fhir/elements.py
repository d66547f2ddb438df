"""Code systems, data types and the wound measurement as FHIR R4 JSON (plain dicts).

Terminology: codes are used only where the code system and code are certain. Measurements
carry ``code.text`` and a local code (:data:`MEASUREMENT_SYSTEM`), not LOINC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any

from ..db.models import StaffRole
from ..records.measurement import Measurement

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
XHTML = "http://www.w3.org/1999/xhtml"
MEASUREMENT_SYSTEM = "urn:woundcare:measurement"

VIRTUAL = {"system": V3_ACT_CODE, "code": "VR", "display": "virtual"}
"""Encounter.class of a consultation by video (or an e-consult): v3-ActCode ``VR``."""

PARTICIPATION = {
    "specialist": ("CON", "consultant"),
    "nurse": ("PPRF", "primary performer"),
}
"""Encounter participant type by role; any other role is a plain participant (PART)."""

MEASURED = (
    # key, English text, Measurement attribute, UCUM unit
    ("length", "Wound length", "length_cm", "cm"),
    ("width", "Wound width", "width_cm", "cm"),
    ("area", "Wound area", "area_cm2", "cm2"),
)
"""What a drawn measurement becomes: one Observation each."""


_CLINICAL_FIRST = (StaffRole.SPECIALIST, StaffRole.NURSE, StaffRole.PILOT_LEAD, StaffRole.ADMIN)


def named_role(roles: Iterable[StaffRole]) -> StaffRole | None:
    """The one role a staff member is named by in an export when they hold several in the
    region: the clinical one wins over pilot lead and admin."""
    held = set(roles)
    return next((role for role in _CLINICAL_FIRST if role in held), None)


def time(value: datetime) -> str:
    return value.isoformat()


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def narrative(lines: Iterable[str]) -> dict[str, str]:
    """A generated narrative of one paragraph per line, the text escaped."""
    body = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{body}</div>'}


def participation(role: str) -> dict[str, Any]:
    code, display = PARTICIPATION.get(role, ("PART", "Participation"))
    return concept(V3_PARTICIPATION, code, display)


def measurement_observations(
    measurement: Measurement,
    taken_at: datetime,
    subject: dict[str, str],
    encounter: dict[str, str],
    media_url: str,
) -> list[tuple[str, dict[str, Any]]]:
    """The wound's length, width and area drawn on one photo, as ``(key, Observation)``
    pairs (the caller gives each its fullUrl), each ``derivedFrom`` the photo's Media."""
    method = f"Drawn outline against a reference of known length ({measurement.method})"
    return [
        (key, {
            **wound_observation(
                key, text, subject, encounter, taken_at, quantity(getattr(measurement, attribute), unit), method
            ),
            "derivedFrom": [{"reference": media_url}],
        })
        for key, text, attribute, unit in MEASURED
    ]


def wound_observation(
    code: str,
    text: str,
    subject: dict[str, str],
    encounter: dict[str, str],
    at: datetime,
    value: dict[str, Any],
    method: str,
) -> dict[str, Any]:
    """One measured size of the wound (an exam Observation, :data:`MEASUREMENT_SYSTEM` code)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [concept(OBSERVATION_CATEGORY, "exam", "Exam")],
        "code": {"coding": [{"system": MEASUREMENT_SYSTEM, "code": code, "display": text}], "text": text},
        "subject": subject,
        "encounter": encounter,
        "effectiveDateTime": time(at),
        "valueQuantity": value,
        "method": {"text": method},
    }


def quantity(value: float, unit: str) -> dict[str, Any]:
    """A UCUM quantity (``cm``, ``cm2``)."""
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}
