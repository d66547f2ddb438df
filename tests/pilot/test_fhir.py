"""The FHIR export of a consultation, on SQLite and PostgreSQL, validated against the
FHIR R4B models of ``fhir.resources`` (R4B is R4-compatible for every resource used here)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from signaling.protocol import Role
from signaling.sink import EventKind, RoomEvent
from tests.records.test_rekey import fill
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import ConsentKind, ConsultationStatus
from woundcare.db.models import StaffRole
from woundcare.pilot.fhir import ConsentAnswer, SessionEvent, build_bundle, export_bundle
from woundcare.records.assessments import AssessmentContent
from woundcare.records.consultations import ConsultationView
from woundcare.records.measurement import Annotations
from woundcare.refs import device_ref, guest_ref, user_ref

r4b = pytest.importorskip("fhir.resources.R4B", reason="fhir.resources (test extra) not installed")
from fhir.resources.R4B.bundle import Bundle  # noqa: E402

MEASURED = Annotations.from_json({
    "reference": {"start": [10, 10], "end": [110, 10], "lengthCm": 1.0},  # 100 px = 1 cm
    "outline": {"points": [[50, 50], [250, 50], [250, 150], [50, 150]]},  # 2 cm x 1 cm
})
SIGNED = AssessmentContent.from_json({
    "woundType": "venous_leg_ulcer",
    "location": "left medial malleolus",
    "size": {"lengthCm": 2.0, "widthCm": 1.0},
    "tissue": {"granulation": 70, "slough": 30},
    "exudate": "moderate",
    "infectionSigns": ["erythema", "odour"],
    "treatmentPlan": "Compression bandaging, foam dressing <twice weekly> & review",
    "nextReview": "2026-12-09",
    "outcome": "treated_at_home",
})


@pytest.fixture
async def server(start_server: Any, migrated_db_url: str) -> AsyncIterator[RunningServer]:
    yield await start_server(database_url=migrated_db_url)


def validate(bundle: dict[str, Any]) -> Bundle:
    """Strict: unknown fields, wrong types and missing required elements are refused."""
    parsed = Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        r4b.get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])
    return parsed


def of_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


async def test_consultations_export_as_valid_pseudonymous_bundles(server: RunningServer) -> None:
    app = server.app
    east = await fill(server, "east", 3)
    specialist = await server.add_user("spes", "fhir test password", {"east": StaffRole.SPECIALIST})
    nurse = await server.add_user("sykepleier", "fhir test password", {"east": StaffRole.NURSE})
    full, draft, measured_draft = east.consultations
    region_id = east.id

    # One consultation with everything: measurement, consent, signed assessment, session log, ended.
    for consultation, snapshot_id in ((full, east.snapshots[0]), (measured_draft, east.snapshots[2])):
        row = await app[SERVICES].snapshots.get(snapshot_id)
        assert row is not None
        await app[SERVICES].snapshots.annotate(row, MEASURED)
    view = await app[SERVICES].consultations.get(full)
    assert view is not None
    await app[SERVICES].consents.record(
        full, view.patient_id, region_id,
        {ConsentKind.VIDEO: True, ConsentKind.SNAPSHOTS: True, ConsentKind.RECORDING: False}, user_ref(nurse),
    )
    await app[SERVICES].assessments.save(full, region_id, SIGNED, user_ref(specialist))
    await app[SERVICES].assessments.sign(full, user_ref(specialist))
    for kind, subject, role in (
        (EventKind.JOINED, user_ref(nurse), Role.NURSE),
        (EventKind.JOINED, user_ref(specialist), Role.SPECIALIST),
        (EventKind.RECONNECTING, user_ref(specialist), Role.SPECIALIST),
        (EventKind.REJOINED, user_ref(specialist), Role.SPECIALIST),
        (EventKind.LEFT, user_ref(specialist), Role.SPECIALIST),
    ):
        app[SERVICES].session_log.emit(RoomEvent(full, kind, subject, role, "east", participant="p1"))
    await app[SERVICES].session_log.flush()
    await app[SERVICES].consultations.end(full)

    bundles = {c: await export_bundle(app[SERVICES], c) for c in east.consultations}
    assert await export_bundle(app[SERVICES], "no-such-consultation") is None
    for consultation, bundle in bundles.items():
        assert bundle is not None
        parsed = validate(bundle)
        assert parsed.type == "collection"
        urls = [e["fullUrl"] for e in bundle["entry"]]
        assert all(u.startswith("urn:uuid:") for u in urls) and len(set(urls)) == len(urls)
        text = json.dumps(bundle, ensure_ascii=False)
        assert "Pasient" not in text and "01018012371" not in text  # identity stays sealed
        assert "Test spes" not in text and "Test sykepleier" not in text  # staff names too
        assert "2.16.578.1.12.4.1.4.1" not in text
        [patient] = of_type(bundle, "Patient")
        assert set(patient) == {"resourceType", "id", "identifier"}
        pseudonym = east.patients[east.consultations.index(consultation)]
        assert patient["identifier"] == [
            {"use": "secondary", "system": "urn:woundcare:pseudonym:east", "value": pseudonym}]
        [encounter] = of_type(bundle, "Encounter")
        assert encounter["class"]["code"] == "VR"
        assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        [media] = of_type(bundle, "Media")
        snapshot = east.snapshots[east.consultations.index(consultation)]
        assert media["content"] == {
            "contentType": "image/jpeg", "url": f"/api/snapshots/{snapshot}", "creation": media["createdDateTime"]}
        assert (media["width"], media["height"]) == (320, 240)
        assert all(set(p) == {"resourceType", "id", "identifier"} for p in of_type(bundle, "Practitioner"))
        assert await export_bundle(app[SERVICES], consultation) == bundle  # stable urls, nothing random

    # The full one.
    full_bundle = bundles[full]
    assert full_bundle is not None
    counts = Counter(e["resource"]["resourceType"] for e in full_bundle["entry"])
    assert counts == {"Patient": 1, "Encounter": 1, "Practitioner": 2, "Consent": 3, "Media": 1,
                      "Observation": 3, "Composition": 1, "AuditEvent": 6}
    [encounter] = of_type(full_bundle, "Encounter")
    assert encounter["status"] == "finished"
    assert "end" in encounter["period"]
    assert {p["individual"]["display"]: p["type"][0]["coding"][0]["code"] for p in encounter["participant"]} == {
        "specialist": "CON", "nurse": "PPRF"}
    assert {p["identifier"][0]["value"] for p in of_type(full_bundle, "Practitioner")} == {
        f"u{specialist}", f"u{nurse}"}
    consents = {c["provision"]["code"][0]["coding"][0]["code"]: c["status"] for c in of_type(full_bundle, "Consent")}
    assert consents == {"video": "active", "snapshots": "active", "recording": "rejected"}

    [snap_view] = await app[SERVICES].snapshots.of_consultation(full)
    measurement = snap_view.annotations.measurement() if snap_view.annotations else None
    assert measurement is not None and measurement.area_cm2 == pytest.approx(2.0)
    [media] = of_type(full_bundle, "Media")
    media_url = next(e["fullUrl"] for e in full_bundle["entry"] if e["resource"] is media)
    observed = {o["code"]["text"]: o["valueQuantity"] for o in of_type(full_bundle, "Observation")}
    assert observed == {
        "Wound length": {"value": measurement.length_cm, "unit": "cm", "system": "http://unitsofmeasure.org",
                         "code": "cm"},
        "Wound width": {"value": measurement.width_cm, "unit": "cm", "system": "http://unitsofmeasure.org",
                        "code": "cm"},
        "Wound area": {"value": measurement.area_cm2, "unit": "cm2", "system": "http://unitsofmeasure.org",
                       "code": "cm2"},
    }
    for observation in of_type(full_bundle, "Observation"):
        assert observation["derivedFrom"] == [{"reference": media_url}]
        assert observation["category"][0]["coding"][0]["code"] == "exam"

    [composition] = of_type(full_bundle, "Composition")
    assert composition["status"] == "final"
    assert composition["attester"][0]["party"]["display"] == "specialist"
    sections = {s["title"]: s for s in composition["section"]}
    assert set(sections) == {"Wound", "Tissue", "Exudate", "Infection signs", "Measurements", "Images",
                             "Treatment plan", "Next review", "Outcome"}
    assert "venous leg ulcer" in sections["Wound"]["text"]["div"]
    assert "&lt;twice weekly&gt; &amp; review" in sections["Treatment plan"]["text"]["div"]
    assert "treated at home" in sections["Outcome"]["text"]["div"]
    assert len(sections["Measurements"]["entry"]) == 3

    # The photo's upload is in the session log too (its snapshot_stored event), before the call's.
    stored, *audits = of_type(full_bundle, "AuditEvent")
    assert stored["subtype"][-1]["code"] == "snapshot_stored"
    assert [a["subtype"][-1]["code"] for a in audits] == ["joined", "joined", "reconnecting", "rejoined", "left"]
    assert [a["type"]["code"] for a in audits] == ["110114", "110114", "110100", "110114", "110114"]
    assert all(a["outcome"] == "0" for a in audits)
    assert [a["agent"][0]["who"]["display"] for a in audits] == ["nurse"] + ["specialist"] * 4

    # The drafts: preliminary, no consent, no event but their photo's upload; measurements only
    # where one was drawn.
    for consultation, observations in ((draft, 0), (measured_draft, 3)):
        bundle = bundles[consultation]
        assert bundle is not None
        counts = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
        assert counts["Observation"] == observations
        assert counts["Consent"] == 0 and counts["AuditEvent"] == 1
        [composition] = of_type(bundle, "Composition")
        assert composition["status"] == "preliminary"
        assert "attester" not in composition
        assert of_type(bundle, "Encounter")[0]["status"] == "planned"
    assert await app[SERVICES].patients.find(east.patients[0]) is not None  # the record itself is untouched


def test_withdrawn_consent_and_open_consultation() -> None:
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    view = ConsultationView("c1", 1, "west", "Region west", "pseudo-1", 1, ConsultationStatus.ACTIVE, now, now, None)
    bundle = build_bundle(
        view,
        consents=[ConsentAnswer(ConsentKind.VIDEO, True, now), ConsentAnswer(ConsentKind.VIDEO, True, now, now)],
        events=[SessionEvent(now, "ice_restart", "observer", "interpreter-1")],
        api_base="https://woundcare.example",
    )
    validate(bundle)
    [encounter] = of_type(bundle, "Encounter")
    assert encounter["status"] == "in-progress" and encounter["period"] == {"start": now.isoformat()}
    [consent] = of_type(bundle, "Consent")
    assert consent["status"] == "inactive" and consent["provision"]["type"] == "deny"
    [audit] = of_type(bundle, "AuditEvent")
    assert audit["agent"][0]["who"] == {"display": "observer"}  # an invitation holder is no Practitioner
    assert of_type(bundle, "Practitioner") == []
    with pytest.raises(ValueError):
        Bundle.model_validate({**bundle, "entry": [{"resource": {**encounter, "class": "VR"}}]})


def test_only_staff_become_practitioners() -> None:
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    view = ConsultationView("c1", 1, "west", "Region west", "pseudo-1", 1, ConsultationStatus.ACTIVE, now, now, None)
    # "recorder" and "rec-<id>": the retired server-side recorder, in older session logs.
    others = [(device_ref(1), "nurse"), ("rec-r1", "recorder"), (guest_ref(), "observer")]
    bundle = build_bundle(
        view,
        events=[SessionEvent(now, "joined", role, ref) for ref, role in [(user_ref(1), "specialist"), *others]],
        created_by=user_ref(2),
    )
    validate(bundle)
    assert sorted(p["identifier"][0]["value"] for p in of_type(bundle, "Practitioner")) == ["u1", "u2"]
    agents = [a["agent"][0]["who"] for a in of_type(bundle, "AuditEvent")]
    assert ["reference" in who for who in agents] == [True, False, False, False]
