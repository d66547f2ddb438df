"""Consultation rooms: who is in, in which role, and where their frames go.

Everything here is synchronous and runs on the event loop, so the order in which the
server handles frames is the order every participant receives them. Frames for a
participant who is reconnecting are held (bounded) and delivered when they resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .admission import Identity
from .limits import Limits
from .protocol import check_sender
from .protocol import (
    Chat,
    ClientMessage,
    CloseCode,
    ErrorCode,
    IceRestart,
    Join,
    Presence,
    ProtocolError,
    Role,
    SnapshotRequest,
    VideoProfileMessage,
    dumps,
    relay_frame,
)
from .sink import EventKind, EventSink, RoomEvent


def addressed_event(
    message: ClientMessage, sender: Role, target: Role
) -> tuple[EventKind, str | None] | None:
    """Refuse an addressed frame going the wrong way; the session-log event it makes, if any.

    Video profiles travel between the nurse's camera and a viewer only."""
    if isinstance(message, IceRestart):
        return EventKind.ICE_RESTART, None
    if isinstance(message, VideoProfileMessage):
        if (sender is Role.NURSE) == (target is Role.NURSE):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "video profiles go between the nurse camera and a viewer", message.type
            )
        if sender is Role.NURSE:
            active = message.active.value if message.active else "-"
            return EventKind.VIDEO_PROFILE, f"{active}/{message.mode.value}"
        return EventKind.VIDEO_PROFILE_ASKED, message.mode.value
    return None


class Outlet(Protocol):
    """The sending half of a participant's socket."""

    def deliver(self, text: str) -> None:
        """Queue one frame; never blocks."""

    def close(self, code: CloseCode, error: ErrorCode, message: str) -> None:
        """Send an error frame, then close; never blocks."""


_NOTHING_HELD: deque[str] = deque(maxlen=0)
"""Shared by every participant whose socket is open: nothing is held for it, and an
empty deque still costs half a kilobyte. :meth:`Rooms.drop` gives a participant its own."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(eq=False, slots=True)
class Participant:
    id: str
    identity: Identity
    room: Room
    outlet: Outlet | None
    resume_digest: bytes
    held: deque[str]
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

    def send(self, text: str) -> None:
        if self.outlet is not None:
            self.outlet.deliver(text)
        else:
            self.held.append(text)


@dataclass(eq=False, slots=True)
class Room:
    consultation: str
    region: str
    participants: dict[str, Participant] = field(default_factory=dict)

    def others(self, participant: Participant) -> Iterator[Participant]:
        return (p for p in self.participants.values() if p is not participant)

    def broadcast(self, frame: dict[str, Any], exclude: Participant | None = None) -> None:
        text = dumps(frame)
        for p in self.participants.values():
            if p is not exclude:
                p.send(text)

    def nurse(self) -> Participant | None:
        return next((p for p in self.participants.values() if p.identity.role is Role.NURSE), None)


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


class Rooms:
    """All rooms of this server instance, in memory (the default: one instance).

    :class:`signaling.cluster.ClusterRooms` is the same interface over Redis."""

    def __init__(self, limits: Limits, sink: EventSink) -> None:
        self._limits = limits
        self._sink = sink
        self._rooms: dict[str, Room] = {}
        self._by_resume: dict[bytes, Participant] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, consultation: str) -> Room | None:
        return self._rooms.get(consultation)

    def participants(self) -> int:
        return sum(len(r.participants) for r in self._rooms.values())

    async def occupancy(self, consultations: Iterable[str]) -> dict[str, Occupancy]:
        """Who is in each of these rooms now."""
        found = {}
        for consultation in consultations:
            room = self._rooms.get(consultation)
            members = room.participants.values() if room is not None else ()
            found[consultation] = Occupancy.of((p.identity.role, p.state) for p in members)
        return found

    def join(
        self, join: Join, identity: Identity, outlet: Outlet, address: str | None = None
    ) -> tuple[Participant, str]:
        """Add a new participant; returns it with its resume token."""
        room = self._rooms.get(join.consultation)
        if room is None:
            room = self._rooms[join.consultation] = Room(join.consultation, identity.region)
        if identity.role is Role.NURSE and room.nurse() is not None:
            self._event(room, EventKind.DENIED, identity, detail=ErrorCode.ROLE_TAKEN.value, address=address)
            if not room.participants:
                del self._rooms[join.consultation]
            raise ProtocolError(
                ErrorCode.ROLE_TAKEN, "this consultation already has a nurse camera", "join"
            )
        pid = secrets.token_urlsafe(6)
        while pid in room.participants:
            pid = secrets.token_urlsafe(6)
        token = secrets.token_urlsafe(32)
        participant = Participant(
            pid, identity, room, outlet, _digest(token), _NOTHING_HELD
        )
        room.participants[pid] = participant
        self._by_resume[participant.resume_digest] = participant
        outlet.deliver(dumps(self._joined_frame(participant, token, resumed=False)))
        room.broadcast(self._presence(participant, Presence.JOINED), exclude=participant)
        self._event(room, EventKind.JOINED, identity, pid, address=address)
        return participant, token

    def resume(self, join: Join, outlet: Outlet, address: str | None = None) -> tuple[Participant, str]:
        """Give a dropped participant its place back; the resume token is single-use."""
        participant = self._by_resume.get(_digest(join.resume or ""))
        if participant is None or participant.room.consultation != join.consultation:
            raise ProtocolError(
                ErrorCode.RESUME_INVALID, "resume token is unknown or its grace window has ended", "join"
            )
        if participant.identity.role is not join.role:
            raise ProtocolError(ErrorCode.RESUME_INVALID, "resume token is for another role", "join")
        if participant.expiry is not None:
            participant.expiry.cancel()
            participant.expiry = None
        if participant.outlet is not None:
            # The old socket looks open but the client has moved on (half-open TCP).
            participant.outlet.close(CloseCode.CONFLICT, ErrorCode.REPLACED, "resumed on another socket")
        del self._by_resume[participant.resume_digest]
        token = secrets.token_urlsafe(32)
        participant.resume_digest = _digest(token)
        self._by_resume[participant.resume_digest] = participant
        participant.outlet = outlet
        outlet.deliver(dumps(self._joined_frame(participant, token, resumed=True)))
        while participant.held:
            outlet.deliver(participant.held.popleft())
        participant.held = _NOTHING_HELD
        room = participant.room
        room.broadcast(self._presence(participant, Presence.REJOINED), exclude=participant)
        self._event(room, EventKind.REJOINED, participant.identity, participant.id, address=address)
        return participant, token

    async def enter(
        self, join: Join, identity: Identity, outlet: Outlet, address: str | None = None
    ) -> Participant:
        """The handler's way in: :meth:`join` here; a cluster agrees with the others first."""
        return self.join(join, identity, outlet, address)[0]

    async def reenter(self, join: Join, outlet: Outlet, address: str | None = None) -> Participant:
        """The handler's way back: :meth:`resume` here; a cluster claims the token in Redis."""
        return self.resume(join, outlet, address)[0]

    def relay(self, sender: Participant, message: ClientMessage) -> None:
        """Route one frame from a joined participant."""
        room = sender.room
        check_sender(sender.identity.role, message.type)
        if isinstance(message, Chat):
            room.broadcast(relay_frame(message, sender.id), exclude=sender)
            return
        if isinstance(message, SnapshotRequest):
            if sender.identity.role is Role.NURSE:
                raise ProtocolError(ErrorCode.FORBIDDEN, "only viewers request snapshots", message.type)
            nurse = room.nurse()
            if nurse is None:
                raise ProtocolError(ErrorCode.UNKNOWN_PEER, "no nurse camera in this room", message.type)
            nurse.send(dumps(relay_frame(message, sender.id)))
            self._event(room, EventKind.SNAPSHOT_REQUESTED, sender.identity, sender.id, detail=message.id)
            return
        # Offer, answer, candidate, end_of_candidates, ice_restart: addressed to one peer.
        target = room.participants.get(message.to)  # type: ignore[union-attr]
        if target is None or target is sender:
            raise ProtocolError(ErrorCode.UNKNOWN_PEER, "no such participant in this room", message.type)
        event = addressed_event(message, sender.identity.role, target.identity.role)
        target.send(dumps(relay_frame(message, sender.id)))
        if event is not None:
            self._event(room, event[0], sender.identity, sender.id, detail=event[1])

    def leave(self, participant: Participant, reason: str = "left") -> None:
        """Remove a participant for good and tell the others."""
        room = participant.room
        if room.participants.get(participant.id) is not participant:
            return
        if participant.expiry is not None:
            participant.expiry.cancel()
            participant.expiry = None
        del room.participants[participant.id]
        self._by_resume.pop(participant.resume_digest, None)
        participant.outlet = None
        room.broadcast(self._presence(participant, Presence.LEFT, reason))
        self._event(room, EventKind.LEFT, participant.identity, participant.id, detail=reason)
        if not room.participants:
            del self._rooms[room.consultation]

    def drop(self, participant: Participant, outlet: Outlet) -> None:
        """The participant's socket is gone without a leave: hold its place for the grace window."""
        if participant.outlet is not outlet or participant.room.participants.get(participant.id) is not participant:
            return  # already resumed elsewhere, or already left
        participant.outlet = None
        participant.held = deque(maxlen=self._limits.held_frames)
        loop = asyncio.get_running_loop()
        participant.expiry = loop.call_later(
            self._limits.grace_seconds, self.leave, participant, "timeout"
        )
        room = participant.room
        frame = self._presence(participant, Presence.RECONNECTING)
        frame["graceSeconds"] = self._limits.grace_seconds
        room.broadcast(frame, exclude=participant)
        self._event(room, EventKind.RECONNECTING, participant.identity, participant.id)

    def publish(self, consultation: str, frame: dict[str, Any]) -> bool:
        """Send a server frame (e.g. ``snapshot_stored``) to everyone in a room."""
        room = self._rooms.get(consultation)
        if room is None:
            return False
        room.broadcast(frame)
        return True

    def close_room(self, consultation: str, code: CloseCode, error: ErrorCode, message: str) -> None:
        """End a room: close every socket in it and forget it."""
        room = self._rooms.get(consultation)
        if room is None:
            return
        for participant in list(room.participants.values()):
            self._remove(participant, code, error, message)

    def evict(self, subjects: set[str], code: CloseCode, error: ErrorCode, message: str) -> int:
        """Remove every participant whose identity's subject is in ``subjects`` (revoked
        devices, disabled users); returns how many."""
        doomed = [
            p for room in self._rooms.values() for p in room.participants.values() if p.identity.subject in subjects
        ]
        for participant in doomed:
            self._remove(participant, code, error, message)
        return len(doomed)

    def _remove(self, participant: Participant, code: CloseCode, error: ErrorCode, message: str) -> None:
        outlet = participant.outlet
        self.leave(participant, error.value)
        if outlet is not None:
            outlet.close(code, error, message)

    def _joined_frame(self, participant: Participant, token: str, *, resumed: bool) -> dict[str, Any]:
        return {
            "type": "joined",
            "v": 1,
            "consultation": participant.room.consultation,
            "you": participant.info(),
            "peers": [p.info() for p in participant.room.others(participant)],
            "resumeToken": token,
            "graceSeconds": self._limits.grace_seconds,
            "resumed": resumed,
        }

    @staticmethod
    def _presence(participant: Participant, state: Presence, reason: str | None = None) -> dict[str, Any]:
        info = participant.info()
        info["state"] = state.value
        frame: dict[str, Any] = {"type": "presence", "state": state.value, "participant": info}
        if reason is not None:
            frame["reason"] = reason
        return frame

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
        self._sink.emit(
            RoomEvent(
                room.consultation,
                kind,
                identity.subject,
                identity.role,
                identity.region,
                participant,
                detail,
                address,
            )
        )
