"""E-consults through the real API, on SQLite and PostgreSQL: the nurse sends photos with a
question and an urgency; it waits in the specialists' queue beside calls (never abandoned,
never joined); a signed assessment answers it, in the same record; the nurse sees the
answer; the pilot counts e-consults apart from video calls."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.api.clinic import PLAN, Clinic, clinic, jpeg_with_exif
from woundcare.appkeys import SERVICES
from woundcare.crypto import key_id_of
from woundcare.db.models import Consultation
from woundcare.records.rekey import Reencryption

QUESTION = "Granulation looks pale since Monday: change the dressing?"


@pytest.fixture
async def east(start_server: Any, db_url: str) -> AsyncIterator[Clinic]:
    # Abandonment after half a second: an e-consult must outlast it.
    async with clinic(await start_server(database_url=db_url, abandon_seconds=0.5)) as found:
        yield found


async def send(east: Clinic, urgency: str = "soon", photos: int = 1) -> dict[str, Any]:
    """What the nurse page does: the e-consult, the consent to store photos, the photos."""
    sent: dict[str, Any] = await east.nurse.json("POST", "/api/consultations", expect=201, json={
        "patient": east.patient, "channel": "econsult", "question": QUESTION, "urgency": urgency})
    await east.nurse.json("POST", f"/api/consultations/{sent['id']}/consents", expect=201,
                          json={"video": False, "snapshots": True})
    for _ in range(photos):
        form = aiohttp.FormData()
        form.add_field("image", jpeg_with_exif(), filename="wound.jpg", content_type="image/jpeg")
        response = await east.nurse.request("POST", f"/api/consultations/{sent['id']}/snapshots", data=form)
        assert response.status == 201
    return sent


@pytest.mark.parametrize("body", [
    {"channel": "econsult", "urgency": "soon"},
    {"channel": "econsult", "question": QUESTION},
    {"channel": "econsult", "question": QUESTION, "urgency": "tomorrow"},
    {"channel": "econsult", "question": "x" * 2001, "urgency": "soon"},
    {"question": QUESTION, "urgency": "soon"},
    {"channel": "letter", "question": QUESTION, "urgency": "soon"},
])
async def test_an_econsult_needs_a_question_and_an_urgency(east: Clinic, body: dict[str, Any]) -> None:
    error = await east.nurse.json("POST", "/api/consultations", expect=400, json={"patient": east.patient, **body})
    assert error["error"]["code"] == "bad_request" and "Granulation" not in error["error"]["message"]


async def test_an_econsult_waits_beside_calls_and_is_answered_in_one_record(east: Clinic) -> None:
    sent = await send(east, "urgent")
    assert (sent["channel"], sent["urgency"], sent["status"]) == ("econsult", "urgent", "waiting")
    # The question is sealed; the photo went the snapshots' way (checked, metadata dropped).
    async with east.server.app[SERVICES].database.sessions() as session:
        row = await session.get(Consultation, sent["id"])
    assert row is not None and row.question_sealed is not None and b"Granulation" not in row.question_sealed
    photos = (await east.specialist.json("GET", f"/api/consultations/{sent['id']}/snapshots"))["snapshots"]
    assert len(photos) == 1
    image = await east.specialist.request("GET", f"/api/snapshots/{photos[0]['id']}")
    assert not Image.open(io.BytesIO(await image.read())).getexif()

    # Not a call: the nurse may still call about the patient, it is no call to rejoin or join.
    call = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
    assert call["channel"] == "video" and call["urgency"] is None
    assert [c["id"] for c in (await east.nurse.json("GET", "/api/consultations/live"))["consultations"]] == [call["id"]]
    refused = await east.specialist.json("POST", f"/api/consultations/{sent['id']}/join-token", expect=409)
    assert refused["error"]["code"] == "econsult"

    # In the queue past the abandonment time (the call nobody joined is abandoned).
    await asyncio.sleep(1.0)
    queue = (await east.specialist.json("GET", "/api/consultations/queue"))["consultations"]
    assert [(c["id"], c["channel"], c["urgency"]) for c in queue] == [(sent["id"], "econsult", "urgent")]
    assert (await east.west_nurse.json("GET", f"/api/consultations/{sent['id']}", expect=404))
    opened = await east.specialist.json("GET", f"/api/consultations/{sent['id']}")
    assert opened["question"] == QUESTION

    signed = await east.sign(sent["id"])
    assert signed["signedAt"] is not None
    answered = await east.specialist.json("GET", f"/api/consultations/{sent['id']}")
    assert answered["status"] == "ended" and answered["endedAt"] == signed["signedAt"]
    assert (await east.specialist.json("GET", "/api/consultations/queue"))["consultations"] == []

    mine = (await east.nurse.json("GET", "/api/consultations/econsults"))["consultations"]
    assert [(c["id"], c["status"], c["question"]) for c in mine] == [(sent["id"], "ended", QUESTION)]
    assert mine[0]["answer"]["treatmentPlan"] == PLAN["treatmentPlan"]
    assert (await east.west_nurse.json("GET", "/api/consultations/econsults"))["consultations"] == []
    plans = (await east.nurse.json("GET", "/api/plans/unacknowledged"))["plans"]
    assert [(p["id"], p["channel"]) for p in plans] == [(sent["id"], "econsult")]
    # One record: the e-consult's row holds question, photos and answer; the call is the other.
    async with east.server.app[SERVICES].database.sessions() as session:
        assert await session.scalar(select(func.count(Consultation.id))) == 2


async def test_an_unanswered_econsult_lists_no_draft_as_its_answer(east: Clinic) -> None:
    sent = await send(east, photos=0)
    await east.specialist.json("PUT", f"/api/consultations/{sent['id']}/assessment", json=PLAN)
    mine = (await east.nurse.json("GET", "/api/consultations/econsults"))["consultations"]
    assert [(c["status"], c["answer"]) for c in mine] == [("waiting", None)]


async def test_the_pilot_counts_econsults_apart_with_their_time_to_answer(east: Clinic) -> None:
    call = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
    answered, waiting = await send(east, "routine", photos=0), await send(east, "urgent", photos=0)
    await east.sign(answered["id"])
    await east.sign(call["id"])
    assert waiting["id"]

    figures = (await east.lead.json("GET", "/api/pilot/figures?region=east"))["regions"][0]
    assert figures["consultations"] == 1 and figures["outcomes"]["treatedAtHome"] == 1
    econsults = (await east.lead.json("GET", "/api/pilot/econsults?region=east"))["regions"]
    assert len(econsults) == 1
    found = econsults[0]
    assert (found["region"], found["sent"], found["answered"], found["open"]) == ("east", 2, 1, 1)
    assert found["byUrgency"] == {"routine": 1, "soon": 0, "urgent": 1}
    async with east.server.app[SERVICES].database.sessions() as session:
        row = await session.get(Consultation, answered["id"])
    assert row is not None and row.ended_at is not None
    hours = (row.ended_at - row.created_at).total_seconds() / 3600
    assert found["answerHours"] == {"values": 1, "median": round(hours, 3), "p90": round(hours, 3)}
    await east.nurse.json("GET", "/api/pilot/econsults", expect=403)
    await east.lead.json("GET", "/api/pilot/econsults?region=west", expect=403)


async def test_a_key_rotation_reseals_the_question(east: Clinic) -> None:
    sent = await send(east, photos=0)
    services = east.server.app[SERVICES]
    view = await services.consultations.get(sent["id"])
    assert view is not None
    new_key = await services.keyring.rotate(view.region_id)
    rekey = Reencryption(services.database, services.keyring, services.snapshots)
    assert await rekey.pending(view.region_id) == 2  # the patient's identity and the question
    assert await rekey.run(view.region_id) == 2
    async with services.database.sessions() as session:
        row = await session.get(Consultation, sent["id"])
    assert row is not None and row.question_sealed is not None and key_id_of(row.question_sealed) == new_key
    assert (await east.specialist.json("GET", f"/api/consultations/{sent['id']}"))["question"] == QUESTION
