"""authenticate(): every kind of credential becomes one Subject, on a real database
(SQLite and PostgreSQL), and a join token's holder is checked again when it is used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from signaling import protocol
from woundcare.auth.authenticate import Authenticator, token_holder
from woundcare.auth.devices import Devices
from woundcare.auth.errors import AuthenticationError
from woundcare.auth.invitations import Invitations
from woundcare.auth.sessions import Sessions
from woundcare.auth.subject import Subject
from woundcare.db.database import Database
from woundcare.db.models import Consultation, Device, LoginSession, Membership, Patient, Region, StaffRole, User
from woundcare.records.accounts import Accounts
from woundcare.records.guests import Guests


@dataclass
class Ward:
    db: Database
    auth: Authenticator
    user_id: int
    north: int
    south: int

    async def disable(self) -> None:
        async with self.db.sessions() as session, session.begin():
            await session.execute(update(User).where(User.id == self.user_id).values(active=False))


@pytest.fixture
async def ward(migrated_db_url: str) -> AsyncIterator[Ward]:
    """Kari: a nurse in north and a specialist in south."""
    db = Database(migrated_db_url)
    await db.start()
    try:
        async with db.sessions() as session, session.begin():
            north, south = Region(code="north", name="North"), Region(code="south", name="South")
            kari = User(username="kari", display_name="Kari")
            session.add_all([north, south, kari])
            await session.flush()
            session.add_all([
                Membership(user_id=kari.id, region_id=north.id, role=StaffRole.NURSE),
                Membership(user_id=kari.id, region_id=south.id, role=StaffRole.SPECIALIST),
            ])
        sessions = Sessions(db, timedelta(minutes=5), timedelta(hours=1))
        auth = Authenticator(Accounts(db), Invitations(b"k" * 32, 600), sessions, Devices(db), Guests(db))
        yield Ward(db, auth, kari.id, north.id, south.id)
    finally:
        await db.stop()


async def test_a_session_cookie_is_the_user_with_all_her_roles(ward: Ward) -> None:
    token, opened = await ward.auth.sessions.create(ward.user_id, "password")
    found = await ward.auth.authenticate("", token)
    assert found is not None and found.session is not None and found.session.id == opened.id
    assert found.subject == Subject(
        Subject.user_ref(ward.user_id), "Kari",
        {ward.north: frozenset({StaffRole.NURSE}), ward.south: frozenset({StaffRole.SPECIALIST})},
        user_id=ward.user_id, session_id=opened.id,
    )
    assert await ward.auth.authenticate("", "wcs_unknown") is None
    assert await ward.auth.authenticate("", None) is None
    await ward.disable()
    assert await ward.auth.authenticate("", token) is None


async def test_a_session_notes_its_use_and_ends_idle_expired_or_revoked(ward: Ward) -> None:
    token, opened = await ward.auth.sessions.create(ward.user_id, "password")

    async def row() -> LoginSession:
        async with ward.db.sessions() as session:
            return await session.get_one(LoginSession, opened.id)

    async def change(**values: object) -> None:
        async with ward.db.sessions() as session, session.begin():
            await session.execute(update(LoginSession).where(LoginSession.id == opened.id).values(**values))

    first = (await row()).last_seen_at
    assert await ward.auth.authenticate("", token) is not None
    assert (await row()).last_seen_at == first  # used again within half a minute: not written
    now = datetime.now(UTC)
    await change(last_seen_at=now - timedelta(minutes=1))
    assert await ward.auth.authenticate("", token) is not None
    assert (await row()).last_seen_at >= now
    await change(last_seen_at=now - timedelta(minutes=6))  # idle past the five minutes
    assert await ward.auth.authenticate("", token) is None
    await change(last_seen_at=now, expires_at=now - timedelta(seconds=1))
    assert await ward.auth.authenticate("", token) is None
    await change(expires_at=now + timedelta(hours=1), revoked_at=now)
    assert await ward.auth.authenticate("", token) is None


async def test_a_shredded_regions_membership_counts_for_nothing(ward: Ward) -> None:
    token, _ = await ward.auth.sessions.create(ward.user_id, "password")
    _, device = await ward.auth.devices.issue(ward.user_id, ward.north, "cam")
    async with ward.db.sessions() as session, session.begin():
        await session.execute(update(Region).where(Region.id == ward.south).values(shredded_at=datetime.now(UTC)))
    for authorization, cookie in (("", token), (f"Bearer {device}", None)):
        found = await ward.auth.authenticate(authorization, cookie)
        assert found is not None and found.subject.roles == {ward.north: frozenset({StaffRole.NURSE})}


async def test_a_device_notes_its_use_and_is_refused_once_revoked(ward: Ward) -> None:
    device_id, token = await ward.auth.devices.issue(ward.user_id, ward.north, "cam")

    async def last_seen() -> datetime | None:
        async with ward.db.sessions() as session:
            return (await session.get_one(Device, device_id)).last_seen_at

    assert await last_seen() is None
    assert await ward.auth.authenticate(f"Bearer {token}", None) is not None
    noted = await last_seen()
    assert noted is not None
    assert await ward.auth.authenticate(f"Bearer {token}", None) is not None
    assert await last_seen() == noted  # within half a minute: not written again
    assert await ward.auth.devices.revoke(device_id)
    with pytest.raises(AuthenticationError):
        await ward.auth.authenticate(f"Bearer {token}", None)


async def test_a_device_is_its_nurse_in_its_one_region_only(ward: Ward) -> None:
    device_id, token = await ward.auth.devices.issue(ward.user_id, ward.north, "cam")
    found = await ward.auth.authenticate(f"Bearer {token}", None)
    assert found is not None and found.session is None
    assert (found.subject.ref, found.subject.device_id) == (Subject.device_ref(device_id), device_id)
    assert found.subject.roles == {ward.north: frozenset({StaffRole.NURSE})}
    assert await ward.auth.devices.revoke(device_id)
    with pytest.raises(AuthenticationError) as refused:
        await ward.auth.authenticate(f"Bearer {token}", None)
    assert refused.value.code == "token_invalid" and token not in str(refused.value)


async def test_an_invitation_on_http_is_a_guest_of_its_region(ward: Ward) -> None:
    token = ward.auth.invitations.issue("c1", protocol.Role.OBSERVER, "inv-1a2b3c4d", "Tolk", "south")
    found = await ward.auth.authenticate(f"Bearer {token}", None)
    assert found is not None
    assert found.subject == Subject("inv-1a2b3c4d", "Tolk", {ward.south: frozenset({StaffRole.SPECIALIST})}, invitation="c1")
    # Even one minted for a user: on HTTP a token is an invitation, never a login.
    minted = ward.auth.invitations.issue("c1", protocol.Role.NURSE, Subject.user_ref(ward.user_id), "Kari", "north")
    found = await ward.auth.authenticate(f"Bearer {minted}", None)
    assert found is not None and found.subject.invitation == "c1" and found.subject.user_id is None
    expired = ward.auth.invitations.issue("c1", protocol.Role.OBSERVER, "inv-1", "Tolk", "south", ttl_seconds=-1)
    with pytest.raises(AuthenticationError) as refused:
        await ward.auth.authenticate(f"Bearer {expired}", None)
    assert refused.value.code == "token_expired"


async def test_a_join_tokens_holder_is_checked_again_when_used(ward: Ward) -> None:
    accounts, invitations = ward.auth.accounts, ward.auth.invitations
    device_id, _ = await ward.auth.devices.issue(ward.user_id, ward.north, "cam")
    async with ward.db.sessions() as session, session.begin():
        patient = Patient(region_id=ward.north)
        session.add(patient)
        await session.flush()
        consultation = Consultation(region_id=ward.north, patient_id=patient.id)
        session.add(consultation)
        await session.flush()
        consultation_id = consultation.id

    async def holder_of(ref: str) -> Subject:
        """What admission reads for a join token minted for ``ref``, then makes of it."""
        invitation = invitations.verify(invitations.issue(consultation_id, protocol.Role.NURSE, ref, "Kari", "north"))
        room, holder, withdrawn = await accounts.admission(consultation_id, ref)
        assert room is not None and room.region_id == ward.north and room.open and not withdrawn
        return token_holder(invitation, holder, room.region_id)

    as_user = await holder_of(Subject.user_ref(ward.user_id))
    assert as_user.user_id == ward.user_id and as_user.device_id is None and len(as_user.roles) == 2
    as_device = await holder_of(Subject.device_ref(device_id))
    assert as_device.device_id == device_id and as_device.roles == {ward.north: frozenset({StaffRole.NURSE})}
    as_guest = await holder_of("inv-5")
    assert as_guest.invitation == consultation_id and as_guest.roles == {ward.north: frozenset({StaffRole.SPECIALIST})}

    await ward.auth.devices.revoke(device_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        await holder_of(Subject.device_ref(device_id))
    await ward.disable()
    with pytest.raises(AuthenticationError, match="no longer active"):
        await holder_of(Subject.user_ref(ward.user_id))
    with pytest.raises(AuthenticationError, match="no longer active"):
        await holder_of(Subject.user_ref(ward.user_id + 99))