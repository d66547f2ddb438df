"""Accounts: users, their memberships in regions, browser sessions and head-camera devices.

The SQL behind who someone is (:mod:`woundcare.auth` decides what that means): auth/ holds
the rules of sessions, devices and logins and asks this module for the rows, so that
auth/ imports no SQLAlchemy; the command line administers users and regions through it.
Tokens arrive here only as their SHA-256 hashes, passwords as their hashes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, exists, literal, null, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Update

from ..db.database import Database, Query
from ..db.models import (
    OPEN_STATUSES,
    Consultation,
    Device,
    GuestInvitation,
    LoginSession,
    Membership,
    Recording,
    RecordingStatus,
    Region,
    StaffRole,
    User,
)
from ..refs import Kind, parse


@dataclass(frozen=True, slots=True)
class Room:
    """Where a consultation's signaling room stands: enough to admit a join."""

    region_id: int
    region_code: str
    open: bool
    recording: bool
    """A recording of it is on (its row says ``recording``): the joiner is told so at once."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Whom a join token names, as the database has them now."""

    user_id: int
    display_name: str
    active: bool
    device: HeldDevice | None
    """The device the token was minted for (revoked or not), or None for the user herself."""
    memberships: list[tuple[int, StaffRole]]


@dataclass(frozen=True, slots=True)
class HeldDevice:
    id: int
    region_id: int
    revoked: bool


def _admission_query(holder: Kind | None) -> Query:
    """The statement of :meth:`Accounts.admission` for a token naming ``holder`` (built once:
    SQLAlchemy's expression building had cost more than the query)."""
    recording = exists().where(
        Recording.consultation_id == Consultation.id, Recording.status == RecordingStatus.RECORDING
    )
    query: Query = (
        select(Consultation.status, Region.id, Region.code, recording)
        .join(Region, Region.id == Consultation.region_id)
        .where(Consultation.id == bindparam("consultation"))
    )
    if holder is None:
        # Any other ref is a guest's (or the recorder's): whether its invitation was withdrawn.
        withdrawn = exists().where(
            GuestInvitation.subject == bindparam("guest"), GuestInvitation.revoked_at.is_not(None)
        )
        return query.add_columns(withdrawn)
    user_id: ColumnElement[int] | InstrumentedAttribute[int]
    if holder is Kind.DEVICE:
        query = query.add_columns(Device.id, Device.region_id, Device.revoked_at).outerjoin(
            Device, Device.id == bindparam("holder")
        )
        user_id = Device.user_id
    else:
        user_id = bindparam("holder")
    return _with_memberships(query.outerjoin(User, User.id == user_id))


def _with_memberships(query: Query) -> Query:
    """``query`` (which joins ``User``) with the user's id, name and whether she is active,
    then one row per membership: its region and role, and the region's id again unless it is
    shredded (:func:`_holder` reads them from the end of each row)."""
    member_region = aliased(Region)
    return (
        query.add_columns(User.id, User.display_name, User.active, Membership.region_id, Membership.role)
        .outerjoin(Membership, Membership.user_id == User.id)
        # A shredded region's membership counts for nothing.
        .outerjoin(member_region, and_(member_region.id == Membership.region_id, member_region.shredded_at.is_(None)))
        .add_columns(member_region.id)
    )


def _holder(rows: Sequence[Sequence[Any]], device: HeldDevice | None = None) -> Holder | None:
    """The user and memberships of :func:`_with_memberships`'s rows; None if no user was found."""
    user = rows[0][-6:-3]
    if user[0] is None:
        return None
    memberships: list[tuple[int, StaffRole]] = [(row[-3], row[-2]) for row in rows if row[-1] is not None]
    return Holder(user[0], user[1], user[2], device, memberships)


_ADMISSION: dict[Kind | None, Query] = {kind: _admission_query(kind) for kind in (None, *Kind)}

_SESSION: Query = _with_memberships(
    select(LoginSession.csrf_token, LoginSession.expires_at, LoginSession.last_seen_at, LoginSession.revoked_at)
    .join(User, User.id == LoginSession.user_id)
    .where(LoginSession.id == bindparam("session"))
)
_DEVICE: Query = _with_memberships(
    select(Device.id, Device.region_id, Device.revoked_at, Device.last_seen_at)
    .join(User, User.id == Device.user_id)
    .where(Device.token_hash == bindparam("token"))
)
"""A session's or a device's user and her memberships, by key, in one statement each (built
once): what every authenticated request reads first. The ORM's two queries in a transaction
had cost some 2 ms of the event loop's thread per request (issue 20)."""


@dataclass(frozen=True, slots=True)
class SessionUser:
    """An open browser session's CSRF token and end, and its user as she is now."""

    csrf_token: str
    expires_at: datetime
    holder: Holder


class Accounts:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- users and their regions

    async def user(self, user_id: int) -> User | None:
        async with self._db.sessions() as session:
            return await session.get(User, user_id)

    async def user_id(self, username: str) -> int | None:
        async with self._db.sessions() as session:
            return await session.scalar(select(User.id).where(User.username == username))

    async def user_by_oidc_subject(self, oidc_subject: str) -> User | None:
        async with self._db.sessions() as session:
            return await session.scalar(select(User).where(User.oidc_subject == oidc_subject))

    async def user_by_hpr_number(self, hpr_number: str) -> User | None:
        async with self._db.sessions() as session:
            return await session.scalar(select(User).where(User.hpr_number == hpr_number))

    async def set_hpr_number(self, user_id: int, hpr_number: str) -> bool:
        """Store the user's HPR number; False when another user already holds it."""
        try:
            async with self._db.sessions() as session, session.begin():
                await session.execute(update(User).where(User.id == user_id).values(hpr_number=hpr_number))
        except IntegrityError:
            return False
        return True

    async def memberships(self, user_id: int) -> list[tuple[int, StaffRole]]:
        """The user's (region id, role) pairs, in regions not shredded."""
        async with self._db.sessions() as session:
            return await _memberships(session, user_id)

    async def active_nurse(self, username: str, region_id: int) -> int | None:
        """The id of ``username`` if it is an active nurse of the region: the only one a
        device may be issued to, from the API and the command line alike."""
        async with self._db.sessions() as session:
            return await session.scalar(
                select(User.id)
                .join(Membership, Membership.user_id == User.id)
                .where(
                    User.username == username,
                    User.active.is_(True),
                    Membership.region_id == region_id,
                    Membership.role == StaffRole.NURSE,
                )
            )

    async def add_user(
        self, username: str, display_name: str, password_hash: str, role: StaffRole, region_ids: Iterable[int]
    ) -> int | None:
        """A new user with ``role`` in each region; its id, or None when the name is taken."""
        try:
            async with self._db.sessions() as session, session.begin():
                user = User(username=username, display_name=display_name, password_hash=password_hash)
                session.add(user)
                await session.flush()
                session.add_all(Membership(user_id=user.id, region_id=rid, role=role) for rid in region_ids)
        except IntegrityError:
            return None
        return user.id

    async def disable_user(self, user_id: int) -> None:
        await self._change_user(user_id, active=False)

    async def set_password(self, user_id: int, password_hash: str) -> None:
        """A new password; the account is unlocked, its failures forgotten."""
        await self._change_user(user_id, password_hash=password_hash, failed_logins=0, locked_until=None)

    async def set_totp(self, user_id: int, sealed_secret: bytes) -> None:
        await self._change_user(user_id, totp_secret_sealed=sealed_secret)

    async def _change_user(self, user_id: int, **values: object) -> None:
        """Change who the user is or how they log in, and end their open sessions with it,
        in one transaction: a session begun under the old state must not outlive it."""
        async with self._db.sessions() as session, session.begin():
            await session.execute(update(User).where(User.id == user_id).values(**values))
            await session.execute(_end_sessions(user_id))

    async def end_sessions(self, user_id: int) -> None:
        """End every open session of the user (their pages meet a 401 and log in again)."""
        async with self._db.sessions() as session, session.begin():
            await session.execute(_end_sessions(user_id))

    # -- regions

    async def add_region(self, code: str, name: str) -> int | None:
        """A new region; its id, or None when the code is taken."""
        try:
            async with self._db.sessions() as session, session.begin():
                region = Region(code=code, name=name)
                session.add(region)
        except IntegrityError:
            return None
        return region.id

    async def set_retention(self, region_id: int, days: int | None) -> None:
        """How many days after it ended a consultation is due for deletion; None: kept."""
        async with self._db.sessions() as session, session.begin():
            await session.execute(update(Region).where(Region.id == region_id).values(retention_days=days))

    async def region_id(self, code: str, *, shredded: bool = False) -> int | None:
        """The id of the region ``code``; a shredded one counts only with ``shredded``."""
        query = select(Region.id).where(Region.code == code)
        if not shredded:
            query = query.where(Region.shredded_at.is_(None))
        async with self._db.sessions() as session:
            return await session.scalar(query)

    async def regions(self, region_ids: Collection[int], *, shredded: bool = True) -> Sequence[Region]:
        """The regions with these ids, by code; shredded ones too unless ``shredded`` is false."""
        if not region_ids:
            return []
        query = select(Region).where(Region.id.in_(region_ids)).order_by(Region.code)
        if not shredded:
            query = query.where(Region.shredded_at.is_(None))
        async with self._db.sessions() as session:
            return (await session.scalars(query)).all()

    async def admission(self, consultation_id: str, ref: str) -> tuple[Room | None, Holder | None, bool]:
        """A join's reads in one statement: the consultation's room; the join token's
        holder ``ref`` names (a user, or a device with its nurse) with her memberships, if it
        names one; and whether ``ref`` is a guest whose invitation has been withdrawn.
        One statement is one round trip (on SQLite no hand-off to another thread): the
        ORM's three had made admission most of a join's CPU on a busy server."""
        holder = parse(ref)
        params: dict[str, Any] = {"consultation": consultation_id}
        if holder is None:
            params["guest"] = ref
        else:
            params["holder"] = holder[1]
        rows = await self._db.read(_ADMISSION[holder[0] if holder else None], params)
        if not rows:
            return None, None, False
        first: Sequence[Any] = rows[0]
        room = Room(first[1], first[2], first[0] in OPEN_STATUSES, bool(first[3]))
        if holder is None:
            return room, None, bool(first[4])
        device: HeldDevice | None = None
        if holder[0] is Kind.DEVICE:
            if first[4] is None:
                return room, None, False
            device = HeldDevice(first[4], first[5], first[6] is not None)
        return room, _holder(rows, device), False

    # -- browser sessions

    async def add_session(self, row: LoginSession) -> None:
        async with self._db.sessions() as session, session.begin():
            session.add(row)

    async def open_session(self, session_id: str, idle: timedelta) -> SessionUser | None:
        """The session and its user unless it is revoked, expired or idle too long, or its
        user disabled; its last use is noted (at most every :data:`_TOUCH_EVERY`)."""
        rows = await self._db.read(_SESSION, {"session": session_id})
        if not rows:
            return None
        csrf_token, expires_at, last_seen_at, revoked_at = rows[0][:4]
        holder = _holder(rows)
        now = datetime.now(UTC)
        if holder is None or not holder.active or revoked_at is not None or expires_at <= now or last_seen_at + idle <= now:
            return None
        if now - last_seen_at > _TOUCH_EVERY:
            await self._touch(update(LoginSession).where(LoginSession.id == session_id), now)
        return SessionUser(csrf_token, expires_at, holder)

    async def revoke_session(self, session_id: str) -> None:
        async with self._db.sessions() as session, session.begin():
            await session.execute(
                update(LoginSession)
                .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )

    # -- devices

    async def add_device(self, user_id: int, region_id: int, name: str, token_hash: str) -> int:
        async with self._db.sessions() as session, session.begin():
            device = Device(name=name, user_id=user_id, region_id=region_id, token_hash=token_hash)
            session.add(device)
            await session.flush()
            return device.id

    async def device_login(self, token_hash: str) -> Holder | None:
        """The nurse of the device with this token, with the device, if neither is revoked
        or disabled; its last use is noted (at most every :data:`_TOUCH_EVERY`: a camera
        uploading photos would otherwise write a row per request)."""
        rows = await self._db.read(_DEVICE, {"token": token_hash})
        if not rows:
            return None
        device_id, region_id, revoked_at, last_seen_at = rows[0][:4]
        holder = _holder(rows, HeldDevice(device_id, region_id, revoked_at is not None))
        if holder is None or revoked_at is not None or not holder.active:
            return None
        now = datetime.now(UTC)
        if last_seen_at is None or now - last_seen_at > _TOUCH_EVERY:
            await self._touch(update(Device).where(Device.id == device_id), now)
        return holder

    async def _touch(self, row: Update, now: datetime) -> None:
        """Note a session's or device's last use (``row`` names it)."""
        async with self._db.sessions() as session, session.begin():
            await session.execute(row.values(last_seen_at=now), execution_options={"synchronize_session": False})

    async def device_region(self, device_id: int) -> int | None:
        async with self._db.sessions() as session:
            return await session.scalar(select(Device.region_id).where(Device.id == device_id))

    async def revoke_device(self, device_id: int) -> bool:
        async with self._db.sessions() as session, session.begin():
            revoked = await session.scalar(
                update(Device)
                .where(Device.id == device_id, Device.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
                .returning(Device.id)
            )
        return revoked is not None

    async def revoked_since(self, since: datetime) -> tuple[set[int], set[int]]:
        """Users disabled, and devices revoked since ``since`` or whose nurse is disabled."""
        # One statement, one round trip to the database thread: the revocation poll runs on
        # the loop that relays every frame, and each round trip is a pause there.
        revoked = union_all(
            select(literal("d"), Device.id).where(Device.revoked_at >= since),
            select(literal("u"), User.id).where(User.active.is_(False)),
            select(literal("d"), Device.id).join(User, User.id == Device.user_id).where(User.active.is_(False)),
        )
        async with self._db.sessions() as session:
            rows = (await session.execute(revoked)).all()
        return {n for kind, n in rows if kind == "u"}, {n for kind, n in rows if kind == "d"}

    # -- password login's counts (see woundcare.auth.login)

    async def count_attempt(self, username: str, now: datetime) -> User | None:
        """Count one login attempt on ``username`` in one atomic statement; the account as
        counted, or None when no account has that name. A lock lapsed by ``now`` starts a
        new run."""
        lapsed = and_(User.locked_until.is_not(None), User.locked_until <= now)
        async with self._db.sessions() as session, session.begin():
            return await session.scalar(
                update(User)
                .where(User.username == username)
                .values(
                    failed_logins=case((lapsed, 1), else_=User.failed_logins + 1),
                    locked_until=case((lapsed, null()), else_=User.locked_until),
                )
                .returning(User),
                execution_options={"synchronize_session": False},
            )

    async def lock(self, user_id: int, seconds: float) -> None:
        """Lock the account for ``seconds`` unless a lock is already in force."""
        now = datetime.now(UTC)
        async with self._db.sessions() as session, session.begin():
            await session.execute(
                update(User)
                .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
                .values(locked_until=now + timedelta(seconds=seconds)),
                execution_options={"synchronize_session": False},
            )

    async def uncount_attempt(self, user_id: int) -> None:
        """Take back one counted attempt (it was no failure)."""
        await self._set_failures(user_id, case((User.failed_logins > 0, User.failed_logins - 1), else_=0))

    async def clear_failures(self, user_id: int) -> None:
        """A successful login: no failures counted, no lock."""
        await self._set_failures(user_id, 0, locked_until=None)

    async def _set_failures(self, user_id: int, count: object, **more: object) -> None:
        async with self._db.sessions() as session, session.begin():
            await session.execute(
                update(User).where(User.id == user_id).values(failed_logins=count, **more),
                execution_options={"synchronize_session": False},
            )


_TOUCH_EVERY = timedelta(seconds=30)
"""A session's or device's last use is written at most this often (each write is a database
round trip)."""


def _end_sessions(user_id: int) -> Update:
    return (
        update(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def _memberships(session: AsyncSession, user_id: int) -> list[tuple[int, StaffRole]]:
    rows = (
        await session.execute(
            select(Membership.region_id, Membership.role)
            .join(Region, Region.id == Membership.region_id)
            .where(Membership.user_id == user_id, Region.shredded_at.is_(None))
        )
    ).all()
    return [(region_id, role) for region_id, role in rows]
