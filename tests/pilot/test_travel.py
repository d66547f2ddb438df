"""The lead's per-municipality distances drive the travel-avoided figure."""

from __future__ import annotations

from typing import Any

from tests.api.client import ApiClient
from woundcare.appkeys import SERVICES
from woundcare.db.models import Outcome
from woundcare.db.models import StaffRole
from woundcare.records.assessments import AssessmentContent
from woundcare.records.patients import PatientIdentity

PASSWORD = "travel test password"


async def test_entered_distances_replace_the_estimate(start_server: Any) -> None:
    server = await start_server()
    await server.add_user("lead", PASSWORD, {"east": StaffRole.PILOT_LEAD})
    region_id = await server.region("east")
    app = server.app
    # Three patients: one national id is one patient (issue 18).
    for number, municipality in (("01018012371", "3403 Hamar"), ("01018010018", "3430 Os"), ("01018010360", None)):
        view = await app[SERVICES].patients.register(region_id, PatientIdentity(number, "Test"), municipality)
        patient = await app[SERVICES].patients.find(view.pseudonym)
        assert patient is not None
        consultation = await app[SERVICES].consultations.start(patient, None)
        await app[SERVICES].assessments.save(
            consultation.id, region_id, AssessmentContent(outcome=Outcome.TREATED_AT_HOME), "u1"
        )
    lead = ApiClient(server.url)
    await lead.login("lead", PASSWORD)
    try:
        before = (await lead.json("GET", "/api/pilot/figures?region=east"))["regions"][0]["travelAvoided"]
        assert (before["km"], before["hours"], before["estimatedTrips"]) == (360.0, 4.5, 3)
        await lead.json("PUT", "/api/pilot/travel", json={"region": "east", "municipality": "3430 Os",
                                                          "km": 260, "hours": 3.5})
        await lead.json("PUT", "/api/pilot/travel", expect=400, json={"region": "east", "municipality": "3430 Os",
                                                                      "km": -1, "hours": 1})
        table = await lead.json("GET", "/api/pilot/travel?region=east")
        assert table["municipalities"] == [{"municipality": "3430 Os", "km": 260.0, "hours": 3.5}]
        after = (await lead.json("GET", "/api/pilot/figures?region=east"))["regions"][0]["travelAvoided"]
        assert (after["km"], after["hours"], after["estimatedTrips"]) == (260.0 + 240.0, 3.5 + 3.0, 2)
        assert after["placeholder"] is True
    finally:
        await lead.close()


async def test_a_nurse_registers_in_a_municipality_from_the_leads_list(start_server: Any) -> None:
    server = await start_server()
    await server.add_user("lead", PASSWORD, {"east": StaffRole.PILOT_LEAD})
    await server.add_user("nurse", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("nurse_west", PASSWORD, {"west": StaffRole.NURSE})
    lead, nurse, other = ApiClient(server.url), ApiClient(server.url), ApiClient(server.url)
    await lead.login("lead", PASSWORD)
    await nurse.login("nurse", PASSWORD)
    await other.login("nurse_west", PASSWORD)
    try:
        assert (await nurse.json("GET", "/api/pilot/municipalities?region=east"))["municipalities"] == []
        patient = {"region": "east", "nationalId": "01018012371", "name": "Test Testesen"}
        # Before the lead has entered any, no municipality is accepted: free text never matches.
        refused = await nurse.json("POST", "/api/patients", expect=400, json={**patient, "municipality": "3403 Hamar"})
        assert refused["error"]["code"] == "unknown_municipality" and "Hamar" not in refused["error"]["message"]
        for name, km in (("3403 Hamar", 30), ("3430 Os", 260)):
            await lead.json("PUT", "/api/pilot/travel", json={"region": "east", "municipality": name, "km": km, "hours": 2})
        assert (await nurse.json("GET", "/api/pilot/municipalities?region=east"))["municipalities"] == [
            "3403 Hamar", "3430 Os"]
        await nurse.json("POST", "/api/patients", expect=400, json={**patient, "municipality": "3403 hamar"})
        created = await nurse.json("POST", "/api/patients", expect=201, json={**patient, "municipality": "3430 Os"})
        # Not given is allowed (another person: registering a known number finds that patient).
        await nurse.json("POST", "/api/patients", expect=201, json={**patient, "nationalId": "02028012481"})
        await other.json("GET", "/api/pilot/municipalities?region=east", expect=403)
        await lead.json("GET", "/api/pilot/municipalities?region=east", expect=403)

        # The registered municipality's distance is what a visit treated at home saved.
        app = server.app
        found = await app[SERVICES].patients.find(created["id"])
        assert found is not None and found.municipality == "3430 Os"
        consultation = await app[SERVICES].consultations.start(found, None)
        await app[SERVICES].assessments.save(
            consultation.id, found.region_id, AssessmentContent(outcome=Outcome.TREATED_AT_HOME), "u1"
        )
        travel = (await lead.json("GET", "/api/pilot/figures?region=east"))["regions"][0]["travelAvoided"]
        assert (travel["km"], travel["hours"], travel["estimatedTrips"]) == (260.0, 2.0, 0)
    finally:
        for client in (lead, nurse, other):
            await client.close()
