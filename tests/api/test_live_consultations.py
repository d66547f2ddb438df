"""One live consultation per nurse and patient, and the list a nurse rejoins from, through the
real API on SQLite and PostgreSQL (issue 14)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent, Consultation, ConsultationStatus
from woundcare.db.models import StaffRole

PASSWORD = "live consultations password"
NATIONAL_IDS = ("01018012371", "02028010047")


@dataclass
class Ward:
    server: RunningServer
    nurse: ApiClient
    colleague: ApiClient
    specialist: ApiClient
    west_nurse: ApiClient
    patients: list[str]
    nurse_id: int


@pytest.fixture
async def ward(start_server: Any, migrated_db_url: str) -> AsyncIterator[Ward]:
    server = await start_server(database_url=migrated_db_url)
    nurse_id = await server.add_user("nurse", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("colleague", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    await server.add_user("west", PASSWORD, {"west": StaffRole.NURSE})
    clients = [ApiClient(server.url) for _ in range(4)]
    for client, name in zip(clients, ("nurse", "colleague", "spes", "west"), strict=True):
        await client.login(name, PASSWORD)
    patients = [
        (await clients[0].json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": nid, "name": "Kari Øst"}))["id"]
        for nid in NATIONAL_IDS
    ]
    yield Ward(server, *clients, patients=patients, nurse_id=nurse_id)
    for client in clients:
        await client.close()


async def live(client: ApiClient) -> list[str]:
    return [c["id"] for c in (await client.json("GET", "/api/consultations/live"))["consultations"]]


async def test_a_second_start_for_the_same_patient_names_the_live_one(ward: Ward) -> None:
    first = await ward.nurse.json("POST", "/api/consultations", expect=201, json={"patient": ward.patients[0]})
    refused = await ward.nurse.json("POST", "/api/consultations", expect=409, json={"patient": ward.patients[0]})
    assert refused["error"]["code"] == "consultation_live"
    assert refused["error"]["consultation"] == first["id"]
    assert ward.patients[0] not in refused["error"]["message"]
    # Still live once a participant made it active; another patient, or another nurse, starts freely.
    async with ward.server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(
            update(Consultation).where(Consultation.id == first["id"]).values(status=ConsultationStatus.ACTIVE)
        )
    again = await ward.nurse.json("POST", "/api/consultations", expect=409, json={"patient": ward.patients[0]})
    assert again["error"]["consultation"] == first["id"]
    other = await ward.nurse.json("POST", "/api/consultations", expect=201, json={"patient": ward.patients[1]})
    theirs = await ward.colleague.json("POST", "/api/consultations", expect=201, json={"patient": ward.patients[0]})
    assert await live(ward.nurse) == [first["id"], other["id"]]
    assert await live(ward.colleague) == [theirs["id"]]
    # Once ended, it is neither live nor in the way of a new one.
    await ward.nurse.json("POST", f"/api/consultations/{first['id']}/end", expect=204)
    assert await live(ward.nurse) == [other["id"]]
    await ward.nurse.json("POST", "/api/consultations", expect=201, json={"patient": ward.patients[0]})
    async with ward.server.app[SERVICES].database.sessions() as session:
        refusals = (await session.scalars(
            select(AuditEvent.resource).where(AuditEvent.action == "consultation.start", AuditEvent.outcome == "failed")
        )).all()
    assert refusals == [f"consultation:{first['id']}"] * 2


async def test_the_live_list_is_the_callers_own(ward: Ward) -> None:
    mine = await ward.nurse.json("POST", "/api/consultations", expect=201, json={"patient": ward.patients[0]})
    assert mine["status"] == "waiting"
    [listed] = (await ward.nurse.json("GET", "/api/consultations/live"))["consultations"]
    assert listed == mine
    # The specialist who may read it, and a nurse of another region, have started none.
    assert await live(ward.specialist) == []
    assert await live(ward.west_nurse) == []
    anonymous = ApiClient(ward.server.url)
    try:
        await anonymous.json("GET", "/api/consultations/live", expect=401)
    finally:
        await anonymous.close()
    async with ward.server.app[SERVICES].database.sessions() as session:
        reads = (await session.scalars(
            select(AuditEvent.outcome).where(
                AuditEvent.action == "consultation.read", AuditEvent.actor == f"u{ward.nurse_id}")
        )).all()
    assert reads == ["ok"]


async def test_concurrent_starts_make_one_consultation(ward: Ward) -> None:
    """Twelve Starts for one patient at the same moment (a double tap, two tabs): the database
    lets one through and the rest are told which one is live."""
    answers = await asyncio.gather(*(
        ward.nurse.request("POST", "/api/consultations", json={"patient": ward.patients[0]}) for _ in range(12)
    ))
    bodies = [(answer.status, await answer.json()) for answer in answers]
    created = [body["id"] for status, body in bodies if status == 201]
    assert len(created) == 1, [status for status, _ in bodies]
    assert all(
        status == 409 and body["error"] == {**body["error"], "code": "consultation_live", "consultation": created[0]}
        for status, body in bodies if status != 201
    )
    async with ward.server.app[SERVICES].database.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Consultation).where(Consultation.patient_id.is_not(None))
        )
    assert count == 1
