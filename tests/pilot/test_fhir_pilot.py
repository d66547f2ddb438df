"""Every consultation of the seeded pilot (3 regions, 500 consultations) exports as a FHIR
bundle that validates with fhir.resources and carries no identifying data."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tests.pilot.test_figures import seed
from woundcare.appkeys import SERVICES
from woundcare.db.models import Assessment, Consultation
from woundcare.pilot.fhir import export_bundle
from woundcare.records.assessments import AssessmentContent

Bundle = pytest.importorskip("fhir.resources.R4B.bundle").Bundle


async def test_every_bundle_of_the_seeded_pilot_validates(start_server: Any) -> None:
    server = await start_server()
    seeded = await seed(server)
    assert len(seeded) == 500
    app = server.app
    async with app[SERVICES].database.sessions() as session:
        rows = (await session.execute(select(Assessment.consultation_id, Assessment.region_id, Assessment.outcome))).all()
        consultations = (await session.scalars(select(Consultation.id))).all()
    # The figures seed stores placeholder ciphertexts; seal real assessments so they export.
    for consultation, region_id, outcome in rows:
        await app[SERVICES].assessments.save(consultation, region_id, AssessmentContent(outcome=outcome), "u1")
    kinds: set[str] = set()
    for consultation in consultations:
        bundle = await export_bundle(app[SERVICES], consultation)
        assert bundle is not None
        text = orjson.dumps(bundle).decode()
        assert "01018012371" not in text
        validated = Bundle.model_validate(bundle)
        kinds |= {entry.resource.get_resource_type() for entry in validated.entry or []}
    assert {"Encounter", "Patient", "Composition", "Media", "AuditEvent"} <= kinds
