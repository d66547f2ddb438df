"""A signed assessment as an HL7 FHIR R4 document ``Bundle`` for the patient's journal.

The Bundle (``type: document``, ``language: nb``) holds, first, the ``Composition`` (the
assessment, ``final``, attested by its signer), then what it references:

* ``Patient``: the name (``text``: the record keeps one string, and splitting it would guess
  at given, middle and family names) and the national id, under the HL7 Norway no-basis
  identifier systems: fødselsnummer ``urn:oid:2.16.578.1.12.4.1.4.1`` or, for a D-number
  (first digit plus 4), ``urn:oid:2.16.578.1.12.4.1.4.2``;
* ``Practitioner``: the signing specialist and the nurse who started the consultation, by
  name, with their role; the HPR number ``urn:oid:2.16.578.1.12.4.1.4.4`` when the record has
  one (:attr:`~woundcare.journal.record.Clinician.hpr`);
* ``Organization``: the pilot region, the document's custodian;
* ``Encounter``: class v3-ActCode ``VR`` (virtual);
* ``Observation``: the wound's length, width and area drawn on each measured photo, and the
  size the specialist assessed, in UCUM units (``cm``, ``cm2``);
* ``Media`` + ``Binary`` per photo: the image bytes as stored (base64 in the Binary), the
  Media's ``content`` an Attachment pointing at it. R4 defines ``Attachment.hash`` as the
  base64 SHA-1 of the data, and it is that; SHA-1 no longer resists a forger, so the Media
  also carries the SHA-256 as an identifier: an RFC 6920 named-information URI
  (``ni:///sha-256;<base64url>``, system ``urn:ietf:rfc:3986``), a standard name of the
  bytes that any receiver can check without an extension to learn.

Profiles claimed in ``meta.profile``: no-basis Patient, Practitioner, Organization and
Composition (its ``type`` from Volven 9602, ``B02-2 Journalnotat``, beside LOINC
``11488-4 Consult note``).

No research id crosses over. The document carries neither the patient's pseudonym nor the
consultation's or snapshots' ids, which the pseudonymous research export (``woundcare.pilot.
fhir``) carries; its own ids (fullUrls, the Bundle's and Encounter's identifiers) are HMACs of
the consultation id under a key derived from the server secret (``Purpose.JOURNAL_IDS``), so
they are stable across exports but cannot be computed from, or matched to, a research export.

The Bundle is a pure function of the signed record: its ``timestamp`` is the signing time, so
exporting twice gives the same document under the same identifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

from ..crypto.kdf import Purpose, derive_key
from ..db.models import ConsultationStatus
from ..fhir.elements import (
    LOINC,
    MEDIA_TYPE,
    VIRTUAL,
    concept,
    measurement_observations,
    narrative,
    participation,
    quantity,
    time,
    wound_observation,
)
from . import words
from .record import Clinician, JournalRecord

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
"""Fødselsnummer (Folkeregisteret)."""
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
"""D-nummer."""
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
"""Helsepersonellnummer (HPR)."""
DOCUMENT_TYPE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9602"
"""Volven 9602, the no-basis Composition's required document types."""
URI_SYSTEM = "urn:ietf:rfc:3986"
DOCUMENT_SYSTEM = "urn:woundcare:journal-document"
ENCOUNTER_SYSTEM = "urn:woundcare:journal-encounter"
REGION_SYSTEM = "urn:woundcare:region"

NO_BASIS = "http://hl7.no/fhir/StructureDefinition/no-basis-"

_ENCOUNTER_STATUS = {
    ConsultationStatus.WAITING: "planned",
    ConsultationStatus.ACTIVE: "in-progress",
    ConsultationStatus.ENDED: "finished",
    ConsultationStatus.ABANDONED: "finished",
}
"""A signed assessment's consultation took place, even if the server marked it abandoned later."""
_ASSESSED = {
    "lengthCm": ("length", "Wound length (assessed)"),
    "widthCm": ("width", "Wound width (assessed)"),
    "depthCm": ("depth", "Wound depth (assessed)"),
}
"""The size the specialist assessed, beside the one drawn on a photo (same local codes)."""


def national_id_system(number: str) -> str:
    """The no-basis identifier system of a valid 11-digit number: a D-number has 4 added to
    its first digit (day 41-71), any other is a fødselsnummer (synthetic test numbers too)."""
    return DNR_SYSTEM if number[0] in "4567" else FNR_SYSTEM


def ids_key(server_secret: bytes) -> bytes:
    return derive_key(server_secret, Purpose.JOURNAL_IDS)


class _Ids:
    """The document's ids: keyed on the consultation, never the consultation id itself."""

    def __init__(self, key: bytes, consultation_id: str) -> None:
        self._key = key
        self._consultation = consultation_id

    def uuid(self, part: str) -> str:
        digest = hmac.new(self._key, f"{self._consultation}/{part}".encode(), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def url(self, part: str) -> str:
        return f"urn:uuid:{self.uuid(part)}"


def sha256_name(data: bytes) -> str:
    """RFC 6920's named-information URI of ``data`` under SHA-256."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"ni:///sha-256;{digest}"


def build_document(record: JournalRecord, key: bytes) -> dict[str, Any]:
    """The FHIR R4 document Bundle of ``record`` (JSON-ready dicts); ``key`` from :func:`ids_key`."""
    consultation, assessment = record.consultation, record.assessment
    assert assessment.signed_at is not None  # gather() hands over signed assessments only
    ids = _Ids(key, consultation.id)
    patient_url, encounter_url, region_url = ids.url("Patient"), ids.url("Encounter"), ids.url("Organization")
    patient_ref, encounter_ref = {"reference": patient_url}, {"reference": encounter_url}
    signed = time(assessment.signed_at)

    entries: list[dict[str, Any]] = []

    def add(url: str, resource: dict[str, Any]) -> None:
        resource["id"] = url.removeprefix("urn:uuid:")
        entries.append({"fullUrl": url, "resource": resource})

    clinicians = [c for c in (record.signer, record.nurse) if c is not None]
    clinicians = list({c.ref: c for c in clinicians}.values())  # one who started and signed is one
    practitioner_url = {c.ref: ids.url(f"Practitioner/{c.ref}") for c in clinicians}

    def reference(clinician: Clinician) -> dict[str, str]:
        return {"reference": practitioner_url[clinician.ref], "display": clinician.display}

    media_urls: list[str] = []
    observation_urls: list[str] = []
    resources: list[tuple[str, dict[str, Any]]] = []
    for index, photo in enumerate(record.photos):
        media_url, binary_url = ids.url(f"Media/{index}"), ids.url(f"Binary/{index}")
        view = photo.snapshot
        media_urls.append(media_url)
        resources.append((media_url, {
            "resourceType": "Media",
            "identifier": [{"system": URI_SYSTEM, "value": sha256_name(photo.data)}],
            "status": "completed",
            "type": concept(MEDIA_TYPE, "image", "Image"),
            "subject": patient_ref,
            "encounter": encounter_ref,
            "createdDateTime": time(view.taken_at),
            "width": view.width,
            "height": view.height,
            "content": {
                "contentType": view.media_type,
                "url": binary_url,
                "size": len(photo.data),
                "hash": base64.b64encode(hashlib.sha1(photo.data).digest()).decode(),
                "title": f"{words.PHOTO} {index + 1}",
                "creation": time(view.taken_at),
            },
        }))
        resources.append((binary_url, {
            "resourceType": "Binary",
            "contentType": view.media_type,
            "data": base64.b64encode(photo.data).decode(),
        }))
        measurement = view.annotations.measurement() if view.annotations else None
        if measurement is not None:
            for measured, observation in measurement_observations(
                measurement, view.taken_at, patient_ref, encounter_ref, media_url
            ):
                url = ids.url(f"Observation/{index}/{measured}")
                observation_urls.append(url)
                resources.append((url, observation))
    for name, value in (assessment.content.size or {}).items():
        code, text = _ASSESSED[name]
        url = ids.url(f"Observation/assessed/{code}")
        observation_urls.append(url)
        resources.append((url, {
            **wound_observation(code, text, patient_ref, encounter_ref, assessment.signed_at, quantity(value, "cm"),
                                "Assessed by the specialist"),
            "performer": [reference(record.signer)],
        }))

    add(ids.url("Composition"), _composition(
        record, patient_ref, encounter_ref, {"reference": region_url}, reference(record.signer),
        observation_urls, media_urls,
    ))
    add(patient_url, {
        "resourceType": "Patient",
        "meta": {"profile": [NO_BASIS + "Patient"]},
        "identifier": [{"use": "official", "system": national_id_system(record.patient.national_id),
                        "value": record.patient.national_id}],
        "name": [{"text": record.patient.name}],
    })
    for clinician in clinicians:
        add(practitioner_url[clinician.ref], _practitioner(clinician))
    add(region_url, {
        "resourceType": "Organization",
        "meta": {"profile": [NO_BASIS + "Organization"]},
        "identifier": [{"system": REGION_SYSTEM, "value": consultation.region}],
        "name": consultation.region_name,
    })
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": ENCOUNTER_SYSTEM, "value": ids.uuid("Encounter")}],
        "status": _ENCOUNTER_STATUS[consultation.status],
        "class": VIRTUAL,
        "subject": patient_ref,
        "participant": [
            {"type": [participation(_wire_role(c))], "individual": reference(c)} for c in clinicians
        ],
        "period": {"start": time(consultation.started_at or consultation.created_at),
                   "end": time(consultation.ended_at or assessment.signed_at)},
        "serviceProvider": {"reference": region_url},
    }
    add(encounter_url, encounter)
    for url, resource in resources:
        add(url, resource)

    return {
        "resourceType": "Bundle",
        "id": ids.uuid("Bundle"),
        "language": "nb",
        "identifier": {"system": DOCUMENT_SYSTEM, "value": ids.uuid("Bundle")},
        "type": "document",
        "timestamp": signed,
        "entry": entries,
    }


def _wire_role(clinician: Clinician) -> str:
    return clinician.role.value if clinician.role else "staff"


def _practitioner(clinician: Clinician) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Practitioner", "meta": {"profile": [NO_BASIS + "Practitioner"]}}
    if clinician.hpr:
        resource["identifier"] = [{"system": HPR_SYSTEM, "value": clinician.hpr}]
    if clinician.name:
        resource["name"] = [{"text": clinician.name}]
    if clinician.role:
        resource["qualification"] = [{"code": {"text": words.ROLES[clinician.role]}}]
    return resource


def _composition(
    record: JournalRecord,
    patient_ref: dict[str, str],
    encounter_ref: dict[str, str],
    custodian: dict[str, str],
    signer: dict[str, str],
    observations: list[str],
    media: list[str],
) -> dict[str, Any]:
    content, signed_at = record.assessment.content, record.assessment.signed_at
    assert signed_at is not None
    sections: list[dict[str, Any]] = []
    found = words.findings(content)
    if found:
        sections.append({"title": words.FINDINGS, "text": narrative(found)})
    if observations:
        sections.append({"title": words.MEASUREMENTS, "text": narrative([words.MEASUREMENTS]),
                         "entry": [{"reference": url} for url in observations]})
    if media:
        sections.append({"title": words.PHOTOS, "text": narrative([f"{len(media)} {words.PHOTOS.lower()}"]),
                         "entry": [{"reference": url} for url in media]})
    for title, text in words.plan(content):
        sections.append({"title": title, "text": narrative([text])})
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "meta": {"profile": [NO_BASIS + "Composition"]},
        "language": "nb",
        "status": "final",
        "type": {"coding": [
            {"system": DOCUMENT_TYPE_SYSTEM, "code": "B02-2", "display": "Journalnotat"},
            {"system": LOINC, "code": "11488-4", "display": "Consult note"},
        ]},
        "subject": patient_ref,
        "encounter": encounter_ref,
        "date": time(signed_at),
        "author": [signer],
        "title": words.title(record.consultation.kind),
        "attester": [{"mode": "legal", "time": time(signed_at), "party": signer}],
        "custodian": custodian,
    }
    if sections:
        composition["section"] = sections
    return composition
