"""Consent, assessments and integrity failures through the real API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.cli import main
from woundcare.db.models import Assessment, AuditEvent, Consultation, Patient, QualitySample
from woundcare.db.models import StaffRole

PASSWORD = "records test password"


@dataclass
class Visit:
    server: RunningServer
    nurse: ApiClient
    specialist: ApiClient
    consultation: str
    patient: str


@pytest.fixture
async def visit(start_server: Any, migrated_db_url: str) -> AsyncIterator[Visit]:
    server = await start_server(database_url=migrated_db_url)
    await server.add_user("nurse", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    nurse, specialist = ApiClient(server.url), ApiClient(server.url)
    await nurse.login("nurse", PASSWORD)
    await specialist.login("spes", PASSWORD)
    patient = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": "01018012371", "name": "Kari Øst"})
    consultation = await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]})
    yield Visit(server, nurse, specialist, consultation["id"], patient["id"])
    await nurse.close()
    await specialist.close()


ASSESSMENT = {
    "woundType": "venous_leg_ulcer",
    "location": "left lower leg, medial malleolus",
    "size": {"lengthCm": 4.2, "widthCm": 2.5},
    "tissue": {"granulation": 70, "slough": 30},
    "exudate": "moderate",
    "infectionSigns": ["erythema", "warmth"],
    "treatmentPlan": "Compression bandage, change every third day.",
    "nextReview": "2026-12-09",
}


async def test_consent_is_recorded_by_the_nurse(visit: Visit) -> None:
    path = f"/api/consultations/{visit.consultation}/consents"
    recorded = await visit.nurse.json("POST", path, expect=201, json={"video": True, "snapshots": True})
    assert recorded["consents"] == {"video": True, "snapshots": True, "recording": False}
    assert (await visit.specialist.json("GET", path))["consents"]["snapshots"] is True
    bad = await visit.nurse.json("POST", path, expect=400, json={"video": "yes"})
    assert bad["error"]["code"] == "bad_request"


async def test_assessment_draft_sign_and_lock(visit: Visit) -> None:
    path = f"/api/consultations/{visit.consultation}/assessment"
    await visit.specialist.json("GET", path, expect=404)
    saved = await visit.specialist.json("PUT", path, json=ASSESSMENT)
    assert saved["signedAt"] is None and saved["tissue"] == {"granulation": 70, "slough": 30}
    error = await visit.specialist.json("POST", f"{path}/sign", expect=400)
    assert "outcome" in error["error"]["message"]
    await visit.specialist.json("PUT", path, json={**ASSESSMENT, "outcome": "treated_at_home"})
    signed = await visit.specialist.json("POST", f"{path}/sign")
    assert signed["signedBy"].startswith("u") and signed["outcome"] == "treated_at_home"
    assert (await visit.nurse.json("GET", path))["treatmentPlan"] == ASSESSMENT["treatmentPlan"]
    assert (await visit.specialist.json("PUT", path, expect=409, json=ASSESSMENT))["error"]["code"] == "signed"
    await visit.nurse.json("PUT", path, expect=403, json=ASSESSMENT)
    # The clinical text is sealed: it is nowhere in the database row.
    async with visit.server.app[SERVICES].database.sessions() as session:
        row = await session.scalar(select(Assessment))
    assert row is not None and b"Compression" not in row.content_sealed


@pytest.mark.parametrize(
    "content",
    [{"woundType": "papercut"}, {"tissue": {"granulation": 80, "slough": 40}}, {"nextReview": "soon"},
     {"size": {"lengthCm": -1}}, {"colour": "red"}],
)
async def test_bad_assessments_are_refused_with_the_field_named(visit: Visit, content: dict[str, Any]) -> None:
    path = f"/api/consultations/{visit.consultation}/assessment"
    error = await visit.specialist.json("PUT", path, expect=400, json=content)
    assert error["error"]["code"] == "bad_assessment"


async def test_a_flipped_bit_is_an_audited_integrity_error(visit: Visit) -> None:
    path = f"/api/consultations/{visit.consultation}/assessment"
    await visit.specialist.json("PUT", path, json=ASSESSMENT)
    async with visit.server.app[SERVICES].database.sessions() as session, session.begin():
        row = await session.scalar(select(Assessment))
        assert row is not None
        tampered = bytearray(row.content_sealed)
        tampered[-5] ^= 0x01
        await session.execute(update(Assessment).values(content_sealed=bytes(tampered)))
    error = await visit.specialist.json("GET", path, expect=500)
    assert error["error"]["code"] == "integrity_error"
    async with visit.server.app[SERVICES].database.sessions() as session:
        outcomes = (await session.scalars(
            select(AuditEvent.outcome).where(AuditEvent.action == "assessment.read"))).all()
    assert "integrity_error" in outcomes


@pytest.mark.parametrize("tamper", ["swap", "move"])
async def test_swapped_or_moved_ciphertexts_are_audited_integrity_errors(visit: Visit, tamper: str) -> None:
    server = visit.server
    await server.add_user("nurse_w", PASSWORD, {"west": StaffRole.NURSE})
    other = ApiClient(server.url)
    await other.login("nurse_w" if tamper == "move" else "nurse", PASSWORD)
    region = "west" if tamper == "move" else "east"
    # Another number: the same one in the same region is the same patient (issue 18).
    second = await other.json("POST", "/api/patients", expect=201,
                              json={"region": region, "nationalId": "01018010018", "name": "Ola Annen"})
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        first_row = await session.scalar(select(Patient).where(Patient.pseudonym == visit.patient))
        second_row = await session.scalar(select(Patient).where(Patient.pseudonym == second["id"]))
        assert first_row is not None and second_row is not None
        # Swap within a region, or copy region east's ciphertext onto a west patient.
        first_row.identity_sealed, second_row.identity_sealed = second_row.identity_sealed, first_row.identity_sealed
    reader = other
    error = await reader.json("GET", f"/api/patients/{second['id']}", expect=500)
    assert error["error"]["code"] == "integrity_error"
    if tamper == "swap":
        assert (await visit.nurse.json("GET", f"/api/patients/{visit.patient}", expect=500))["error"]["code"] \
            == "integrity_error"
    async with server.app[SERVICES].database.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.outcome == "integrity_error"))).all()
    assert rows and all(r.resource and r.resource.startswith("patient:") for r in rows)
    await other.close()


async def test_quality_samples_are_validated_and_stored(visit: Visit) -> None:
    path = f"/api/consultations/{visit.consultation}/quality"
    sample = {"direction": "receive", "bitrateKbps": 640.0, "lossPct": 3.5, "rttMs": 180, "fps": 24, "width": 640,
              "height": 480}
    await visit.specialist.json("POST", path, expect=204, json=sample)
    await visit.nurse.json("POST", path, expect=204, json={"direction": "send", "bitrateKbps": 700})
    for bad in ({"direction": "sideways"}, {"direction": "send", "lossPct": 140}, {"direction": "send", "rttMs": "x"},
                {"direction": "send", "jitter": 3}):
        error = await visit.nurse.json("POST", path, expect=400, json=bad)
        assert error["error"]["code"] == "bad_sample"
    async with visit.server.app[SERVICES].database.sessions() as session:
        rows = (await session.scalars(select(QualitySample).order_by(QualitySample.id))).all()
    assert [(r.role, r.direction, r.loss_pct) for r in rows] == [("specialist", "receive", 3.5), ("nurse", "send", None)]


async def test_the_patients_access_log_names_who_opened_the_record(visit: Visit) -> None:
    server = visit.server
    await server.add_user("admin", PASSWORD, {"east": StaffRole.ADMIN})
    admin = ApiClient(server.url)
    await admin.login("admin", PASSWORD)
    try:
        await visit.specialist.json("GET", f"/api/patients/{visit.patient}")
        await visit.specialist.json("GET", f"/api/consultations/{visit.consultation}")
        log = await admin.json("GET", f"/api/patients/{visit.patient}/access-log")
        who = [(a["who"], a["role"], a["action"]) for a in log["accesses"]]
        assert ("Test nurse", "nurse", "patient.create") in who
        assert ("Test nurse", "nurse", "consultation.start") in who
        assert who[-2:] == [("Test spes", "specialist", "patient.read"),
                            ("Test spes", "specialist", "consultation.read")]
        await visit.nurse.json("GET", f"/api/patients/{visit.patient}/access-log", expect=403)
    finally:
        await admin.close()


async def test_fhir_export_through_the_api_is_pseudonymous_and_valid(visit: Visit) -> None:
    from fhir.resources.R4B.bundle import Bundle

    await visit.nurse.json("POST", f"/api/consultations/{visit.consultation}/consents", expect=201,
                           json={"video": True, "snapshots": True})
    path = f"/api/consultations/{visit.consultation}/assessment"
    await visit.specialist.json("PUT", path, json={**ASSESSMENT, "outcome": "treated_at_home"})
    await visit.specialist.json("POST", f"{path}/sign")
    response = await visit.specialist.request("GET", f"/api/consultations/{visit.consultation}/fhir")
    assert response.status == 200 and response.content_type == "application/fhir+json"
    text = await response.text()
    assert "Kari" not in text and "01018012371" not in text
    bundle = Bundle.model_validate_json(text)
    kinds = {entry.resource.get_resource_type() for entry in bundle.entry or []}
    assert {"Encounter", "Patient", "Composition", "Consent"} <= kinds
    await visit.nurse.json("GET", f"/api/consultations/{visit.consultation}/fhir", expect=403)


async def test_retention_flags_and_deletes_what_is_past_the_period(visit: Visit) -> None:
    server = visit.server
    await server.add_user("admin", PASSWORD, {"east": StaffRole.ADMIN})
    admin = ApiClient(server.url)
    await admin.login("admin", PASSWORD)
    try:
        assert (await admin.json("GET", "/api/retention?region=east"))["retentionDays"] is None
        code = await asyncio.to_thread(main, ["region", "retention", "east", "365", *cli_options(server)])
        assert code == 0
        await visit.nurse.json("POST", f"/api/consultations/{visit.consultation}/consents", expect=201,
                               json={"snapshots": True})
        await visit.specialist.json("POST", f"/api/consultations/{visit.consultation}/end", expect=204)
        assert (await admin.json("GET", "/api/retention?region=east"))["due"] == []
        long_ago = datetime.now(UTC) - timedelta(days=400)
        async with server.app[SERVICES].database.sessions() as session, session.begin():
            await session.execute(update(Consultation).values(ended_at=long_ago))
        due = (await admin.json("GET", "/api/retention?region=east"))["due"]
        assert [d["consultation"] for d in due] == [visit.consultation]
        purged = await admin.json("POST", "/api/retention/purge", json={"region": "east"})
        assert purged["deleted"] == [visit.consultation]
        await visit.specialist.json("GET", f"/api/consultations/{visit.consultation}", expect=404)
        await visit.specialist.json("GET", f"/api/patients/{visit.patient}", expect=404)
        await visit.nurse.json("GET", "/api/retention?region=east", expect=403)
    finally:
        await admin.close()


def cli_options(server: RunningServer) -> list[str]:
    options = ["--data-dir", str(server.settings.data_dir)]
    if server.settings.database_url:
        options += ["--database-url", server.settings.database_url]
    return options
