"""The specialist's structured assessment of a wound, sealed with the region's key.

A draft can be saved many times; signing fixes it. The outcome (treated at home or
referred) is also kept plain, because the pilot counts it and it identifies no one.

Every save raises the row's ``version``, and every write is one ``UPDATE`` whose ``WHERE``
checks the state it was decided on: a save changes only an unsigned row (and, given the
version the editor read, only that version); signing fixes only the version whose content it
returns. So a save and a signing cannot interleave, on PostgreSQL or on SQLite (where
``SELECT ... FOR UPDATE`` locks nothing), and the API's ``ETag``/``If-Match`` is the version.

The plan back (issue 18): a signed assessment's treatment plan, next review and who is
responsible go back to the nurse, who acknowledges them once (:meth:`Assessments.acknowledge`;
plain columns: a time and a pseudonymous ref). Signing the answer to an e-consult also closes
the e-consult, in the same transaction: the answer and its time are one fact.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..crypto import Binding, Keyring
from ..db.database import Database
from ..db.models import OPEN_STATUSES, Consultation, ConsultationKind, ConsultationStatus, Outcome, Patient
from ..db.models import Assessment as AssessmentRow
from ..errors import InvalidInput, WoundcareError
from .events import Events, EventType

KIND = "assessment"


class WoundType(str, enum.Enum):
    PRESSURE_ULCER = "pressure_ulcer"
    VENOUS_LEG_ULCER = "venous_leg_ulcer"
    ARTERIAL_ULCER = "arterial_ulcer"
    DIABETIC_FOOT_ULCER = "diabetic_foot_ulcer"
    SURGICAL_WOUND = "surgical_wound"
    TRAUMATIC_WOUND = "traumatic_wound"
    BURN = "burn"
    OTHER = "other"


class Exudate(str, enum.Enum):
    NONE = "none"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


class InfectionSign(str, enum.Enum):
    ERYTHEMA = "erythema"
    WARMTH = "warmth"
    SWELLING = "swelling"
    PAIN = "pain"
    ODOUR = "odour"
    PUS = "pus"
    FEVER = "fever"


class Responsible(str, enum.Enum):
    """Who carries out the plan until the next review."""

    HOME_CARE = "home_care"
    """The nurse: the municipality's home care."""
    SPECIALIST = "specialist"
    """The hospital's wound clinic."""
    GP = "gp"
    """The patient's general practitioner."""


TISSUES = ("granulation", "slough", "necrotic", "epithelial")
_FIELDS = ("woundType", "location", "size", "tissue", "exudate", "infectionSigns", "treatmentPlan", "nextReview",
           "responsible", "outcome")


class AssessmentError(InvalidInput):
    """Invalid assessment content; the message names the field, never its value."""

    code = "bad_assessment"


class AssessmentSigned(WoundcareError):
    """A signed assessment is final."""

    code = "signed"
    status = 409
    message = "the assessment is signed and can no longer change"


class NotSigned(WoundcareError):
    """Only a signed plan can be acknowledged: a draft may still change."""

    code = "not_signed"
    status = 409
    message = "the assessment is not signed yet"


class AssessmentChanged(WoundcareError):
    """The assessment is not at the version the caller expected: someone saved since."""

    code = "precondition_failed"
    status = 412
    message = "the assessment changed since it was read; reload it"


def _text(data: dict[str, Any], name: str, limit: int, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise AssessmentError(f"'{name}' is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise AssessmentError(f"'{name}' must be text of at most {limit} characters")
    return value


def _enum(kind: type[enum.Enum], data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise AssessmentError(f"'{name}' must be one of: {choices}") from None


def _size(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"lengthCm", "widthCm", "depthCm"}:
        raise AssessmentError("'size' takes lengthCm, widthCm and depthCm")
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= 100:
            raise AssessmentError(f"'size.{name}' must be a number of centimetres from 0 to 100")
    return {k: float(v) for k, v in value.items()}


def _tissue(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(TISSUES):
        raise AssessmentError(f"'tissue' takes percentages of {', '.join(TISSUES)}")
    for name, share in value.items():
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
            raise AssessmentError(f"'tissue.{name}' must be a whole percentage")
    if sum(value.values()) > 100:
        raise AssessmentError("'tissue' percentages add up to more than 100")
    return dict(value)


@dataclass(frozen=True, slots=True)
class AssessmentContent:
    wound_type: WoundType | None = None
    location: str | None = None
    size: dict[str, float] | None = None
    tissue: dict[str, int] | None = None
    exudate: Exudate | None = None
    infection_signs: tuple[InfectionSign, ...] = field(default_factory=tuple)
    treatment_plan: str | None = None
    next_review: date | None = None
    responsible: Responsible | None = None
    outcome: Outcome | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AssessmentContent:
        if set(data) - set(_FIELDS):
            raise AssessmentError(f"unknown field; an assessment takes {', '.join(_FIELDS)}")
        signs = data.get("infectionSigns") or []
        if not isinstance(signs, list) or len(signs) > len(InfectionSign):
            raise AssessmentError("'infectionSigns' must be a list")
        review = _text(data, "nextReview", 10)
        try:
            next_review = date.fromisoformat(review) if review else None
        except ValueError:
            raise AssessmentError("'nextReview' must be a date (YYYY-MM-DD)") from None
        return cls(
            wound_type=_enum(WoundType, data, "woundType"),
            location=_text(data, "location", 200),
            size=_size(data.get("size")),
            tissue=_tissue(data.get("tissue")),
            exudate=_enum(Exudate, data, "exudate"),
            infection_signs=tuple(dict.fromkeys(_enum(InfectionSign, {"s": s}, "s") for s in signs)),
            treatment_plan=_text(data, "treatmentPlan", 4000),
            next_review=next_review,
            responsible=_enum(Responsible, data, "responsible"),
            outcome=_enum(Outcome, data, "outcome"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "woundType": self.wound_type.value if self.wound_type else None,
            "location": self.location,
            "size": self.size,
            "tissue": self.tissue,
            "exudate": self.exudate.value if self.exudate else None,
            "infectionSigns": [s.value for s in self.infection_signs],
            "treatmentPlan": self.treatment_plan,
            "nextReview": self.next_review.isoformat() if self.next_review else None,
            "responsible": self.responsible.value if self.responsible else None,
            "outcome": self.outcome.value if self.outcome else None,
        }


@dataclass(frozen=True, slots=True)
class AssessmentView:
    content: AssessmentContent
    author: str
    updated_at: datetime
    signed_at: datetime | None
    signed_by: str | None
    version: int
    """Raised by every save; the API's ETag."""
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            **self.content.to_json(),
            "author": self.author,
            "updatedAt": self.updated_at.isoformat(),
            "signedAt": self.signed_at.isoformat() if self.signed_at else None,
            "signedBy": self.signed_by,
            "acknowledgedAt": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "acknowledgedBy": self.acknowledged_by,
        }


@dataclass(frozen=True, slots=True)
class PendingPlan:
    """A signed plan its nurse has not acknowledged yet."""

    consultation: str
    region_id: int
    patient: str
    """The patient's pseudonym."""
    kind: ConsultationKind
    assessment: AssessmentView

    def json(self) -> dict[str, Any]:
        return {"id": self.consultation, "patient": self.patient, "channel": self.kind.value,
                "assessment": self.assessment.json()}


class Assessments:
    def __init__(self, db: Database, keyring: Keyring, events: Events) -> None:
        self._db = db
        self._keyring = keyring
        self._events = events

    async def save(
        self,
        consultation_id: str,
        region_id: int,
        content: AssessmentContent,
        author: str,
        expected: int | None = None,
    ) -> AssessmentView:
        """Save the draft; with ``expected``, only over that version (else ``AssessmentChanged``)."""
        sealed = await self._keyring.seal(_binding(consultation_id, region_id), orjson.dumps(content.to_json()))
        values = {"content_sealed": sealed, "outcome": content.outcome, "author": author}
        for _ in range(2):
            now = datetime.now(UTC)
            try:
                version = await self._save(consultation_id, region_id, {**values, "updated_at": now}, expected)
            except IntegrityError:
                # Another first save created the row meanwhile: save over it.
                continue
            return AssessmentView(content, author, now, None, None, version)
        raise AssessmentChanged

    async def _save(self, consultation_id: str, region_id: int, values: dict[str, Any], expected: int | None) -> int:
        where = [AssessmentRow.consultation_id == consultation_id, AssessmentRow.signed_at.is_(None)]
        if expected is not None:
            where.append(AssessmentRow.version == expected)
        async with self._db.sessions() as session, session.begin():
            # The UPDATE comes first: on SQLite it takes the write lock before anything is read.
            version = await session.scalar(
                update(AssessmentRow)
                .where(*where)
                .values(**values, version=AssessmentRow.version + 1)
                .returning(AssessmentRow.version)
            )
            if version is not None:
                return version
            found = (await session.execute(
                select(AssessmentRow.signed_at).where(AssessmentRow.consultation_id == consultation_id)
            )).one_or_none()
            if found is not None and found.signed_at is not None:
                raise AssessmentSigned
            if found is not None or expected is not None:
                raise AssessmentChanged
            session.add(AssessmentRow(consultation_id=consultation_id, region_id=region_id, version=1, **values))
        return 1

    async def sign(self, consultation_id: str, signer: str, expected: int | None = None) -> AssessmentView | None:
        """Sign the draft, at ``expected`` if given; None if there is none. Signing needs an
        outcome. The view returned is the content signed, which can no longer change."""
        where = [
            AssessmentRow.consultation_id == consultation_id,
            AssessmentRow.signed_at.is_(None),
            AssessmentRow.outcome.is_not(None),
        ]
        if expected is not None:
            where.append(AssessmentRow.version == expected)
        now = datetime.now(UTC)
        async with self._db.sessions() as session, session.begin():
            # One statement that signs and returns what it signed: no save can come between,
            # and saves racing it cannot make it retry.
            row = await session.scalar(
                update(AssessmentRow)
                .where(*where)
                .values(signed_at=now, signed_by=signer)
                .returning(AssessmentRow)
            )
            if row is None:
                found = await session.scalar(
                    select(AssessmentRow).where(AssessmentRow.consultation_id == consultation_id)
                )
                if found is None:
                    return None
                if found.signed_at is not None:
                    raise AssessmentSigned
                if found.outcome is None:
                    raise AssessmentError("'outcome' is required before signing")
                raise AssessmentChanged
            self._events.emit(
                session, EventType.ASSESSMENT_SIGNED, consultation_id=consultation_id, region_id=row.region_id, at=now
            )
            # The answer to an e-consult: it leaves the queue, answered at the signing.
            answered = await session.scalar(
                update(Consultation)
                .where(
                    Consultation.id == consultation_id,
                    Consultation.kind == ConsultationKind.ECONSULT,
                    Consultation.status.in_(OPEN_STATUSES),
                )
                .values(status=ConsultationStatus.ENDED, ended_at=now)
                .returning(Consultation.region_id)
            )
            if answered is not None:
                self._events.emit(
                    session, EventType.ECONSULT_ANSWERED, consultation_id=consultation_id, region_id=answered, at=now
                )
        return await self._view(row)

    async def acknowledge(self, consultation_id: str, by: str) -> AssessmentView | None:
        """The nurse has read the signed plan: recorded once, so a second call (a double tap,
        a retry) changes nothing and returns the first acknowledgement. None without an
        assessment; :class:`NotSigned` for a draft."""
        async with self._db.sessions() as session, session.begin():
            row = await session.scalar(
                update(AssessmentRow)
                .where(
                    AssessmentRow.consultation_id == consultation_id,
                    AssessmentRow.signed_at.is_not(None),
                    AssessmentRow.acknowledged_at.is_(None),
                )
                .values(acknowledged_at=datetime.now(UTC), acknowledged_by=by)
                .returning(AssessmentRow)
            )
            if row is None:
                row = await session.scalar(
                    select(AssessmentRow).where(AssessmentRow.consultation_id == consultation_id)
                )
                if row is None:
                    return None
                if row.signed_at is None:
                    raise NotSigned
        return await self._view(row)

    async def unacknowledged(self, region_ids: list[int]) -> list[PendingPlan]:
        """The signed plans of these regions that no nurse has acknowledged, oldest first."""
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    select(AssessmentRow, Patient.pseudonym, Consultation.kind)
                    .join(Consultation, Consultation.id == AssessmentRow.consultation_id)
                    .join(Patient, Patient.id == Consultation.patient_id)
                    .where(
                        AssessmentRow.region_id.in_(region_ids),
                        AssessmentRow.signed_at.is_not(None),
                        AssessmentRow.acknowledged_at.is_(None),
                    )
                    .order_by(AssessmentRow.signed_at, AssessmentRow.id)
                )
            ).all()
        return [
            PendingPlan(row.consultation_id, row.region_id, pseudonym, kind, await self._view(row))
            for row, pseudonym, kind in rows
        ]

    async def get(self, consultation_id: str) -> AssessmentView | None:
        async with self._db.sessions() as session:
            row = await session.scalar(select(AssessmentRow).where(AssessmentRow.consultation_id == consultation_id))
        return await self._view(row) if row is not None else None

    async def _view(self, row: AssessmentRow) -> AssessmentView:
        plain = await self._keyring.open(_binding(row.consultation_id, row.region_id), row.content_sealed)
        content = AssessmentContent.from_json(orjson.loads(plain))
        return AssessmentView(
            content, row.author, row.updated_at, row.signed_at, row.signed_by, row.version,
            row.acknowledged_at, row.acknowledged_by,
        )


def _binding(consultation_id: str, region_id: int) -> Binding:
    return Binding(region_id, KIND, consultation_id)
