"""The plan back to the nurse through the real API, on SQLite and PostgreSQL: a signed
assessment's plan, next review and who is responsible; the nurse's acknowledgement (audited,
region-checked, once); the unacknowledged plans of her region; the plan in the timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.clinic import PLAN, Clinic, clinic
from woundcare.appkeys import SERVICES
from woundcare.db.models import Assessment


@pytest.fixture
async def east(start_server: Any, db_url: str) -> AsyncIterator[Clinic]:
    async with clinic(await start_server(database_url=db_url)) as found:
        yield found


async def call(east: Clinic) -> str:
    started: dict[str, Any] = await east.nurse.json("POST", "/api/consultations", expect=201,
                                                    json={"patient": east.patient})
    return str(started["id"])


async def test_the_signed_plan_reaches_the_nurse_sealed(east: Clinic) -> None:
    consultation = await call(east)
    signed = await east.sign(consultation)
    assert (signed["treatmentPlan"], signed["nextReview"], signed["responsible"]) == (
        PLAN["treatmentPlan"], PLAN["nextReview"], "home_care")
    assert signed["acknowledgedAt"] is None
    read = await east.nurse.json("GET", f"/api/consultations/{consultation}/assessment")
    assert read["responsible"] == "home_care" and read["nextReview"] == "2026-12-20"
    timeline = await east.nurse.json("GET", f"/api/patients/{east.patient}/timeline")
    entry = next(e for e in timeline["entries"] if e.get("id") == consultation)
    assert entry["kind"] == "consultation" and entry["assessment"]["treatmentPlan"] == PLAN["treatmentPlan"]
    async with east.server.app[SERVICES].database.sessions() as session:
        row = await session.scalar(select(Assessment))
    assert row is not None and b"home_care" not in row.content_sealed and b"Compression" not in row.content_sealed


@pytest.mark.parametrize("responsible", ["neighbour", 3, ["gp"]])
async def test_responsible_is_one_of_a_fixed_set(east: Clinic, responsible: object) -> None:
    consultation = await call(east)
    error = await east.specialist.json("PUT", f"/api/consultations/{consultation}/assessment", expect=400,
                                       json={**PLAN, "responsible": responsible})
    assert error["error"]["code"] == "bad_assessment"
    assert error["error"]["message"] == "'responsible' must be one of: home_care, specialist, gp"


async def test_acknowledged_once_audited_and_idempotent(east: Clinic) -> None:
    consultation = await call(east)
    path = f"/api/consultations/{consultation}/assessment/acknowledge"
    assert (await east.nurse.json("POST", path, expect=404))["error"]["code"] == "not_found"
    await east.specialist.json("PUT", f"/api/consultations/{consultation}/assessment", json=PLAN)
    assert (await east.nurse.json("POST", path, expect=409))["error"]["code"] == "not_signed"
    await east.specialist.json("POST", f"/api/consultations/{consultation}/assessment/sign")

    first = await east.nurse.json("POST", path)
    assert first["acknowledgedAt"] is not None and first["acknowledgedBy"].startswith("u")
    again = await east.nurse.json("POST", path)
    assert (again["acknowledgedAt"], again["acknowledgedBy"]) == (first["acknowledgedAt"], first["acknowledgedBy"])
    read = await east.specialist.json("GET", f"/api/consultations/{consultation}/assessment")
    assert read["acknowledgedAt"] == first["acknowledgedAt"]

    # Another region's nurse learns nothing (404, as for none); a specialist may not (403).
    assert (await east.west_nurse.json("POST", path, expect=404))["error"]["code"] == "not_found"
    assert (await east.specialist.json("POST", path, expect=403))["error"]["code"] == "forbidden"
    audited = [(e.outcome, e.resource, e.role) for e in await east.audit("plan.acknowledge")]
    resource = f"consultation:{consultation}"
    assert audited == [
        ("denied", resource, "nurse"), ("failed", resource, "nurse"),  # no assessment, then a draft
        ("ok", resource, "nurse"), ("ok", resource, "nurse"),
        ("denied", resource, None), ("denied", None, None),  # the west nurse, the specialist
    ]


async def test_unacknowledged_plans_are_listed_for_the_nurses_region(east: Clinic) -> None:
    first, second = await call(east), None
    await east.sign(first)
    await east.nurse.json("POST", f"/api/consultations/{first}/end", expect=204)
    second = await call(east)
    await east.specialist.json("PUT", f"/api/consultations/{second}/assessment", json=PLAN)  # a draft: not listed

    listed = (await east.nurse.json("GET", "/api/plans/unacknowledged"))["plans"]
    assert [(p["id"], p["patient"], p["channel"]) for p in listed] == [(first, east.patient, "video")]
    assert listed[0]["assessment"]["treatmentPlan"] == PLAN["treatmentPlan"]
    assert (await east.west_nurse.json("GET", "/api/plans/unacknowledged"))["plans"] == []
    await east.specialist.json("GET", "/api/plans/unacknowledged", expect=403)

    await east.specialist.json("POST", f"/api/consultations/{second}/assessment/sign")
    listed = (await east.nurse.json("GET", "/api/plans/unacknowledged"))["plans"]
    assert [p["id"] for p in listed] == [first, second]
    await east.nurse.json("POST", f"/api/consultations/{first}/assessment/acknowledge")
    assert [p["id"] for p in (await east.nurse.json("GET", "/api/plans/unacknowledged"))["plans"]] == [second]
