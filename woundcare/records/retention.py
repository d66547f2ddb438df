"""Retention: consultations that ended longer ago than their region's retention period are
due, and an admin deletes them with everything recorded in them (snapshots and recordings
with their blobs, assessment, consent, quality samples, session log). A patient left with no consultation is
deleted too. Every deletion is audited by the caller."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from ..db.database import Database
from ..db.models import (
    Assessment,
    Consent,
    Consultation,
    ConsultationEvent,
    GuestInvitation,
    Patient,
    QualitySample,
    Recording,
    Region,
    Snapshot,
)
from ..storage.blobs import BlobStore


@dataclass(frozen=True, slots=True)
class Due:
    consultation: str
    ended_at: datetime


class Retention:
    def __init__(self, db: Database, blobs: BlobStore, recording_blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs
        self._recording_blobs = recording_blobs

    async def due(self, region_id: int, now: datetime | None = None) -> tuple[int | None, list[Due]]:
        """The region's retention period and its consultations past it, oldest first."""
        async with self._db.sessions() as session:
            days = await session.scalar(select(Region.retention_days).where(Region.id == region_id))
            if days is None:
                return None, []
            cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
            rows = (
                await session.execute(
                    select(Consultation.id, Consultation.ended_at)
                    .where(Consultation.region_id == region_id, Consultation.ended_at < cutoff)
                    .order_by(Consultation.ended_at)
                )
            ).all()
        # The WHERE already leaves out consultations not ended; the check says so to the types.
        return days, [Due(c, ended) for c, ended in rows if ended is not None]

    async def purge(self, region_id: int, now: datetime | None = None) -> list[str]:
        """Delete what is due; returns the consultation ids deleted."""
        _, due = await self.due(region_id, now)
        ids = [d.consultation for d in due]
        if not ids:
            return []
        async with self._db.sessions() as session, session.begin():
            blob_keys = (await session.scalars(select(Snapshot.blob_key).where(Snapshot.consultation_id.in_(ids)))).all()
            recording_keys = (
                await session.scalars(select(Recording.blob_key).where(Recording.consultation_id.in_(ids)))
            ).all()
            patients = set(
                (await session.scalars(select(Consultation.patient_id).where(Consultation.id.in_(ids)))).all()
            )
            for model in (Snapshot, Recording, Assessment, Consent, QualitySample, ConsultationEvent, GuestInvitation):
                await session.execute(delete(model).where(model.consultation_id.in_(ids)))
            await session.execute(delete(Consultation).where(Consultation.id.in_(ids)))
            still_seen = set(
                (await session.scalars(select(Consultation.patient_id).where(Consultation.patient_id.in_(patients)))).all()
            )
            orphans = patients - still_seen
            if orphans:
                await session.execute(delete(Consent).where(Consent.patient_id.in_(orphans)))
                await session.execute(delete(Patient).where(Patient.id.in_(orphans)))
        # Rows first: a crash here leaves blobs without rows, which the start-up sweep removes.
        await asyncio.to_thread(lambda: [self._blobs.delete(key) for key in blob_keys])
        await asyncio.to_thread(lambda: [self._recording_blobs.delete(key) for key in recording_keys])
        return ids
