"""Admission to a signaling room, through the same policy as the HTTP API.

The token must name this consultation and role, the consultation must exist, belong to the
token's region and still be open, and a user's or device's token is checked against the
policy again at join time, so a revoked device or a removed membership cannot join.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from signaling.admission import Identity
from signaling.protocol import ErrorCode, Join, ProtocolError

from ..db.database import Database
from ..db.models import OPEN_STATUSES, Consultation, Device, Region, User
from ..errors import protocol_error
from .actors import actor_for
from .invitations import Invitation, InvitationError, Invitations
from .policy import Action, Actor, Denied, authorize


class JoinAdmission:
    def __init__(self, invitations: Invitations, db: Database) -> None:
        self._invitations = invitations
        self._db = db

    async def admit(self, join: Join, address: str | None) -> Identity:
        try:
            invitation = self._invitations.verify(join.token or "")
        except InvitationError as exc:
            raise protocol_error(exc, "join") from None
        if invitation.consultation != join.consultation:
            raise ProtocolError(ErrorCode.WRONG_CONSULTATION, "token is for another consultation", "join")
        if invitation.role is not join.role:
            raise ProtocolError(ErrorCode.FORBIDDEN, "token does not grant this role", "join")
        async with self._db.sessions() as session:
            row = (
                await session.execute(
                    select(Consultation.status, Region.id, Region.code)
                    .join(Region, Region.id == Consultation.region_id)
                    .where(Consultation.id == join.consultation)
                )
            ).one_or_none()
            # Unknown and foreign consultations answer alike: a token holder learns nothing more.
            if row is None or row.code != invitation.region:
                raise ProtocolError(ErrorCode.WRONG_CONSULTATION, "token is for another consultation", "join")
            # An abandoned one too: a nurse coming back to it starts a new consultation.
            if row.status not in OPEN_STATUSES:
                raise ProtocolError(ErrorCode.FORBIDDEN, "this consultation has ended", "join")
            actor = await self._actor(session, invitation)
        if actor is not None:
            try:
                authorize(actor, Action.CONSULTATION_JOIN, row.id)
            except Denied:
                raise ProtocolError(ErrorCode.FORBIDDEN, "not allowed to join this consultation", "join") from None
        return Identity(invitation.subject, invitation.role, invitation.display_name, invitation.region)

    @staticmethod
    async def _actor(session: AsyncSession, invitation: Invitation) -> Actor | None:
        """The user or device behind a token minted for a login; None for invitations."""
        kind, number = invitation.subject[:1], invitation.subject[1:]
        if kind not in ("u", "d") or not number.isdigit():
            return None
        if kind == "u":
            user = await session.get(User, int(number))
            if user is None or not user.active:
                raise ProtocolError(ErrorCode.TOKEN_INVALID, "token holder is no longer active", "join")
            return await actor_for(session, user)
        device = await session.get(Device, int(number))
        if device is None or device.revoked_at is not None:
            raise ProtocolError(ErrorCode.TOKEN_INVALID, "device token is revoked", "join")
        user = await session.get(User, device.user_id)
        if user is None or not user.active:
            raise ProtocolError(ErrorCode.TOKEN_INVALID, "token holder is no longer active", "join")
        return await actor_for(session, user, device_id=device.id, device_region=device.region_id)
