"""One consultation as a pseudonymous HL7 FHIR R4 ``Bundle`` (type ``collection``).

What the bundle holds, each entry with a ``urn:uuid`` fullUrl (UUIDv5 of the record's own
id, so exporting twice gives the same urls and nothing new is revealed):

* ``Encounter``: the video consultation, class v3-ActCode ``VR`` (virtual);
* ``Patient``: **only** the region's pseudonym, ``urn:woundcare:pseudonym:<region code>``;
* ``Practitioner``: per staff member, only the pseudonymous actor id (``u<user id>``);
  references to them carry the role (nurse, specialist) as display;
* ``Consent``: the latest answer per kind (video, snapshots, recording);
* ``Media``: per snapshot, metadata and the API url of the image, never the image itself;
* ``Observation``: wound length, width (cm) and area (cm2) from each measured snapshot,
  ``derivedFrom`` its ``Media``;
* ``Composition``: the specialist's assessment, ``final`` once signed;
* ``AuditEvent``: the consultation's session log (joined, left, ...).

Identity stays in the record system. The patient's name and national id number
(fødselsnummer) are sealed with the region's key and are not opened for this export: the
pilot's figures and an external reviewer need the clinical course, not who it is. The HL7
Norway basis profile ``no-basis-Patient`` identifies a patient by fødselsnummer under
``urn:oid:2.16.578.1.12.4.1.4.1``; that identifier belongs in an export only where identity
is meant to leave, which this pseudonymous pilot export deliberately does not (the journal
document, :mod:`woundcare.journal`, is where it does, under ids of its own that this export
never holds). The bundle is labelled ``PSEUDED`` (v3-ObservationValue) in ``meta.security``.
Free text the specialist wrote (location, treatment plan) is exported as written.

Terminology (:mod:`woundcare.fhir.elements`): codes are used only where the code system and
code are certain; measurements carry a local code, not LOINC. The session-log events use
DICOM audit codes (the R4 ``audit-event-type`` code system defines only ``rest``), with the
event kind as a local subtype (``urn:woundcare:consultation-event``).

:func:`build_bundle` is a plain function of what the record services return; the HTTP route
calls :func:`export_bundle`, which gathers those inputs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from ..db.models import ConsentKind, ConsultationStatus
from ..db.models import StaffRole
from ..fhir.elements import (
    LOINC,
    MEDIA_TYPE,
    V3_ACT_CODE,
    V3_OBSERVATION_VALUE,
    VIRTUAL,
    concept,
    measurement_observations,
    named_role,
    narrative,
    participation,
)
from ..fhir.elements import time as _time
from ..records.assessments import AssessmentView
from ..records.consents import ConsentAnswer
from ..records.consultations import ConsultationView
from ..records.snapshots import SnapshotView
from ..refs import Kind, parse, user_ref
from ..services import Services

PSEUDONYM_SYSTEM = "urn:woundcare:pseudonym:"
"""Followed by the region code: a pseudonym is unique, and meaningful, within its region."""
ACTOR_SYSTEM = "urn:woundcare:actor"
CONSULTATION_SYSTEM = "urn:woundcare:consultation"
EVENT_SYSTEM = "urn:woundcare:consultation-event"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"

_NAMESPACE = uuid.UUID("5b0f3c1e-8d1a-5a6f-9c57-6f756e646361")
"""Fixed: fullUrls are UUIDv5 of (resource type, record id) under it."""

_ENCOUNTER_STATUS = {
    ConsultationStatus.WAITING: "planned",
    ConsultationStatus.ACTIVE: "in-progress",
    ConsultationStatus.ENDED: "finished",
    ConsultationStatus.ABANDONED: "cancelled",
}

_CONSENT_TEXT = {
    ConsentKind.VIDEO: "Consultation by video",
    ConsentKind.SNAPSHOTS: "Still images of the wound stored in the record",
    ConsentKind.RECORDING: "Recording of the video",
}

_EVENT_TYPES = {
    # kind: (DICOM type, DICOM subtype or None)
    "joined": (("110114", "User Authentication"), ("110122", "Login")),
    "rejoined": (("110114", "User Authentication"), ("110122", "Login")),
    "left": (("110114", "User Authentication"), ("110123", "Logout")),
}
_APPLICATION_ACTIVITY = ("110100", "Application Activity")


@dataclass(frozen=True, slots=True)
class SessionEvent:
    at: datetime
    kind: str
    role: str | None
    """nurse, specialist or observer, as the room knew them."""
    subject: str | None
    """Pseudonymous: ``u<user id>`` for staff, an invitation's subject otherwise."""


def build_bundle(
    consultation: ConsultationView,
    *,
    consents: Iterable[ConsentAnswer] = (),
    assessment: AssessmentView | None = None,
    snapshots: Iterable[SnapshotView] = (),
    events: Iterable[SessionEvent] = (),
    staff: Mapping[str, str] | None = None,
    created_by: str | None = None,
    api_base: str = "",
) -> dict[str, Any]:
    """The FHIR R4 collection bundle of one consultation, as JSON-ready dicts.

    ``staff`` maps actor ids (``u<id>``) to their role in the consultation's region;
    ``api_base`` prefixes the snapshot urls (empty: site-relative ``/api/snapshots/<id>``).
    """
    staff = dict(staff or {})
    events = list(events)
    snapshots = list(snapshots)
    for event in events:
        if event.subject and event.role and event.subject not in staff:
            staff[event.subject] = event.role

    patient_url = _url("Patient", f"{consultation.region}/{consultation.patient}")
    encounter_url = _url("Encounter", consultation.id)
    patient_ref = {"reference": patient_url}
    encounter_ref = {"reference": encounter_url}

    actors: list[str] = []

    def practitioner(actor: str | None) -> dict[str, str] | None:
        if not _is_staff(actor):
            return None  # devices and invitation holders are no Practitioner
        if actor not in actors:
            actors.append(actor)
        return {"reference": _url("Practitioner", actor), "display": staff.get(actor, "staff")}

    entries: list[dict[str, Any]] = []

    def add(url: str, resource: dict[str, Any]) -> None:
        resource["id"] = url.removeprefix("urn:uuid:")
        entries.append({"fullUrl": url, "resource": resource})

    add(patient_url, {
        "resourceType": "Patient",
        "identifier": [{
            "use": "secondary",
            "system": PSEUDONYM_SYSTEM + consultation.region,
            "value": consultation.patient,
        }],
    })

    # Participants first, so that the Encounter can list them.
    media_entries: list[tuple[str, dict[str, Any]]] = []
    observation_entries: list[tuple[str, dict[str, Any]]] = []
    for snap in snapshots:
        media_url = _url("Media", snap.id)
        media: dict[str, Any] = {
            "resourceType": "Media",
            "identifier": [{"system": "urn:woundcare:snapshot", "value": snap.id}],
            "status": "completed",
            "type": concept(MEDIA_TYPE, "image", "Image"),
            "subject": patient_ref,
            "encounter": encounter_ref,
            "createdDateTime": _time(snap.taken_at),
            "width": snap.width,
            "height": snap.height,
            "content": {
                "contentType": snap.media_type,
                "url": f"{api_base}/api/snapshots/{snap.id}",
                "creation": _time(snap.taken_at),
            },
        }
        operator = practitioner(snap.taken_by)
        if operator:
            media["operator"] = operator
        media_entries.append((media_url, media))
        measurement = snap.annotations.measurement() if snap.annotations else None
        if measurement is None:
            continue
        for key, observation in measurement_observations(
            measurement, snap.taken_at, patient_ref, encounter_ref, media_url
        ):
            observation_entries.append((_url("Observation", f"{snap.id}/{key}"), observation))

    author = practitioner(assessment.author) if assessment else None
    signer = practitioner(assessment.signed_by) if assessment else None
    practitioner(created_by)
    for event in events:
        practitioner(event.subject)

    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": CONSULTATION_SYSTEM, "value": consultation.id}],
        "status": _ENCOUNTER_STATUS[consultation.status],
        "class": VIRTUAL,
        "subject": patient_ref,
        "period": _period(consultation.started_at or consultation.created_at, consultation.ended_at),
    }
    participants = [_participant(actor, staff.get(actor, "staff")) for actor in actors]
    if participants:
        encounter["participant"] = participants
    add(encounter_url, encounter)

    for actor in actors:
        add(_url("Practitioner", actor), {
            "resourceType": "Practitioner",
            "identifier": [{"system": ACTOR_SYSTEM, "value": actor}],
        })

    for answer in _latest(consents):
        add(_url("Consent", f"{consultation.id}/{answer.kind.value}"), _consent(answer, patient_ref))

    for url, resource in media_entries + observation_entries:
        add(url, resource)

    if assessment is not None:
        add(_url("Composition", consultation.id), _composition(
            assessment, patient_ref, encounter_ref, author, signer,
            [url for url, _ in observation_entries], [url for url, _ in media_entries],
        ))

    for i, event in enumerate(events):
        add(_url("AuditEvent", f"{consultation.id}/{i}"), _audit_event(event, encounter_ref, staff))

    return {
        "resourceType": "Bundle",
        "id": _url("Bundle", consultation.id).removeprefix("urn:uuid:"),
        "meta": {"security": [{"system": V3_OBSERVATION_VALUE, "code": "PSEUDED", "display": "pseudonymized"}]},
        "identifier": {"system": CONSULTATION_SYSTEM, "value": consultation.id},
        "type": "collection",
        "entry": entries,
    }


async def export_bundle(services: Services, consultation_id: str, *, api_base: str = "") -> dict[str, Any] | None:
    """Gather one consultation from the record services and build its bundle; None if there
    is no such consultation. The caller checks the actor's region and audits the export."""
    consultation = await services.consultations.get(consultation_id)
    if consultation is None:
        return None
    created_by = await services.consultations.creator(consultation_id)
    return build_bundle(
        consultation,
        consents=await services.consents.answers(consultation_id),
        assessment=await services.assessments.get(consultation_id),
        snapshots=await services.snapshots.of_consultation(consultation_id),
        events=[
            SessionEvent(e.at, e.kind, e.role, e.subject) for e in await services.consultations.events(consultation_id)
        ],
        staff=_staff_roles(await services.pilot.staff(consultation.region_id)),
        created_by=user_ref(created_by) if created_by is not None else None,
        api_base=api_base,
    )


def _staff_roles(memberships: Iterable[tuple[int, StaffRole]]) -> dict[str, str]:
    """One role per user (:func:`named_role`)."""
    held: dict[str, list[StaffRole]] = {}
    for user_id, role in memberships:
        held.setdefault(user_ref(user_id), []).append(role)
    named = {actor: named_role(roles) for actor, roles in held.items()}
    return {actor: role.value for actor, role in named.items() if role is not None}


def _is_staff(actor: str | None) -> TypeGuard[str]:
    """Whether ``actor`` is a staff member's ref: they alone become a ``Practitioner``."""
    found = parse(actor) if actor else None
    return found is not None and found[0] is Kind.USER


def _url(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{kind}/{key}')}"


def _period(start: datetime, end: datetime | None) -> dict[str, str]:
    period = {"start": _time(start)}
    if end is not None:
        period["end"] = _time(end)
    return period


def _participant(actor: str, role: str) -> dict[str, Any]:
    return {
        "type": [participation(role)],
        "individual": {"reference": _url("Practitioner", actor), "display": role},
    }


def _latest(consents: Iterable[ConsentAnswer]) -> list[ConsentAnswer]:
    latest: dict[ConsentKind, ConsentAnswer] = {}
    for answer in consents:
        latest[answer.kind] = answer
    return [latest[kind] for kind in ConsentKind if kind in latest]


def _consent(answer: ConsentAnswer, patient_ref: dict[str, str]) -> dict[str, Any]:
    if not answer.given:
        status = "rejected"
    elif answer.withdrawn_at is not None:
        status = "inactive"
    else:
        status = "active"
    permit = answer.given and answer.withdrawn_at is None
    provision: dict[str, Any] = {
        "type": "permit" if permit else "deny",
        "code": [{"coding": [{"system": "urn:woundcare:consent-kind", "code": answer.kind.value}],
                  "text": _CONSENT_TEXT[answer.kind]}],
    }
    if answer.withdrawn_at is not None:
        provision["period"] = {"end": _time(answer.withdrawn_at)}
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent"),
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}],
                      "text": _CONSENT_TEXT[answer.kind]}],
        "patient": patient_ref,
        "dateTime": _time(answer.recorded_at),
        "policyRule": concept(V3_ACT_CODE, "OPTIN" if answer.given else "OPTOUT",
                               "opt-in" if answer.given else "opt-out"),
        "provision": provision,
    }


def _words(value: str) -> str:
    return value.replace("_", " ")


def _composition(
    assessment: AssessmentView,
    patient_ref: dict[str, str],
    encounter_ref: dict[str, str],
    author: dict[str, str] | None,
    signer: dict[str, str] | None,
    observations: list[str],
    media: list[str],
) -> dict[str, Any]:
    content = assessment.content
    sections: list[dict[str, Any]] = []

    def section(title: str, lines: list[str], entries: Sequence[str] = ()) -> None:
        if not lines and not entries:
            return
        item: dict[str, Any] = {"title": title, "text": narrative(lines or [title])}
        if entries:
            item["entry"] = [{"reference": url} for url in entries]
        sections.append(item)

    wound = []
    if content.wound_type:
        wound.append(f"Wound type: {_words(content.wound_type.value)}")
    if content.location:
        wound.append(f"Location: {content.location}")
    if content.size:
        names = {"lengthCm": "length", "widthCm": "width", "depthCm": "depth"}
        wound.append("Size (clinician): " + ", ".join(f"{names[k]} {v:g} cm" for k, v in content.size.items()))
    section("Wound", wound)
    if content.tissue:
        section("Tissue", [", ".join(f"{name} {share} %" for name, share in content.tissue.items())])
    if content.exudate:
        section("Exudate", [_words(content.exudate.value)])
    if content.infection_signs:
        section("Infection signs", [", ".join(s.value for s in content.infection_signs)])
    section("Measurements", [], observations)
    section("Images", [], media)
    if content.treatment_plan:
        section("Treatment plan", [content.treatment_plan])
    if content.next_review:
        section("Next review", [content.next_review.isoformat()])
    if content.outcome:
        section("Outcome", [_words(content.outcome.value)])

    signed = assessment.signed_at is not None
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "status": "final" if signed else "preliminary",
        "type": {"coding": [{"system": LOINC, "code": "11488-4", "display": "Consult note"}],
                 "text": "Wound assessment"},
        "subject": patient_ref,
        "encounter": encounter_ref,
        "date": _time(assessment.signed_at or assessment.updated_at),
        "author": [author or {"display": "specialist"}],
        "title": "Wound assessment",
    }
    if signed and assessment.signed_at is not None:
        attester: dict[str, Any] = {"mode": "legal", "time": _time(assessment.signed_at)}
        if signer:
            attester["party"] = signer
        composition["attester"] = [attester]
    if sections:
        composition["section"] = sections
    return composition


def _audit_event(event: SessionEvent, encounter_ref: dict[str, str], staff: Mapping[str, str]) -> dict[str, Any]:
    kind_type, subtype = _EVENT_TYPES.get(event.kind, (_APPLICATION_ACTIVITY, None))
    subtypes = [{"system": EVENT_SYSTEM, "code": event.kind}]
    if subtype:
        subtypes.insert(0, {"system": DICOM, "code": subtype[0], "display": subtype[1]})
    role = event.role or staff.get(event.subject or "") or "unknown"
    who: dict[str, str] = {"display": role}
    if _is_staff(event.subject):
        who = {"reference": _url("Practitioner", event.subject), "display": role}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DICOM, "code": kind_type[0], "display": kind_type[1]},
        "subtype": subtypes,
        "action": "E",
        "recorded": _time(event.at),
        "outcome": "0",
        "agent": [{"type": {"text": role}, "who": who, "requestor": True}],
        "source": {"observer": {"display": "woundcare signaling"}},
        "entity": [{"what": encounter_ref}],
    }
