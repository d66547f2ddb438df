"""The patient's consent, recorded by the nurse per consultation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import ScalarSelect, and_, bindparam, select

from ..db.database import Database
from ..db.models import Consent, ConsentKind, Consultation


def consented(kind: ConsentKind) -> ScalarSelect[Any]:
    """The one rule of consent, for a query over ``Consultation``: its latest answer of
    ``kind`` is given and not withdrawn (NULL: never asked, which counts as not given)."""
    return (
        select(and_(Consent.given, Consent.withdrawn_at.is_(None)))
        .where(Consent.consultation_id == Consultation.id, Consent.kind == kind)
        .order_by(Consent.id.desc())
        .limit(1)
        .correlate(Consultation)
        .scalar_subquery()
    )


_CURRENT = select(*(consented(kind) for kind in ConsentKind)).where(Consultation.id == bindparam("consultation"))


@dataclass(frozen=True, slots=True)
class ConsentAnswer:
    kind: ConsentKind
    given: bool
    recorded_at: datetime
    withdrawn_at: datetime | None = None


class Consents:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, consultation_id: str, patient_id: int, region_id: int, given: dict[ConsentKind, bool], by: str
    ) -> None:
        async with self._db.sessions() as session, session.begin():
            session.add_all(
                Consent(
                    patient_id=patient_id,
                    region_id=region_id,
                    consultation_id=consultation_id,
                    kind=kind,
                    given=value,
                    recorded_by=by,
                )
                for kind, value in given.items()
            )

    async def answers(self, consultation_id: str) -> list[ConsentAnswer]:
        """Every answer recorded for the consultation, oldest first."""
        async with self._db.sessions() as session:
            rows = (
                await session.scalars(
                    select(Consent).where(Consent.consultation_id == consultation_id).order_by(Consent.id)
                )
            ).all()
        return [ConsentAnswer(r.kind, r.given, r.recorded_at, r.withdrawn_at) for r in rows]

    async def current(self, consultation_id: str) -> dict[ConsentKind, bool]:
        """The latest answer per kind (:func:`consented`); a kind never asked counts as not given."""
        async with self._db.sessions() as session:
            row = (await session.execute(_CURRENT, {"consultation": consultation_id})).one_or_none()
        return {kind: bool(row is not None and row[i]) for i, kind in enumerate(ConsentKind)}
