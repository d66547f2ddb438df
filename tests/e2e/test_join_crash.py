"""SIGKILL right after clients were told they joined: every join a client was told of (its
``joined`` frame) and every leave answered with its close is in the session log and in the
audit chain after the crash, and the chain verifies. Joins and leaves are stored by group
commit (``woundcare/records/session_log.py``); this is what its promise means."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from sqlalchemy import select

from tests.e2e.process import woundcare_cli
from tests.e2e.test_crash import StartServer, start_server  # noqa: F401
from tests.e2e.ward import consented_consultation, logged_in
from woundcare.db.engine import make_engine
from woundcare.db.models import AuditEvent, ConsultationEvent


async def joined(session: aiohttp.ClientSession, url: str, consultation: str, role: str,
                 token: str) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await session.ws_connect(f"{url}/ws")
    await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": role, "token": token})
    frame = await ws.receive_json(timeout=10)
    assert frame["type"] == "joined", frame
    return ws, frame


async def stored(db_url: str, consultation: str) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """The consultation's session-log events and its audit entries, as (kind or action, participant or actor)."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            events = (await connection.execute(
                select(ConsultationEvent.kind, ConsultationEvent.participant)
                .where(ConsultationEvent.consultation_id == consultation)
                .order_by(ConsultationEvent.id)
            )).all()
            audited = (await connection.execute(
                select(AuditEvent.action, AuditEvent.actor)
                .where(AuditEvent.resource == f"consultation:{consultation}",
                       AuditEvent.action.in_(("room.join", "room.leave")))
                .order_by(AuditEvent.seq)
            )).all()
    finally:
        await engine.dispose()
    return [(e.kind, e.participant) for e in events], [(a.action, a.actor) for a in audited]


async def test_sigkill_after_joined_keeps_every_join_and_answered_leave(
    start_server: StartServer, migrated_db_url: str  # noqa: F811 (the fixture imported above)
) -> None:
    server = await start_server()
    nurse = await logged_in(server, "nurse")
    specialist = await logged_in(server, "spes")
    try:
        consultation = await consented_consultation(nurse)
        path = f"/api/consultations/{consultation}/join-token"
        tokens = [(await client.json("POST", path))["token"] for client in (specialist, nurse, specialist)]
        nurse_ref = (await nurse.json("GET", "/api/session"))["user"]["id"]
        specialist_ref = (await specialist.json("GET", "/api/session"))["user"]["id"]
    finally:
        await nurse.close()
        await specialist.close()

    async with aiohttp.ClientSession() as session:
        first, first_joined = await joined(session, server.url, consultation, "specialist", tokens[0])
        await first.send_json({"type": "leave"})
        assert (await first.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        # Two at once, so that their joins share a write; the kill comes as soon as both are told.
        (a, a_joined), (b, b_joined) = await asyncio.gather(
            joined(session, server.url, consultation, "nurse", tokens[1]),
            joined(session, server.url, consultation, "specialist", tokens[2]),
        )
        await server.kill()
        for ws in (a, b):
            await ws.close()

    events, audited = await stored(migrated_db_url, consultation)
    first_id, nurse_id, second_id = (f["you"]["id"] for f in (first_joined, a_joined, b_joined))
    assert {("joined", first_id), ("left", first_id), ("joined", nurse_id), ("joined", second_id)} <= set(events), events
    assert events.index(("joined", first_id)) < events.index(("left", first_id))
    assert sorted(audited) == sorted([
        ("room.join", specialist_ref),
        ("room.leave", specialist_ref),
        ("room.join", nurse_ref),
        ("room.join", specialist_ref),
    ]), audited
    # Exits 1 (and fails the test) at the first break of the chain.
    verdict = await woundcare_cli("audit", "verify", environ=server.environ())
    assert "audit chain ok" in verdict, verdict
