"""One patient per national id and region, through the real API on SQLite and PostgreSQL:
registration answers with the patient already there, concurrent registrations make one
patient, and the nurse finds a patient by the number in a body, audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent, Patient
from woundcare.db.models import StaffRole

PASSWORD = "patients test password"
NUMBER = "01018012371"
SPELLINGS = [NUMBER, "010180 12371", " 0101 8012 371 ", "010180\t12371"]
"""One fictional number as people type it."""


NURSES = {"nurse": "east", "colleague": "east", "west": "west"}
"""Each nurse's one region."""


@dataclass
class Ward:
    """The server and a logged-in client per nurse of :data:`NURSES`."""

    server: RunningServer
    nurse: ApiClient
    colleague: ApiClient
    west: ApiClient


@pytest.fixture
async def ward(start_server: Any, db_url: str) -> AsyncIterator[Ward]:
    server = await start_server(database_url=db_url)
    clients: list[ApiClient] = []
    try:
        for name, region in NURSES.items():
            await server.add_user(name, PASSWORD, {region: StaffRole.NURSE})
            clients.append(ApiClient(server.url))
            await clients[-1].login(name, PASSWORD)
        yield Ward(server, *clients)
    finally:
        for client in clients:
            await client.close()


async def patient_rows(server: RunningServer) -> list[tuple[str, int]]:
    async with server.app[SERVICES].database.sessions() as session:
        return [tuple(row) for row in (await session.execute(select(Patient.pseudonym, Patient.region_id))).all()]


async def audit_rows(server: RunningServer, action: str) -> list[AuditEvent]:
    async with server.app[SERVICES].database.sessions() as session:
        return list((await session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )).all())


async def test_one_national_id_in_any_spacing_is_one_patient(ward: Ward) -> None:
    first = await ward.nurse.json("POST", "/api/patients", expect=201,
                                  json={"region": "east", "nationalId": SPELLINGS[1], "name": "Kari Øst"})
    assert (first["nationalId"], first["existed"]) == (NUMBER, False)  # stored in its one form
    for spelling, client in zip(SPELLINGS, (ward.nurse, ward.colleague, ward.nurse, ward.colleague), strict=True):
        again = await client.json("POST", "/api/patients", expect=200,
                                  json={"region": "east", "nationalId": spelling, "name": "Kari Skrevet Feil"})
        # The patient registered first, with the name given then: nothing is overwritten.
        assert again == {"id": first["id"], "name": "Kari Øst", "nationalId": NUMBER, "existed": True}
    listed = await ward.nurse.json("GET", "/api/patients")
    assert [p["id"] for p in listed["patients"]] == [first["id"]]
    # Another region has its own patient of the number: regions share no records.
    west = await ward.west.json("POST", "/api/patients", expect=201,
                                json={"region": "west", "nationalId": NUMBER, "name": "Kari Vest"})
    assert west["id"] != first["id"]
    assert len(await patient_rows(ward.server)) == 2
    audited = await audit_rows(ward.server, "patient.create")
    # The four that found the patient are audited as reading it, not making it.
    assert [e.resource for e in audited] == (
        [f"patient:{first['id']}"] + [f"patient:{first['id']}:existing"] * 4 + [f"patient:{west['id']}"])
    assert all(e.outcome == "ok" for e in audited)


async def test_an_invalid_number_is_refused_naming_the_rule(ward: Ward) -> None:
    for bad in ("01018012372", "0101801237", "010180-12371", "123456789012345678901"):
        answer = await ward.nurse.json("POST", "/api/patients", expect=400,
                                       json={"region": "east", "nationalId": bad, "name": "X"})
        assert answer["error"]["code"] in ("bad_national_id", "bad_request")
        assert bad.strip() not in answer["error"]["message"]
        found = await ward.nurse.json("POST", "/api/patients/lookup", expect=400,
                                      json={"region": "east", "nationalId": bad})
        assert found["error"]["code"] == answer["error"]["code"]
    assert await patient_rows(ward.server) == []


async def test_concurrent_registrations_of_one_number_make_one_patient(ward: Ward) -> None:
    async def register(i: int, client: ApiClient) -> tuple[int, dict[str, Any]]:
        response = await client.request("POST", "/api/patients", json={
            "region": "east", "nationalId": SPELLINGS[i % len(SPELLINGS)], "name": f"Kari {i}"})
        return response.status, await response.json()

    # Two nurses, four requests each at once; the region's first registration, so its index
    # key is made in the same race.
    clients = [ward.nurse, ward.colleague] * 4
    answers = await asyncio.gather(*(register(i, c) for i, c in enumerate(clients)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert len({body["id"] for _, body in answers}) == 1
    created = next(body for status, body in answers if status == 201)
    assert all(body["name"] == created["name"] for _, body in answers)
    assert len(await patient_rows(ward.server)) == 1


async def test_the_nurse_finds_a_patient_by_number_in_her_region_only_audited(ward: Ward) -> None:
    assert await ward.nurse.json("POST", "/api/patients/lookup",
                                 json={"region": "east", "nationalId": NUMBER}) == {"patient": None}
    east = await ward.nurse.json("POST", "/api/patients", expect=201,
                                 json={"region": "east", "nationalId": NUMBER, "name": "Kari Øst"})
    found = await ward.colleague.json("POST", "/api/patients/lookup",
                                      json={"region": "east", "nationalId": SPELLINGS[2]})
    assert found == {"patient": {"id": east["id"], "name": "Kari Øst", "nationalId": NUMBER}}
    # Another region's nurse neither finds it in her region nor may ask in east.
    assert await ward.west.json("POST", "/api/patients/lookup",
                                json={"region": "west", "nationalId": NUMBER}) == {"patient": None}
    refused = await ward.west.json("POST", "/api/patients/lookup", expect=403,
                                   json={"region": "east", "nationalId": NUMBER})
    assert refused["error"]["code"] == "forbidden"
    # The number is never part of the URL: a GET with it is no route.
    assert (await ward.nurse.request("GET", f"/api/patients/lookup?nationalId={NUMBER}")).status == 404

    audited = await audit_rows(ward.server, "patient.list")
    east_id = await ward.server.region("east")
    west_id = await ward.server.region("west")
    assert [(e.resource, e.outcome, e.region_id) for e in audited] == [
        ("patient:none", "ok", east_id),
        (f"patient:{east['id']}", "ok", east_id),
        ("patient:none", "ok", west_id),
        (None, "denied", east_id),
    ]
    assert not any(NUMBER in (e.resource or "") for e in await audit_rows(ward.server, "patient.create"))
