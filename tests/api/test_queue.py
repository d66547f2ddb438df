"""The specialists' queue: whether each nurse is connected now, how long she has waited, the
region's name; consultations left with no nurse become abandoned once, leave the queue,
refuse joins and count as abandoned in the pilot figures (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from signaling.protocol import Role
from tests.api.client import ApiClient
from tests.server import RunningServer
from tests.signaling.test_ws import RawSocket
from woundcare.appkeys import QUEUE, SERVICES
from woundcare.db.models import AuditEvent, Consultation, ConsultationEvent, ConsultationStatus
from woundcare.db.models import StaffRole
from woundcare.demo import DEMO_REGION
from woundcare.records.queue import ABANDON_ACTION

PASSWORD = "queue test password"
WAIT_SECONDS = 10.0
"""Bound on waiting for a background effect (the session log, the sweep) on a loaded machine."""


class Scene:
    """A server with a specialist logged in, consultations and nurses' sockets."""

    def __init__(self, server: RunningServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.specialist = ApiClient(server.url)

    async def queue(self) -> dict[str, dict[str, Any]]:
        body = await self.specialist.json("GET", "/api/consultations/queue")
        return {c["id"]: c for c in body["consultations"]}

    async def entry(self, consultation: str, accept: Callable[[dict[str, Any] | None], bool]) -> dict[str, Any] | None:
        """The consultation's queue entry (None once gone) when ``accept`` holds."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                found = (await self.queue()).get(consultation)
                if accept(found):
                    return found
                await asyncio.sleep(0.1)

    async def join(self, consultation: str, role: Role = Role.NURSE) -> RawSocket:
        socket = RawSocket(await self.session.ws_connect(f"{self.server.url}/ws"))
        joined = await socket.join(consultation, role, self.server.invite(consultation, role))
        assert joined["type"] == "joined", joined
        return socket

    async def status(self, consultation: str) -> ConsultationStatus:
        async with self.server.app[SERVICES].database.sessions() as session:
            return (await session.get(Consultation, consultation)).status  # type: ignore[union-attr]

    async def count(self, model: Any, *where: Any) -> int:
        async with self.server.app[SERVICES].database.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def backdate(self, consultation: str, seconds: float) -> None:
        """As if it had been created ``seconds`` ago, with nothing in its session log since."""
        async with self.server.app[SERVICES].database.sessions() as session, session.begin():
            await session.execute(
                update(Consultation)
                .where(Consultation.id == consultation)
                .values(created_at=datetime.now(UTC) - timedelta(seconds=seconds))
            )


@pytest.fixture
async def scene(start_server: Callable[..., Awaitable[RunningServer]], migrated_db_url: str) -> AsyncIterator[Any]:
    made: list[Scene] = []
    session = aiohttp.ClientSession()

    async def make(**settings: Any) -> Scene:
        server = await start_server(database_url=migrated_db_url, **settings)
        await server.add_user("spes", PASSWORD, {DEMO_REGION: StaffRole.SPECIALIST})
        found = Scene(server, session)
        assert (await found.specialist.login("spes", PASSWORD)).status == 200
        made.append(found)
        return found

    yield make
    for found in made:
        await found.specialist.close()
    await session.close()


async def test_the_queue_shows_whether_the_nurse_is_connected_now(scene: Any) -> None:
    s = await scene(grace_seconds=0.5)
    consultation = await s.server.new_consultation()
    entry = (await s.queue())[consultation]
    assert entry["regionName"] == f"Region {DEMO_REGION}" and entry["region"] == DEMO_REGION
    assert entry["nurse"] == {"state": "absent", "connected": False, "lastSeenAt": None}
    assert entry["status"] == "waiting" and entry["waitedSeconds"] >= 0

    nurse = await s.join(consultation)
    entry = (await s.queue())[consultation]
    assert entry["nurse"]["state"] == "joined" and entry["nurse"]["connected"] is True

    # Her page closes without a leave: reconnecting for the grace window, then gone.
    await nurse.ws.close()
    entry = await s.entry(consultation, lambda e: e is not None and e["nurse"]["state"] != "joined")
    assert entry is not None and entry["nurse"]["connected"] is False
    entry = await s.entry(consultation, lambda e: e is not None and e["nurse"]["state"] == "absent")
    assert entry is not None and entry["nurse"]["lastSeenAt"] is not None
    assert datetime.fromisoformat(entry["nurse"]["lastSeenAt"]) > datetime.fromisoformat(entry["createdAt"])
    assert entry["status"] == "waiting", "within the window it stays"


async def test_a_consultation_with_no_nurse_is_abandoned_once(scene: Any) -> None:
    s = await scene(abandon_seconds=1.0)
    kept_by_nurse, kept_by_viewer, deserted = [await s.server.new_consultation() for _ in range(3)]
    await s.join(kept_by_nurse)
    await s.join(kept_by_viewer, Role.SPECIALIST)  # a specialist still writing keeps it
    nurse = await s.join(deserted)
    await nurse.send(type="leave")
    assert await nurse.closed_with() == 1000

    await s.entry(deserted, lambda e: e is None)
    assert await s.status(deserted) is ConsultationStatus.ABANDONED
    await asyncio.sleep(1.5)  # well past the window: the others stay
    assert {kept_by_nurse, kept_by_viewer} <= set(await s.queue())
    assert await s.status(kept_by_nurse) is ConsultationStatus.WAITING

    # Logged once in the session log and the audit, by id only.
    await s.server.app[SERVICES].session_log.flush()
    assert await s.count(ConsultationEvent, ConsultationEvent.kind == "abandoned") == 1
    assert await s.count(AuditEvent, AuditEvent.action == ABANDON_ACTION) == 1
    async with s.server.app[SERVICES].database.sessions() as session:
        audit = (await session.scalars(select(AuditEvent).where(AuditEvent.action == ABANDON_ACTION))).one()
    assert (audit.actor, audit.resource) == ("system", f"consultation:{deserted}")

    # The nurse who comes back is refused as ended: she starts a new consultation.
    late = RawSocket(await s.session.ws_connect(f"{s.server.url}/ws"))
    refused = await late.join(deserted, Role.NURSE, s.server.invite(deserted, Role.NURSE))
    assert (refused["type"], refused["code"]) == ("error", "forbidden")


async def test_abandoned_consultations_count_as_abandoned_in_the_figures(scene: Any) -> None:
    s = await scene()
    await s.server.add_user("lead", PASSWORD, {DEMO_REGION: StaffRole.PILOT_LEAD})
    abandoned, waiting = await s.server.new_consultation(), await s.server.new_consultation()
    await s.backdate(abandoned, 3600)
    assert set(await s.queue()) == {waiting}
    lead = ApiClient(s.server.url)
    try:
        assert (await lead.login("lead", PASSWORD)).status == 200
        (figures,) = (await lead.json("GET", "/api/pilot/figures"))["regions"]
        assert figures["consultations"] == 2
        assert figures["outcomes"] == {"treatedAtHome": 0, "referred": 0, "abandoned": 1, "none": 1}
        csv = await (await lead.request("GET", "/api/pilot/figures.csv")).text()
        header, row = (line.split(",") for line in csv.splitlines()[:2])
        assert dict(zip(header, row, strict=True))["abandoned"] == "1"
        sessions = (await lead.json("GET", "/api/pilot/sessions"))["sessions"]
        assert {x["id"]: x["status"] for x in sessions} == {abandoned: "abandoned", waiting: "waiting"}
    finally:
        await lead.close()


async def test_concurrent_queue_reads_and_sweeps_mark_it_once(scene: Any) -> None:
    s = await scene()
    deserted = [await s.server.new_consultation() for _ in range(3)]
    for consultation in deserted:
        await s.backdate(consultation, 3600)
    queue = s.server.app[QUEUE]
    readers = [s.queue() for _ in range(12)] + [queue.sweep() for _ in range(6)]
    await asyncio.gather(*readers)
    assert [await s.status(c) for c in deserted] == [ConsultationStatus.ABANDONED] * 3
    await s.server.app[SERVICES].session_log.flush()
    assert await s.count(ConsultationEvent, ConsultationEvent.kind == "abandoned") == 3
    assert await s.count(AuditEvent, AuditEvent.action == ABANDON_ACTION) == 3
