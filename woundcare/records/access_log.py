"""A patient's access log: which staff opened the patient's records, and when (the patient's
right under the Norwegian patient records act, pasientjournalloven § 18). Read from the
audit trail: every API request names the pseudonymous record it touched."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.database import Database
from ..db.models import AuditEvent, Consultation, Device, Snapshot, User
from ..refs import Kind, device_ref, parse, user_ref


@dataclass(frozen=True, slots=True)
class Access:
    at: datetime
    who: str
    """The staff member's name (a device shows its nurse)."""
    role: str | None
    action: str
    via_device: bool

    def json(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "who": self.who,
            "role": self.role,
            "action": self.action,
            "viaDevice": self.via_device,
        }


class AccessLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_patient(self, patient_id: int, pseudonym: str) -> list[Access]:
        async with self._db.sessions() as session:
            consultations = (
                await session.scalars(select(Consultation.id).where(Consultation.patient_id == patient_id))
            ).all()
            snapshots = (await session.scalars(select(Snapshot.id).where(Snapshot.patient_id == patient_id))).all()
            resources = [
                f"patient:{pseudonym}",
                *(f"consultation:{c}" for c in consultations),
                *(f"snapshot:{s}" for s in snapshots),
            ]
            rows = (
                await session.execute(
                    select(AuditEvent.at, AuditEvent.actor, AuditEvent.role, AuditEvent.action)
                    .where(AuditEvent.resource.in_(resources), AuditEvent.outcome == "ok")
                    .order_by(AuditEvent.seq)
                )
            ).all()
            names = await self._names(session, {actor for _, actor, _, _ in rows if actor})
        return [
            Access(at, names.get(actor or "", "unknown"), role, action, _kind(actor) is Kind.DEVICE)
            for at, actor, role, action in rows
        ]

    @staticmethod
    async def _names(session: AsyncSession, actors: set[str]) -> dict[str, str]:
        named = [found for found in map(parse, actors) if found is not None]
        users = {n for kind, n in named if kind is Kind.USER}
        devices = {n for kind, n in named if kind is Kind.DEVICE}
        names: dict[str, str] = {}
        if users:
            for uid, name in (await session.execute(select(User.id, User.display_name).where(User.id.in_(users)))).all():
                names[user_ref(uid)] = name
        if devices:
            rows = await session.execute(
                select(Device.id, User.display_name).join(User, User.id == Device.user_id).where(Device.id.in_(devices))
            )
            for did, name in rows.all():
                names[device_ref(did)] = name
        return names


def _kind(actor: str | None) -> Kind | None:
    found = parse(actor) if actor else None
    return None if found is None else found[0]
