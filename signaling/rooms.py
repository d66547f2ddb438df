"""Consultation rooms: who is in, in which role, and where their frames go.

One :class:`Rooms` per server instance holds the sockets of its own participants and a
copy of each room's members, and keeps what several instances must agree on in a
:class:`~signaling.directory.Directory`: in this process by default, or in Redis
(:func:`create_rooms`). The rules it applies (who may send what, where a frame goes, one
nurse) are :mod:`signaling.rules`.

Relays never wait: everything here runs on the event loop, so the order in which an
instance handles frames is the order its participants receive them (with several
instances, frames from one instance reach each receiver in the order they were sent;
frames from different instances are not ordered against each other). Frames for a
participant who is reconnecting are held (bounded) and delivered when it resumes.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aiohttp import web

from . import rules
from .admission import Identity
from .directory import Claimed, Closing, Directory, Envelope, Joined, Member, Refused, create_directory
from .limits import Limits
from .protocol import (
    ClientMessage,
    CloseCode,
    ErrorCode,
    Join,
    Presence,
    ProtocolError,
    Role,
    dumps,
    relay_frame,
)
from .sink import EventKind, EventSink, RoomEvent


class Outlet(Protocol):
    """The sending half of a participant's socket."""

    def deliver(self, text: str) -> None:
        """Queue one frame; never blocks."""

    def close(self, code: CloseCode, error: ErrorCode, message: str) -> None:
        """Send an error frame, then close; never blocks."""


def _digest(token: str) -> bytes:
    """What the directory keeps of a resume token."""
    return hashlib.sha256(token.encode()).digest()


def _identity(member: Member) -> Identity:
    return Identity(member.subject, member.role, member.name, member.region, member.may_send)


@dataclass(eq=False, slots=True)
class Participant:
    """A participant whose socket (or, while it is reconnecting, whose place) is on this instance."""

    id: str
    identity: Identity
    room: Room
    outlet: Outlet | None
    expiry: asyncio.TimerHandle | None = None

    @property
    def state(self) -> Presence:
        return Presence.JOINED if self.outlet is not None else Presence.RECONNECTING

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.identity.role.value,
            "name": self.identity.display_name,
            "state": self.state.value,
        }


@dataclass(eq=False, slots=True)
class Room:
    consultation: str
    region: str
    participants: dict[str, Participant] = field(default_factory=dict)
    """Those on this instance."""
    members: dict[str, Member] = field(default_factory=dict)
    """Everyone, on every instance, as this instance last heard, oldest first."""


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Who is in a consultation's room now, on every instance: what a queue shows."""

    nurse: Presence | None
    """``joined``, ``reconnecting`` (her place held for the grace window), or None: no nurse."""
    viewers: int
    """Specialists and observers in the room, joined or reconnecting."""

    @classmethod
    def of(cls, members: Iterable[tuple[Role, Presence]]) -> Occupancy:
        nurse, viewers = None, 0
        for role, state in members:
            if role is Role.NURSE:
                nurse = state
            elif role in (Role.SPECIALIST, Role.OBSERVER):
                viewers += 1
        return cls(nurse, viewers)


def _presence(info: dict[str, Any], state: Presence, reason: str | None = None) -> dict[str, Any]:
    info["state"] = state.value
    frame: dict[str, Any] = {"type": "presence", "state": state.value, "participant": info}
    if reason is not None:
        frame["reason"] = reason
    return frame


class Rooms:
    """The rooms of this server instance, over a directory shared with the other instances."""

    def __init__(self, limits: Limits, sink: EventSink, directory: Directory) -> None:
        self._limits = limits
        self._sink = sink
        self._directory = directory
        self._me = directory.instance
        self._rooms: dict[str, Room] = {}
        self._timeouts: set[asyncio.Task[None]] = set()
        self._turns = _Turns()

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, consultation: str) -> Room | None:
        return self._rooms.get(consultation)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the directory is connected while the application runs."""
        async with self._directory.connected(self):
            yield
        for task in self._timeouts:
            task.cancel()

    async def occupancy(self, consultations: Iterable[str]) -> dict[str, Occupancy]:
        """Who is in each of these rooms now, on every instance."""
        wanted = list(consultations)
        found = await self._directory.members(wanted) if wanted else []
        return {
            consultation: Occupancy.of((m.role, m.state) for m in members)
            for consultation, members in zip(wanted, found, strict=True)
        }

    # -- joining ---------------------------------------------------------------------

    async def enter(
        self, join: Join, identity: Identity, outlet: Outlet, address: str | None = None
    ) -> Participant:
        """Add a new participant; its ``joined`` frame carries its resume token.

        The join's events are stored (:meth:`EventSink.stored`) before anyone hears of it,
        and joins to one room on this instance take turns, so that each finds the room as the
        one before left it; joins to different rooms share their stores."""
        async with self._turns.taken(join.consultation):
            return await self._enter(join, identity, outlet, address)

    async def _enter(self, join: Join, identity: Identity, outlet: Outlet, address: str | None) -> Participant:
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        while True:
            member = Member(
                join.consultation,
                secrets.token_urlsafe(6),
                identity.role,
                identity.display_name,
                identity.subject,
                identity.region,
                identity.may_send,
                self._me,
                Presence.JOINED,
                digest,
                time.time(),
            )
            reply = await self._directory.join(member)
            if reply is not Refused.IN_USE:
                break
        if not isinstance(reply, Joined):
            denied = _room_event(
                join.consultation, EventKind.DENIED, identity, detail=ErrorCode.ROLE_TAKEN.value, address=address
            )
            self._sink.emit(denied)
            raise rules.role_taken()
        released = reply.released
        if released is not None:
            replaced = ErrorCode.REPLACED.value
            self._sink.emit(
                _room_event(join.consultation, EventKind.LEFT, _identity(released), released.id, detail=replaced)
            )
        self._sink.emit(_room_event(join.consultation, EventKind.JOINED, identity, member.id, address=address))
        try:
            await self._sink.stored()
        except asyncio.CancelledError:
            self._directory.discard(member)
            # A socket gone while its join was being stored: the join is still stored, so its
            # access span is closed on record too, as when the room closes under it.
            self._sink.emit(_room_event(join.consultation, EventKind.LEFT, identity, member.id, detail="cancelled"))
            raise
        except BaseException:
            self._directory.discard(member)
            raise
        # Read again: others may have left or dropped while the join was stored.
        members = (await self._directory.members([join.consultation]))[0]
        if not any(m.id == member.id for m in members):
            # The room was closed meanwhile (the consultation ended).
            self._sink.emit(_room_event(join.consultation, EventKind.LEFT, identity, member.id, detail="closed"))
            raise ProtocolError(ErrorCode.FORBIDDEN, "this consultation has ended", "join")
        room = self._room(join.consultation, identity.region)
        room.members = {m.id: m for m in members}
        participant = Participant(member.id, identity, room, outlet)
        room.participants[member.id] = participant
        outlet.deliver(dumps(self._joined(participant, token, resumed=False)))
        for notice in identity.notices:
            outlet.deliver(dumps(notice))
        if released is not None:
            self._release(room, released, participant)
        self._broadcast(room, dumps(_presence(participant.info(), Presence.JOINED)), participant, update=member)
        return participant

    def _release(self, room: Room, released: Member, newcomer: Participant) -> None:
        """The newcomer's own place, held in grace, is gone: the others see it leave, then
        the newcomer join under a new id. Not a ``rejoined`` under the old id: a page without
        the resume token numbers its peer connections from the start again, and a viewer
        would take its first offer for the old page's connection (protocol §12.3). (Its
        ``left`` event was stored with the newcomer's ``joined``.)"""
        held = room.participants.get(released.id)
        if held is not None:
            self._forget(held)
        room.members.pop(released.id, None)
        frame = _presence(released.info(), Presence.LEFT, ErrorCode.REPLACED.value)
        self._broadcast(room, dumps(frame), newcomer, gone=released.id)

    async def reenter(self, join: Join, outlet: Outlet, address: str | None = None) -> Participant:
        """Give a dropped participant its place back, on whichever instance it was; the
        resume token is single-use."""
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        reply = await self._directory.claim(join.consultation, join.role, _digest(join.resume or ""), digest)
        if reply is Refused.OTHER_ROLE:
            raise ProtocolError(ErrorCode.RESUME_INVALID, "resume token is for another role", "join")
        if not isinstance(reply, Claimed):
            raise ProtocolError(
                ErrorCode.RESUME_INVALID, "resume token is unknown or its grace window has ended", "join"
            )
        member = reply.member
        room = self._room(join.consultation, member.region)
        room.members = {m.id: m for m in reply.members}
        participant = room.participants.get(member.id)
        if participant is not None:
            # Its place (or a half-open socket) is here on this instance.
            self._stop_expiry(participant)
            if participant.outlet is not None:
                participant.outlet.close(CloseCode.CONFLICT, ErrorCode.REPLACED, "resumed on another socket")
        else:
            participant = Participant(member.id, _identity(member), room, None)
            room.participants[member.id] = participant
            if reply.previous != self._me:
                self._directory.send(reply.previous, Envelope(room.consultation, replaced=member.id))
        participant.outlet = outlet
        outlet.deliver(dumps(self._joined(participant, token, resumed=True)))
        for text in reply.held:
            outlet.deliver(text)
        self._broadcast(room, dumps(_presence(participant.info(), Presence.REJOINED)), participant, update=member)
        self._event(room, EventKind.REJOINED, participant.identity, member.id, address=address)
        return participant

    # -- frames ----------------------------------------------------------------------

    def relay(self, sender: Participant, message: ClientMessage) -> None:
        """Route one frame from a joined participant (the handler has checked that it may
        send this kind)."""
        room = sender.room
        route = rules.route(message, sender.id, sender.identity.role, room.members)
        text = dumps(relay_frame(message, sender.id))
        if route.to is None:
            self._broadcast(room, text, sender)
        else:
            self._send(room, route.to, text)
        if route.event is not None:
            self._event(room, route.event, sender.identity, sender.id, detail=route.detail)

    def publish(self, consultation: str, frame: dict[str, Any]) -> bool:
        """Send a server frame (e.g. ``snapshot_stored``) to everyone in a room, on every
        instance. True if the room has participants on this instance."""
        self._directory.publish(Envelope(consultation, dumps(frame)))
        return consultation in self._rooms

    def receive(self, envelope: Envelope) -> None:
        """From the directory: a frame or an order for participants on this instance."""
        consultation = envelope.consultation
        if envelope.closing is not None:
            self._close_here(consultation, envelope.closing)
            return
        room = self._rooms.get(consultation)
        if room is None:
            return
        if envelope.replaced is not None:
            self._moved(room, envelope.replaced)
            return
        update = envelope.update
        if update is not None:
            if update.instance != self._me and update.id in room.participants:
                self._moved(room, update.id)
            room.members[update.id] = update
        if envelope.gone is not None:
            room.members.pop(envelope.gone, None)
            released = room.participants.get(envelope.gone)
            if released is not None:
                # Its place, held here, was taken over on another instance.
                self._forget(released)
        if envelope.targets is None:
            recipients = [p for p in room.participants.values() if p.id != envelope.exclude]
        else:
            recipients = [p for t in envelope.targets if (p := room.participants.get(t)) is not None]
        for participant in recipients:
            self._give(participant, envelope.text)

    # -- leaving ---------------------------------------------------------------------

    def leave(self, participant: Participant, reason: str = "left") -> None:
        """Remove a participant for good and tell the others."""
        room = participant.room
        if room.participants.get(participant.id) is not participant:
            return
        member = room.members.get(participant.id)
        self._forget(participant)
        self._broadcast(room, dumps(_presence(participant.info(), Presence.LEFT, reason)), gone=participant.id)
        self._event(room, EventKind.LEFT, participant.identity, participant.id, detail=reason)
        if member is not None:
            self._directory.discard(member)

    def drop(self, participant: Participant, outlet: Outlet) -> None:
        """The participant's socket is gone without a leave: hold its place for the grace window."""
        room = participant.room
        if participant.outlet is not outlet or room.participants.get(participant.id) is not participant:
            return  # already resumed elsewhere, or already left
        participant.outlet = None
        held = room.members.get(participant.id)
        if held is None:
            # The directory has let it go (its room closed, its place taken over): nothing to hold.
            self._forget(participant)
            return
        grace = self._limits.grace_seconds
        self._expire_in(participant, grace)
        member = replace(held, state=Presence.RECONNECTING, deadline=time.time() + grace)
        room.members[participant.id] = member
        frame = _presence(participant.info(), Presence.RECONNECTING)
        frame["graceSeconds"] = grace
        self._broadcast(room, dumps(frame), participant, update=member)
        self._event(room, EventKind.RECONNECTING, participant.identity, participant.id)
        self._directory.mark(member)

    def adopt(self, member: Member, before: Presence, members: list[Member]) -> None:
        """From the directory: this instance now holds the place of a participant whose
        instance died, until its deadline; if it was joined there, the others are told."""
        room = self._room(member.consultation, member.region)
        existing = room.participants.get(member.id)
        if existing is not None:
            self._forget(existing)
            room = self._room(member.consultation, member.region)
        room.members = {m.id: m for m in members}
        participant = Participant(member.id, _identity(member), room, None)
        room.participants[member.id] = participant
        deadline = member.deadline if member.deadline is not None else time.time() + self._limits.grace_seconds
        self._expire_in(participant, deadline - time.time())
        if before is Presence.JOINED:
            frame = _presence(participant.info(), Presence.RECONNECTING)
            frame["graceSeconds"] = self._limits.grace_seconds
            self._broadcast(room, dumps(frame), participant, update=member)
            self._event(room, EventKind.RECONNECTING, participant.identity, member.id)

    def close_room(self, consultation: str, code: CloseCode, error: ErrorCode, message: str) -> None:
        """End a room on every instance: the directory forgets it, then each instance
        closes the sockets it holds."""
        self._directory.close(Envelope(consultation, closing=Closing(code, error, message)))

    def evict(self, subjects: set[str], code: CloseCode, error: ErrorCode, message: str) -> int:
        """Remove every participant on this instance whose identity's subject is in
        ``subjects`` (revoked devices, disabled users); returns how many."""
        doomed = [
            p for room in self._rooms.values() for p in room.participants.values() if p.identity.subject in subjects
        ]
        for participant in doomed:
            outlet = participant.outlet
            self.leave(participant, error.value)
            if outlet is not None:
                outlet.close(code, error, message)
        return len(doomed)

    def _expire_in(self, participant: Participant, seconds: float) -> None:
        participant.expiry = asyncio.get_running_loop().call_later(max(0.0, seconds), self._expire, participant)

    def _expire(self, participant: Participant) -> None:
        participant.expiry = None
        task = asyncio.create_task(self._time_out(participant))
        self._timeouts.add(task)
        task.add_done_callback(self._timeouts.discard)

    async def _time_out(self, participant: Participant) -> None:
        """The grace window has ended: exactly one instance (the owner, per the directory) says so."""
        room = participant.room
        member = room.members.get(participant.id)
        removed = member is not None and await self._directory.expire(member)
        if room.participants.get(participant.id) is not participant or participant.outlet is not None:
            return  # resumed in the meantime
        self._forget(participant)
        if not removed:
            return  # resumed on another instance: it has told the room
        self._broadcast(room, dumps(_presence(participant.info(), Presence.LEFT, "timeout")), gone=participant.id)
        self._event(room, EventKind.LEFT, participant.identity, participant.id, detail="timeout")

    @staticmethod
    def _stop_expiry(participant: Participant) -> None:
        if participant.expiry is not None:
            participant.expiry.cancel()
            participant.expiry = None

    def _forget(self, participant: Participant) -> None:
        """Take a participant off this instance (not out of the directory)."""
        room = participant.room
        self._stop_expiry(participant)
        if room.participants.get(participant.id) is participant:
            del room.participants[participant.id]
        room.members.pop(participant.id, None)
        participant.outlet = None
        self._forget_if_empty(room)

    def _moved(self, room: Room, pid: str) -> None:
        """The participant resumed on another instance: close our old socket, quietly."""
        participant = room.participants.get(pid)
        if participant is None:
            return
        outlet = participant.outlet
        self._stop_expiry(participant)
        del room.participants[pid]
        participant.outlet = None
        if outlet is not None:
            outlet.close(CloseCode.CONFLICT, ErrorCode.REPLACED, "resumed on another socket")
        self._forget_if_empty(room)

    def _close_here(self, consultation: str, closing: Closing) -> None:
        room = self._rooms.get(consultation)
        if room is None:
            return
        reason = closing.error.value
        for participant in list(room.participants.values()):
            outlet = participant.outlet
            if room.participants.get(participant.id) is not participant:
                continue
            self._forget(participant)
            # The directory has forgotten the room already; tell only who is still here.
            frame = dumps(_presence(participant.info(), Presence.LEFT, reason))
            for other in room.participants.values():
                if other.outlet is not None:
                    other.outlet.deliver(frame)
            self._event(room, EventKind.LEFT, participant.identity, participant.id, detail=reason)
            if outlet is not None:
                outlet.close(closing.code, closing.error, closing.message)

    # -- routing ---------------------------------------------------------------------

    def _room(self, consultation: str, region: str) -> Room:
        room = self._rooms.get(consultation)
        if room is None:
            room = self._rooms[consultation] = Room(consultation, region)
        return room

    def _forget_if_empty(self, room: Room) -> None:
        if not room.participants and self._rooms.get(room.consultation) is room:
            del self._rooms[room.consultation]

    def _give(self, participant: Participant, text: str) -> None:
        """To a participant on this instance: its socket, or its held frames."""
        if participant.outlet is not None:
            participant.outlet.deliver(text)
        elif self._limits.held_frames:
            member = participant.room.members.get(participant.id)
            if member is not None:
                self._directory.hold(member, text, self._limits.held_frames)

    def _send(self, room: Room, pid: str, text: str) -> None:
        participant = room.participants.get(pid)
        if participant is not None:
            self._give(participant, text)
            return
        member = room.members.get(pid)
        if member is not None:
            self._directory.send(member.instance, Envelope(room.consultation, text, targets=(pid,)))

    def _broadcast(
        self,
        room: Room,
        text: str,
        exclude: Participant | None = None,
        *,
        update: Member | None = None,
        gone: str | None = None,
    ) -> None:
        """To everyone in the room but ``exclude``: here directly, elsewhere one envelope
        per instance (which also carries what changed in the room)."""
        participants = room.participants
        for participant in participants.values():
            if participant is not exclude:
                self._give(participant, text)
        if len(room.members) <= len(participants):
            return  # everyone is here (always, with one instance)
        instances = {m.instance for pid, m in room.members.items() if pid not in participants} - {self._me}
        envelope = Envelope(
            room.consultation, text, exclude=exclude.id if exclude is not None else None, update=update, gone=gone
        )
        for instance in instances:
            self._directory.send(instance, envelope)

    def _joined(self, participant: Participant, token: str, *, resumed: bool) -> dict[str, Any]:
        room = participant.room
        return {
            "type": "joined",
            "v": 1,
            "consultation": room.consultation,
            "you": participant.info(),
            "peers": [m.info() for pid, m in room.members.items() if pid != participant.id],
            "resumeToken": token,
            "graceSeconds": self._limits.grace_seconds,
            "resumed": resumed,
        }

    def _event(
        self,
        room: Room,
        kind: EventKind,
        identity: Identity,
        participant: str | None = None,
        *,
        detail: str | None = None,
        address: str | None = None,
    ) -> None:
        self._sink.emit(_room_event(room.consultation, kind, identity, participant, detail=detail, address=address))


def _room_event(
    consultation: str,
    kind: EventKind,
    identity: Identity,
    participant: str | None = None,
    *,
    detail: str | None = None,
    address: str | None = None,
) -> RoomEvent:
    return RoomEvent(
        consultation, kind, identity.subject, identity.role, identity.region, participant, detail, address
    )


class _Turns:
    """A lock per room while anyone holds or waits for it: joins to one room take turns."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, _Turn] = {}

    def taken(self, key: str) -> _Turn:
        """``async with turns.taken(room):`` the room's turn, for this join alone."""
        turn = self._locks.get(key)
        if turn is None:
            turn = self._locks[key] = _Turn(self._locks, key)
        return turn


class _Turn:
    """One room's lock and how many hold or wait for it; gone from its table with the last.
    A class rather than an ``asynccontextmanager``: every join takes one, and a generator
    (which the loop also tracks in a weak set) cost more than the lock it wraps."""

    __slots__ = ("_table", "_key", "_lock", "_users")

    def __init__(self, table: dict[str, _Turn], key: str) -> None:
        self._table = table
        self._key = key
        self._lock = asyncio.Lock()
        self._users = 0

    async def __aenter__(self) -> None:
        self._users += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if not self._users:
            del self._table[self._key]


def create_rooms(
    limits: Limits,
    sink: EventSink,
    *,
    redis_url: str | None = None,
    instance: str = "local",
    redis_prefix: str = "wc",
    instance_ttl_seconds: float = 5.0,
) -> Rooms:
    """Rooms in this process, or shared through Redis with every instance on the same
    ``redis_url`` and ``redis_prefix`` (:func:`signaling.directory.create_directory`)."""
    directory = create_directory(
        redis_url,
        instance=instance,
        prefix=redis_prefix,
        ttl_seconds=instance_ttl_seconds,
        grace_seconds=limits.grace_seconds,
    )
    return Rooms(limits, sink, directory)
