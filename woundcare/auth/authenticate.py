"""Who is asking: a session cookie, a device token or an invitation token -> one :class:`Subject`.

"Who is asking" is kept apart from "may they" (:mod:`.policy`), as in Starlette's
``AuthenticationMiddleware`` and ``requires``. Password and OIDC logins end in a browser
session; from then on the cookie is what is authenticated here.

- A **session cookie** is a user, with the roles of her memberships.
- A **device token** (``wcd_…``) is its nurse, in the device's one region, as a nurse only.
- An **invitation token** on HTTP is a guest of its consultation's region (ICE servers only).
- A program's **DPoP-bound access token** (``Authorization: DPoP``, when the API accepts
  the provider's tokens, :mod:`.bound_tokens`) is the user its HPR number names.
- A **guest cookie** (``wc_guest``, from a redeemed one-time link, :mod:`.guests`) is the
  same kind of guest, while its invitation stands.
- A **join token** on ``/ws`` (:func:`token_holder`) is the user or device it was minted for,
  checked again now, or a guest (an interpreter, a relative, a GP) for an invitation's holder.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..db.models import StaffRole, User
from ..records.accounts import Accounts, Holder
from ..records.guests import GuestRefused, Guests
from .bound_tokens import BoundTokens, ProofRequest
from .devices import TOKEN_PREFIX, Devices
from .errors import AuthenticationError
from .guests import guest_subject, subject_of_guest
from .invitations import TOKEN_PREFIX as INVITATION_PREFIX
from .invitations import Invitation, Invitations
from .sessions import OpenSession, Sessions
from .subject import Subject
from .tokens import token_hash


@dataclass(frozen=True, slots=True)
class Authenticated:
    subject: Subject
    session: OpenSession | None = None
    """The browser session a cookie opened (its CSRF token guards state changes)."""


@dataclass(frozen=True, slots=True)
class Authenticator:
    accounts: Accounts
    invitations: Invitations
    sessions: Sessions
    devices: Devices
    guests: Guests
    bound_tokens: BoundTokens | None = None
    """Set when the API accepts the provider's DPoP-bound access tokens."""

    async def authenticate(
        self, authorization: str, cookie: str | None, guest_cookie: str | None = None,
        proof: ProofRequest | None = None,
    ) -> Authenticated | None:
        """The subject behind an ``Authorization: Bearer`` (or ``DPoP``, with ``proof``)
        header, else a session cookie, else a guest cookie; None when none is offered or it no
        longer stands. A bad token raises :class:`AuthenticationError` (a cookie never does:
        the browser just logs in again)."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "dpop" and token:
            if self.bound_tokens is None or proof is None:
                raise AuthenticationError(
                    "token_invalid", "DPoP tokens are not accepted here", reason="dpop_disabled", scheme="DPoP"
                )
            return Authenticated(await subject_of(self.accounts, await self.bound_tokens.user(self.accounts, token, proof)))
        if scheme.lower() == "bearer" and token:
            if token.startswith(TOKEN_PREFIX + "_"):
                holder = await self.devices.resolve(token)
                if holder is None or holder.device is None:
                    raise AuthenticationError(
                        "token_invalid", "device token is unknown or revoked", reason="device_unknown"
                    )
                device = (holder.device.id, holder.device.region_id)
                return Authenticated(_subject(holder.user_id, holder.display_name, holder.memberships, device=device))
            if self.bound_tokens is not None and not token.startswith(INVITATION_PREFIX):
                # Most likely the provider's token, which is only ever good with its proof.
                raise AuthenticationError(
                    "token_invalid", "this token is taken only as DPoP", reason="dpop_required", scheme="DPoP"
                )
            invitation = self.invitations.verify(token)
            # A shredded region still names the invitation's; its room refuses the join.
            return Authenticated(guest(invitation, await self.accounts.region_id(invitation.region, shredded=True)))
        if cookie:
            found = await self.sessions.resolve(cookie)
            if found is None:
                return None
            open_session, holder = found
            return Authenticated(
                _subject(holder.user_id, holder.display_name, holder.memberships, session_id=open_session.id),
                open_session,
            )
        if guest_cookie:
            try:
                return Authenticated(subject_of_guest(await self.guests.holder(token_hash(guest_cookie))))
            except GuestRefused:
                return None
        return None


async def subject_of(
    accounts: Accounts, user: User, *, device: tuple[int, int] | None = None, session_id: str | None = None
) -> Subject:
    """``user`` with the roles of her memberships; through ``device`` (its id and region),
    only as the nurse of that one region."""
    return _subject(
        user.id, user.display_name, await accounts.memberships(user.id), device=device, session_id=session_id
    )


def _subject(
    user_id: int, display_name: str, memberships: list[tuple[int, StaffRole]], *,
    device: tuple[int, int] | None = None, session_id: str | None = None,
) -> Subject:
    roles: defaultdict[int, set[StaffRole]] = defaultdict(set)
    for region_id, role in memberships:
        # A device acts as its nurse in its one region and nothing more.
        if device is None or (region_id == device[1] and role is StaffRole.NURSE):
            roles[region_id].add(role)
    return Subject(
        ref=Subject.device_ref(device[0]) if device is not None else Subject.user_ref(user_id),
        display_name=display_name,
        roles={region: frozenset(r) for region, r in roles.items()},
        user_id=user_id,
        device_id=device[0] if device is not None else None,
        session_id=session_id,
    )


def guest(invitation: Invitation, region_id: int | None) -> Subject:
    """An invitation's holder: a guest of its consultation's region, nothing more."""
    return guest_subject(invitation.subject, invitation.display_name, invitation.consultation, region_id)


def token_holder(invitation: Invitation, holder: Holder | None, region_id: int) -> Subject:
    """Who a join token speaks for, now (``holder`` as :meth:`Accounts.admission` read it):
    the user or device it was minted for (a disabled user or a revoked device raises
    :class:`AuthenticationError`), else a guest."""
    named = Subject.parse(invitation.subject)
    if named is None:
        return guest(invitation, region_id)
    if holder is None or not holder.active:
        raise AuthenticationError("token_invalid", "token holder is no longer active")
    if holder.device is None:
        return _subject(holder.user_id, holder.display_name, holder.memberships)
    if holder.device.revoked:
        raise AuthenticationError("token_invalid", "device token is revoked")
    return _subject(
        holder.user_id, holder.display_name, holder.memberships, device=(holder.device.id, holder.device.region_id)
    )
