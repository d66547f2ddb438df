"""Guests of a call: one-time links for an interpreter, a relative or the patient's GP.

A specialist's invitation is a row with the hash of a random link code (the codes and their
hashes are made by the caller, :mod:`woundcare.auth.tokens`). The code is redeemed
once: the redemption stores the hash of a random cookie given to that browser, which from then
on is the guest (for reloads), and any later redemption of the code is refused. A revoked or
expired invitation, or one whose consultation is over, lets nobody in. No name is stored: a
guest is shown by its kind. Docs: docs/protocol.md §3.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from ..db.database import Database
from ..db.models import (
    OPEN_STATUSES,
    Consultation,
    ConsultationKind,
    GuestInvitation,
    GuestKind,
    Region,
)
from ..errors import WoundcareError
from ..refs import guest_ref


class GuestRefused(WoundcareError):
    """A guest link or cookie that lets nobody in; ``code`` says which rule."""

    _STATUS = {
        "invitation_invalid": (404, "this guest link is not known"),
        "invitation_used": (409, "this guest link has been used already; ask for a new one"),
        "invitation_expired": (410, "this guest link has expired"),
        "invitation_revoked": (410, "this guest link has been withdrawn"),
        "ended": (409, "this consultation has ended"),
    }

    def __init__(self, code: str, consultation: str | None = None, region_id: int | None = None) -> None:
        self.status, self.message = self._STATUS[code]
        super().__init__(self.message)
        self.code = code
        self.consultation = consultation
        """The consultation of a known link, for the audit; None for an unknown one."""
        self.region_id = region_id


@dataclass(frozen=True, slots=True)
class Guest:
    """An invitation as its consultation's room and the API see it."""

    id: str
    consultation: str
    kind: GuestKind
    subject: str
    region_id: int
    region: str
    expires_at: datetime
    redeemed: bool
    revoked: bool

    def json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "subject": self.subject,
            "expiresAt": self.expires_at.isoformat(),
            "redeemed": self.redeemed,
            "revoked": self.revoked,
        }


def _guest(row: GuestInvitation, region_id: int, region: str) -> Guest:
    return Guest(
        row.id,
        row.consultation_id,
        row.kind,
        row.subject,
        region_id,
        region,
        row.expires_at,
        row.redeemed_at is not None,
        row.revoked_at is not None,
    )


_WITH_PLACE = (
    select(GuestInvitation, Consultation.region_id, Region.code, Consultation.status, Consultation.kind)
    .join(Consultation, Consultation.id == GuestInvitation.consultation_id)
    .join(Region, Region.id == Consultation.region_id)
)


class Guests:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def invite(
        self, consultation: str, region_id: int, region: str, kind: GuestKind, by: str, ttl: timedelta, code_hash: str
    ) -> Guest:
        """A new invitation, redeemable with the code whose hash is ``code_hash``."""
        now = datetime.now(UTC)
        row = GuestInvitation(
            consultation_id=consultation,
            kind=kind,
            subject=guest_ref(),
            code_hash=code_hash,
            created_by=by,
            created_at=now,
            expires_at=now + ttl,
        )
        async with self._db.sessions() as session, session.begin():
            session.add(row)
        return _guest(row, region_id, region)

    async def redeem(self, code_hash: str, cookie_hash: str) -> Guest:
        """Exchange the link's code, once, for a cookie (by their hashes) that is the guest
        from now on. Raises :class:`GuestRefused`."""
        now = datetime.now(UTC)
        async with self._db.sessions() as session, session.begin():
            found = (await session.execute(_WITH_PLACE.where(GuestInvitation.code_hash == code_hash))).first()
            if found is None:
                raise GuestRefused("invitation_invalid")
            row, region_id, region, status, kind = found
            self._check(row, region_id, status, kind, now)
            # One statement decides between two browsers redeeming at once: one row updated.
            taken = await session.execute(
                update(GuestInvitation)
                .where(GuestInvitation.id == row.id, GuestInvitation.redeemed_at.is_(None))
                .values(redeemed_at=now, cookie_hash=cookie_hash)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise GuestRefused("invitation_used", row.consultation_id, region_id)
            row.redeemed_at = now
        return _guest(row, region_id, region)

    async def holder(self, cookie_hash: str) -> Guest:
        """The guest whose redeemed link's cookie has this hash, while it may still join.
        Raises :class:`GuestRefused`."""
        async with self._db.sessions() as session:
            found = (await session.execute(_WITH_PLACE.where(GuestInvitation.cookie_hash == cookie_hash))).first()
        if found is None:
            raise GuestRefused("invitation_invalid")
        row, region_id, region, status, kind = found
        self._check(row, region_id, status, kind, datetime.now(UTC), redeemed=True)
        return _guest(row, region_id, region)

    async def of(self, consultation: str, region_id: int, region: str) -> list[Guest]:
        """A consultation's invitations, oldest first."""
        async with self._db.sessions() as session:
            rows = await session.scalars(
                select(GuestInvitation)
                .where(GuestInvitation.consultation_id == consultation)
                .order_by(GuestInvitation.created_at)
            )
            return [_guest(row, region_id, region) for row in rows]

    async def revoke(self, consultation: str, invitation: str) -> str | None:
        """Withdraw an invitation of ``consultation``; returns its guest's ref (None: no such one)."""
        async with self._db.sessions() as session, session.begin():
            row = await session.scalar(
                select(GuestInvitation).where(
                    GuestInvitation.id == invitation, GuestInvitation.consultation_id == consultation
                )
            )
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return row.subject

    async def revoked_since(self, since: datetime) -> set[str]:
        """The refs of guests withdrawn since ``since``: their sockets are closed everywhere."""
        async with self._db.sessions() as session:
            rows = await session.scalars(select(GuestInvitation.subject).where(GuestInvitation.revoked_at >= since))
            return set(rows)

    @staticmethod
    def _check(
        row: GuestInvitation, region_id: int, status: object, kind: object, now: datetime, *, redeemed: bool = False
    ) -> None:
        code = None
        if row.revoked_at is not None:
            code = "invitation_revoked"
        elif row.expires_at <= now:
            code = "invitation_expired"
        elif status not in OPEN_STATUSES or kind is not ConsultationKind.VIDEO:
            code = "ended"
        elif not redeemed and row.redeemed_at is not None:
            code = "invitation_used"
        if code is not None:
            raise GuestRefused(code, row.consultation_id, region_id)
