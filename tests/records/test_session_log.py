"""The session log's group commit on SQLite and PostgreSQL: a batch's events are stored with
their audit entries, and an event of a consultation that does not exist is not stored (nor
does it cost the rest of its batch); one who stops waiting for a batch stops no other's wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import select

from signaling.protocol import Role
from signaling.sink import EventKind, RoomEvent
from tests.api.clinic import clinic
from tests.server import RunningServer
from tests.statements import statements as sent
from woundcare.appkeys import SERVICES
from woundcare.audit.chain import CheckpointSigner
from woundcare.audit.verify import verify
from woundcare.db.models import AuditEvent, Consultation, ConsultationEvent, ConsultationStatus
from woundcare.records.audit_trail import AuditTrail
from woundcare.services import Services


@pytest.fixture
async def ward(
    start_server: Callable[..., Awaitable[RunningServer]], migrated_db_url: str
) -> AsyncIterator[tuple[RunningServer, Services, str]]:
    """A server, its services and a consultation its nurse has queued."""
    server = await start_server(database_url=migrated_db_url)
    async with clinic(server) as east:
        queued = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
        yield server, server.app[SERVICES], queued["id"]


def joined(consultation: str, user: str, role: Role, participant: str) -> RoomEvent:
    return RoomEvent(consultation, EventKind.JOINED, user, role, "east", participant)


async def test_a_batch_stores_the_events_of_known_consultations_and_audits_every_join(
    ward: tuple[RunningServer, Services, str],
) -> None:
    server, services, consultation = ward
    log = services.session_log
    # One batch: emitted in one turn of the loop, stored together.
    log.emit(joined(consultation, "u1", Role.NURSE, "p1"))
    log.emit(joined("no-such-consultation", "u2", Role.SPECIALIST, "p2"))
    log.emit(joined(consultation, "u3", Role.SPECIALIST, "p3"))
    await log.stored()

    async with services.database.sessions() as session:
        events = (
            await session.execute(
                select(ConsultationEvent.consultation_id, ConsultationEvent.participant).order_by(
                    ConsultationEvent.id
                )
            )
        ).all()
        joins = (
            await session.scalars(
                select(AuditEvent.resource).where(AuditEvent.action == "room.join").order_by(AuditEvent.seq)
            )
        ).all()
        status = await session.scalar(select(Consultation.status).where(Consultation.id == consultation))
    assert [tuple(row) for row in events] == [(consultation, "p1"), (consultation, "p3")]
    # The access was attempted and is audited, whether or not the room's record exists.
    assert joins == [f"consultation:{consultation}", "consultation:no-such-consultation", f"consultation:{consultation}"]
    assert status is ConsultationStatus.ACTIVE  # its first specialist started it
    result = await verify(AuditTrail(services.database), CheckpointSigner.from_secrets(server.settings.signing_key()))
    assert result.broken is None


async def test_a_join_that_stops_waiting_for_its_batch_leaves_the_others_waiting(
    ward: tuple[RunningServer, Services, str],
) -> None:
    _, services, consultation = ward
    log = services.session_log
    log.emit(joined(consultation, "u1", Role.NURSE, "p1"))
    log.emit(joined(consultation, "u2", Role.SPECIALIST, "p2"))
    gone = asyncio.create_task(log.stored())
    staying = asyncio.create_task(log.stored())
    await asyncio.sleep(0)  # both wait for the batch that holds both joins
    gone.cancel()
    await staying
    assert gone.cancelled()

    async with services.database.sessions() as session:
        stored = (
            await session.scalars(select(ConsultationEvent.participant).order_by(ConsultationEvent.id))
        ).all()
    assert stored == ["p1", "p2"]


async def test_a_batch_of_events_the_audit_does_not_keep_leaves_the_chain_alone(
    ward: tuple[RunningServer, Services, str],
) -> None:
    """A frame's events (a snapshot asked, an annotation) are stored without the audit chain's
    lock or its head: on a database server the lock is a round trip and waits on every other
    process's appends, for nothing."""
    _, services, consultation = ward
    log = services.session_log
    with sent(services.database) as statements:
        log.emit(RoomEvent(consultation, EventKind.SNAPSHOT_REQUESTED, "u2", Role.SPECIALIST, "east", "p2"))
        log.emit(RoomEvent(consultation, EventKind.ANNOTATION, "u2", Role.SPECIALIST, "east", "p2", detail="clear"))
        await log.stored()

    assert any(s.startswith("insert into consultation_events") for s in statements), statements
    assert not [s for s in statements if "advisory" in s or "audit_events" in s], statements
    async with services.database.sessions() as session:
        kinds = (
            await session.scalars(
                select(ConsultationEvent.kind).where(ConsultationEvent.consultation_id == consultation)
            )
        ).all()
    assert sorted(kinds) == sorted([EventKind.SNAPSHOT_REQUESTED.value, EventKind.ANNOTATION.value])
