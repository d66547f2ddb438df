"""Admission to a signaling room, through the same policy as the HTTP API.

The token must name this consultation and role, the consultation must exist, belong to the
token's region and still be open; the token's holder is authenticated again at join time
(so a revoked device or a disabled user cannot join) and :func:`.policy.authorize` decides
the join and the frames the socket may send, as it decides every HTTP route.
"""

from __future__ import annotations

import sys

from signaling.admission import Identity
from signaling.protocol import ErrorCode, Join, ProtocolError, recording_frame

from ..db.database import Database
from ..errors import protocol_error
from ..records.accounts import Accounts
from .authenticate import token_holder
from .errors import AuthenticationError
from .invitations import Invitations
from .policy import Action, Denied, Room, authorize


class JoinAdmission:
    def __init__(self, invitations: Invitations, db: Database) -> None:
        self._invitations = invitations
        self._accounts = Accounts(db)

    async def admit(self, join: Join, address: str | None) -> Identity:
        try:
            invitation = self._invitations.verify(join.token or "")
        except AuthenticationError as exc:
            raise protocol_error(exc, "join") from None
        if invitation.consultation != join.consultation:
            raise ProtocolError(ErrorCode.WRONG_CONSULTATION, "token is for another consultation", "join")
        if invitation.role is not join.role:
            raise ProtocolError(ErrorCode.FORBIDDEN, "token does not grant this role", "join")
        room, holder, withdrawn = await self._accounts.admission(join.consultation, invitation.subject)
        # Unknown and foreign consultations answer alike: a token holder learns nothing more.
        if room is None or room.region_code != invitation.region:
            raise ProtocolError(ErrorCode.WRONG_CONSULTATION, "token is for another consultation", "join")
        # An abandoned one too: a nurse coming back to it starts a new consultation.
        if not room.open:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this consultation has ended", "join")
        try:
            subject = token_holder(invitation, holder, room.region_id)
        except AuthenticationError as exc:
            raise protocol_error(exc, "join") from None
        # A guest's join token outlives the socket a withdrawal closes: asked again here.
        if withdrawn:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this guest link has been withdrawn", "join")
        try:
            grant = authorize(subject, Action.CONSULTATION_JOIN, Room(join.consultation, room.region_id, join.role))
        except Denied:
            raise ProtocolError(ErrorCode.FORBIDDEN, "not allowed to join this consultation", "join") from None
        # A region's sockets keep its code for their life (identity, member): one string for them all.
        return Identity(
            subject.ref, invitation.role, invitation.display_name, sys.intern(invitation.region),
            may_send=grant.may_send, notices=(recording_frame(True),) if room.recording else (),
        )
