"""Webhooks across a crash: the real server is killed with SIGKILL while its receiver is
down (answering 503) and one delivery is in flight, then started again (issue 19, events).

What must hold: every event reaches the receiver, which de-duplicates by ``webhook-id`` and
so acts on each exactly once; none is lost and none is sent again under a new id; the one in
flight at the kill comes again with its id; every request verifies (with the Standard
Webhooks library and ours); no body names the patient. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.api.clinic import PLAN
from tests.api.client import ApiClient
from tests.e2e.process import ServerProcess, child_environ, woundcare_cli
from tests.services import free_port
from tests.webhooks.receiver import Receiver
from woundcare.db.engine import make_engine
from woundcare.db.models import WebhookDelivery, WebhookEvent

PASSWORD = "webhook crash password"
NAME, NATIONAL_ID = "Kari Øst", "01018012371"
QUESTION = "Is the edge of the wound macerated since Friday?"
WAIT_SECONDS = 60.0
HOLD_SECONDS = 4.0
"""The receiver keeps the in-flight delivery's answer this long: past the kill."""
SETTINGS = {
    "WOUNDCARE_WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WOUNDCARE_WEBHOOK_RETRY_CAP_SECONDS": "2",
    "WOUNDCARE_WEBHOOK_MAX_ATTEMPTS": "100",
    "WOUNDCARE_WEBHOOK_TIMEOUT_SECONDS": "2",
    "WOUNDCARE_WEBHOOK_POLL_SECONDS": "0.5",
}


async def until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"not within {WAIT_SECONDS:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def outbox(db_url: str) -> tuple[set[str], list[WebhookDelivery]]:
    """The events' ids and every delivery, read from the database itself."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            ids = set((await connection.scalars(select(WebhookEvent.id))).all())
            deliveries = list((await connection.execute(select(WebhookDelivery))).all())
    finally:
        await engine.dispose()
    return ids, deliveries  # type: ignore[return-value]


@pytest.fixture
async def world(tmp_path: Path, migrated_db_url: str) -> AsyncIterator[tuple[ServerProcess, Receiver]]:
    server = ServerProcess(
        data_dir=tmp_path / "data", database_url=migrated_db_url, instance=f"hooks-{secrets.token_hex(4)}",
        port=free_port(), log_path=tmp_path / "server.log", settings=SETTINGS,
    )
    admin = child_environ({"WOUNDCARE_DATA_DIR": str(server.data_dir), "WOUNDCARE_DATABASE_URL": migrated_db_url,
                           "WOUNDCARE_NEW_PASSWORD": PASSWORD})
    await woundcare_cli("region", "add", "east", "East", environ=admin)
    for user, role in (("nurse", "nurse"), ("spes", "specialist")):
        await woundcare_cli("user", "add", user, "--name", user.title(), "--role", role, "--region", "east",
                            environ=admin)
    receiver = Receiver()
    added = await woundcare_cli("webhooks", "add", receiver.url, environ=admin)
    match = re.search(r"secret \(shown once\): (whsec_\S+)", added)
    assert match, added
    receiver.secret = match.group(1)
    await receiver.start()
    try:
        yield server, receiver
    finally:
        await server.kill()
        await receiver.stop()


async def logged_in(server: ServerProcess, username: str) -> ApiClient:
    client = ApiClient(server.url)
    assert (await client.login(username, PASSWORD)).status == 200
    return client


async def test_every_event_arrives_once_per_id_across_a_sigkill(
    world: tuple[ServerProcess, Receiver], migrated_db_url: str
) -> None:
    server, receiver = world
    mode = "down"
    in_flight = asyncio.Event()
    held: list[str] = []

    async def answer(msg_id: str) -> int:
        nonlocal mode
        if mode == "down":
            return 503
        if mode == "hold":
            mode = "up"
            held.append(msg_id)
            in_flight.set()
            await asyncio.sleep(HOLD_SECONDS)
        return 204

    receiver.answer = answer
    await server.start()
    nurse, specialist = await logged_in(server, "nurse"), await logged_in(server, "spes")
    try:
        patient = (await nurse.json("POST", "/api/patients", expect=201,
                                    json={"region": "east", "nationalId": NATIONAL_ID, "name": NAME}))["id"]
        calls = []
        for _ in range(3):
            call = await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient})
            calls.append(call["id"])
            if len(calls) < 3:
                await nurse.json("POST", f"/api/consultations/{call['id']}/end", expect=204)
        econsult = (await nurse.json("POST", "/api/consultations", expect=201, json={
            "patient": patient, "channel": "econsult", "question": QUESTION, "urgency": "soon"}))["id"]
        await specialist.json("PUT", f"/api/consultations/{econsult}/assessment", json=PLAN)
        await specialist.json("POST", f"/api/consultations/{econsult}/assessment/sign")
    finally:
        await nurse.close()
        await specialist.close()
    before = 8
    await until(lambda: len({r.id for r in receiver.received}) == before, "a first (refused) attempt of each event")

    # The receiver comes back; the first delivery it gets is held past the kill.
    mode = "hold"
    await asyncio.wait_for(in_flight.wait(), WAIT_SECONDS)
    await server.kill()
    acted_before_kill = {r.id for r in receiver.received if 200 <= r.status < 300}
    assert len(acted_before_kill) < before, "the kill left no delivery undone: the test proves nothing"

    await server.start()
    nurse = await logged_in(server, "nurse")
    try:
        await nurse.json("POST", f"/api/consultations/{calls[2]}/end", expect=204)
    finally:
        await nurse.close()

    async def all_delivered() -> bool:
        ids, deliveries = await outbox(migrated_db_url)
        return len(ids) == before + 1 and all(d.delivered_at is not None for d in deliveries)

    await until(all_delivered, "every delivery delivered after the restart")
    ids, deliveries = await outbox(migrated_db_url)
    assert len(deliveries) == len(ids), "one delivery per event to the one endpoint"
    await until(lambda: set(receiver.accepted) == ids, "the receiver acted on every event")

    assert all(r.verified for r in receiver.received)
    # The one in flight at the kill came again, with its id, and was acted on once.
    assert len(receiver.attempts(held[0])) >= 2
    for msg_id in ids:
        assert len({r.body for r in receiver.attempts(msg_id)}) == 1, "a retry sends the same body"
    # No event twice under two ids: exactly the changes made, each once.
    seen = Counter((r.payload["type"], r.payload["data"]["consultation"]) for r in receiver.accepted.values())
    assert seen == Counter(
        [("consultation.queued", c) for c in calls] + [("consultation.ended", c) for c in calls]
        + [("econsult.asked", econsult), ("assessment.signed", econsult), ("econsult.answered", econsult)]
    )
    bodies = b"".join(r.body for r in receiver.received).decode()
    for text in ("Kari", "Øst", NATIONAL_ID, patient, '"patient"', QUESTION, PLAN["treatmentPlan"]):
        assert text not in bodies
