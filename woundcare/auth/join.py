"""Admission to a signaling room: the token must name this consultation and role,
and the consultation must exist, belong to the token's region and still be open."""

from __future__ import annotations

from sqlalchemy import select

from signaling.admission import Identity
from signaling.protocol import ErrorCode, Join, ProtocolError

from ..db.database import Database
from ..db.models import Consultation, ConsultationStatus, Region
from .invitations import InvitationError, Invitations


class JoinAdmission:
    def __init__(self, invitations: Invitations, db: Database) -> None:
        self._invitations = invitations
        self._db = db

    async def admit(self, join: Join, address: str | None) -> Identity:
        try:
            invitation = self._invitations.verify(join.token or "")
        except InvitationError as exc:
            raise ProtocolError(ErrorCode(exc.code), exc.message, "join") from None
        if invitation.consultation != join.consultation:
            raise ProtocolError(ErrorCode.WRONG_CONSULTATION, "token is for another consultation", "join")
        if invitation.role is not join.role:
            raise ProtocolError(ErrorCode.FORBIDDEN, "token does not grant this role", "join")
        async with self._db.sessions() as session:
            row = (
                await session.execute(
                    select(Consultation.status, Region.code)
                    .join(Region, Region.id == Consultation.region_id)
                    .where(Consultation.id == join.consultation)
                )
            ).one_or_none()
        # Unknown and foreign consultations answer alike: a token holder learns nothing more.
        if row is None or row.code != invitation.region:
            raise ProtocolError(ErrorCode.WRONG_CONSULTATION, "token is for another consultation", "join")
        if row.status is ConsultationStatus.ENDED:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this consultation has ended", "join")
        return Identity(invitation.subject, invitation.role, invitation.display_name, invitation.region)
