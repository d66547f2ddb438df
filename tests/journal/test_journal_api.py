"""The journal document and note through the real API, on SQLite and PostgreSQL: the region's
nurse and specialist get them once the assessment is signed; a pilot lead is refused (403) and
another region's staff learn nothing (404); every export and refusal is audited."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.client import ApiClient
from tests.api.clinic import PASSWORD, PLAN, Clinic, clinic, jpeg_with_exif
from tests.journal.test_document import of_type, render, validate
from woundcare.appkeys import SERVICES
from woundcare.db.models import StaffRole
from woundcare.records.assessments import AssessmentContent
from woundcare.refs import user_ref

NORWEGIAN_PLAN = {**PLAN, "treatmentPlan": "Skum og kompresjon; skift hver tredje dag. Unngå trykk på hælen (æøå)."}


@pytest.fixture
async def east(start_server: Any, migrated_db_url: str) -> AsyncIterator[Clinic]:
    async with clinic(await start_server(database_url=migrated_db_url)) as found:
        yield found


async def test_the_regions_clinicians_export_a_signed_assessment(east: Clinic, tmp_path: Path) -> None:
    started = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
    consultation = started["id"]
    await east.nurse.json("POST", f"/api/consultations/{consultation}/consents", expect=201,
                          json={"video": True, "snapshots": True})
    form = aiohttp.FormData()
    form.add_field("image", jpeg_with_exif(), filename="wound.jpg", content_type="image/jpeg")
    assert (await east.nurse.request("POST", f"/api/consultations/{consultation}/snapshots", data=form)).status == 201
    document = f"/api/consultations/{consultation}/journal-document"
    note = f"/api/consultations/{consultation}/journal-note.pdf"

    # A draft is not for the journal.
    await east.specialist.json("PUT", f"/api/consultations/{consultation}/assessment", json=NORWEGIAN_PLAN)
    refused = await east.specialist.json("GET", document, expect=409)
    assert refused["error"] == {"code": "not_signed", "message": "the assessment is not signed yet"}
    await east.specialist.json("POST", f"/api/consultations/{consultation}/assessment/sign")

    for client in (east.specialist, east.nurse):
        response = await client.request("GET", document)
        assert response.status == 200 and response.content_type == "application/fhir+json"
        assert response.headers["Cache-Control"] == "no-store"
        bundle = await response.json(content_type=None)
        validate(bundle)
    [patient] = of_type(bundle, "Patient")
    assert patient["identifier"][0] == {"use": "official", "system": "urn:oid:2.16.578.1.12.4.1.4.1",
                                        "value": "01018012371"}
    # The photo in the Bundle is the one the record holds.
    row = (await east.server.app[SERVICES].snapshots.of_consultation(consultation))[0]
    stored_row = await east.server.app[SERVICES].snapshots.get(row.id)
    assert stored_row is not None
    stored = await east.server.app[SERVICES].snapshots.image(stored_row)
    [media] = of_type(bundle, "Media")
    [binary] = of_type(bundle, "Binary")
    assert base64.b64decode(binary["data"]) == stored
    assert media["content"]["hash"] == base64.b64encode(hashlib.sha1(stored).digest()).decode()

    response = await east.nurse.request("GET", note)
    assert response.status == 200 and response.content_type == "application/pdf"
    assert response.headers["Content-Disposition"] == 'attachment; filename="journalnotat.pdf"'
    pdf = await response.read()
    assert stored in pdf
    pages, text = render(pdf, tmp_path)
    assert pages >= 1 and NORWEGIAN_PLAN["treatmentPlan"] in " ".join(text.split())

    # Not the pilot lead (pseudonymous figures only); nobody of another region.
    await east.server.add_user("spes_w", PASSWORD, {"west": StaffRole.SPECIALIST})
    west_specialist = ApiClient(east.server.url)
    assert (await west_specialist.login("spes_w", PASSWORD)).status == 200
    try:
        assert (await east.lead.json("GET", document, expect=403))["error"]["code"] == "forbidden"
        for client in (west_specialist, east.west_nurse):
            for path in (document, note):
                assert (await client.json("GET", path, expect=404))["error"]["code"] == "not_found"
    finally:
        await west_specialist.close()

    audited = [(e.outcome, e.resource, e.role) for e in await east.audit("journal.export")]
    resource = f"consultation:{consultation}"
    assert audited == [
        ("failed", resource, "specialist"),  # the draft
        ("ok", resource, "specialist"), ("ok", resource, "nurse"), ("ok", resource, "nurse"),
        ("denied", None, None),  # the lead, at the guard
        *[("denied", resource, None)] * 4,  # west, as for no such consultation
    ]


async def test_a_patient_without_identity_has_no_journal_document(east: Clinic) -> None:
    consultation = await east.server.new_consultation("east")  # a patient row with no identity sealed
    services = east.server.app[SERVICES]
    view = await services.consultations.get(consultation)
    assert view is not None
    specialist = await services.accounts.user_id("spes")
    assert specialist is not None
    await services.assessments.save(consultation, view.region_id, AssessmentContent.from_json(PLAN),
                                    user_ref(specialist))
    await services.assessments.sign(consultation, user_ref(specialist))
    error = await east.specialist.json("GET", f"/api/consultations/{consultation}/journal-note.pdf", expect=409)
    assert error["error"]["code"] == "no_identity"
