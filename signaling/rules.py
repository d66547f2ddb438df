"""The rules of a room, as pure functions: who may send what, where a frame goes, which
session-log event it makes, and how many nurses a room holds.

Nothing here touches a socket, a timer or Redis, so each rule is table-tested in
milliseconds (``tests/signaling/test_rules.py``), and both room directories
(:mod:`signaling.directory`) and :class:`signaling.rooms.Rooms` ask the same functions.
The Redis directory's join script repeats :func:`nurse_place` in Lua because Redis must
decide it atomically; the shared backend tests hold the two to the same cases.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple, Protocol

from .protocol import (
    MESSAGE_TYPES,
    Annotation,
    Chat,
    DrawOp,
    Freeze,
    ClientMessage,
    ErrorCode,
    IceRestart,
    Presence,
    ProtocolError,
    Role,
    SnapshotRequest,
    VideoProfileMessage,
)
from .sink import EventKind

# -- who may send what ------------------------------------------------------------------

ANSWERER_SENDS: Final = frozenset({"answer", "candidate", "end_of_candidates", "ice_restart", "leave"})
"""What a participant that only answers may send: no chat, no snapshot request, no offer, no
video profile, no drawing: an observer (a guest: interpreter, relative, GP), who sees and
hears the call and is heard, but takes no photos and steers nothing."""

_EVERYTHING: Final = MESSAGE_TYPES

SEND_REFUSED: Final = "this participant may not send this message type"


def sends_for(role: Role) -> frozenset[str]:
    """The message kinds a role may send when the application decides nothing narrower."""
    return ANSWERER_SENDS if role is Role.OBSERVER else _EVERYTHING


def check_send(may_send: frozenset[str], kind: str) -> None:
    """Refuse a message kind this socket may not send. The words name the rule, not whose
    rights these are: the rights come from ``authorize`` and may narrow any participant."""
    if kind not in may_send:
        raise ProtocolError(ErrorCode.FORBIDDEN, SEND_REFUSED, kind)


# -- one nurse ----------------------------------------------------------------------------


class Seat(Protocol):
    """A place in a room, as the one-nurse rule sees it."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def state(self) -> Presence: ...
    @property
    def subject(self) -> str: ...


class Place(enum.Enum):
    """What a join finds where its role has a limited number of places."""

    FREE = "free"
    """Join beside the others."""
    TAKEN = "taken"
    """Refused with ``role_taken``."""
    HELD = "held"
    """The same subject's place, held for a grace window with no socket: released, then joined."""


def nurse_place(role: Role, subject: str, seats: Iterable[Seat]) -> tuple[Place, Seat | None]:
    """One nurse camera per room. A nurse who comes back without her resume token (a new
    tab, another phone) takes her own held place over at once instead of waiting out the
    grace window; anyone else's nurse, joined or reconnecting, keeps it."""
    if role is not Role.NURSE:
        return Place.FREE, None
    for seat in seats:
        if seat.role is Role.NURSE:
            if seat.state is Presence.RECONNECTING and seat.subject == subject:
                return Place.HELD, seat
            return Place.TAKEN, seat
    return Place.FREE, None


def role_taken() -> ProtocolError:
    return ProtocolError(ErrorCode.ROLE_TAKEN, "this consultation already has a nurse camera", "join")


# -- where a frame goes, and what it makes ------------------------------------------------


class Route(NamedTuple):
    """Where one relayed frame goes, and the session-log event it makes, if any (a tuple:
    one is made per relayed frame, and a frozen dataclass costs twice as much to build)."""

    to: str | None
    """One participant id, or None: everyone in the room but the sender."""
    event: EventKind | None = None
    detail: str | None = None
    """The event's detail: never message content."""


_EVERYONE: Final = Route(None)


def addressed_event(message: ClientMessage, sender: Role, target: Role) -> tuple[EventKind, str | None] | None:
    """Refuse an addressed frame going the wrong way; the session-log event it makes, if any.

    Video profiles travel between the nurse's camera and a viewer only; telestration from a
    specialist to the nurse only."""
    if isinstance(message, IceRestart):
        return EventKind.ICE_RESTART, None
    if isinstance(message, Annotation | Freeze):
        if sender is not Role.SPECIALIST or target is not Role.NURSE:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only a specialist draws, for the nurse camera", message.type)
        if isinstance(message, Freeze):
            return EventKind.FREEZE, "on" if message.on else "off"
        if message.op is DrawOp.POINTER:
            return None  # transient: never logged
        return EventKind.ANNOTATION, f"{message.op.value}/{message.shape.value}" if message.shape else message.op.value
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


def route(message: ClientMessage, sender: str, role: Role, seats: Mapping[str, Seat]) -> Route:
    """Where the frame of a joined participant (id ``sender``, in ``role``) goes; ``seats``
    is everyone in the room by id, on every instance."""
    if isinstance(message, Chat):
        return _EVERYONE
    if isinstance(message, SnapshotRequest):
        if role is Role.NURSE:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only viewers request snapshots", message.type)
        nurse = next((pid for pid, seat in seats.items() if seat.role is Role.NURSE), None)
        if nurse is None:
            raise ProtocolError(ErrorCode.UNKNOWN_PEER, "no nurse camera in this room", message.type)
        return Route(nurse, EventKind.SNAPSHOT_REQUESTED, message.id)
    # Offer, answer, candidate, end_of_candidates, ice_restart, video_profile, annotation,
    # freeze: to one peer.
    target: str = message.to  # type: ignore[union-attr]
    seat = seats.get(target)
    if seat is None or target == sender:
        raise ProtocolError(ErrorCode.UNKNOWN_PEER, "no such participant in this room", message.type)
    event = addressed_event(message, role, seat.role)
    if event is None:
        return Route(target)
    return Route(target, *event)
