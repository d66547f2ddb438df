"""What signaling tells the application: room events worth remembering.

``emit`` is synchronous and must not block: the relay path never waits on storage.
Implementations queue the event and store it elsewhere. What a client is told of (its
``joined``, the close that answers its ``leave``) waits for :meth:`EventSink.stored` first,
so a crash never loses an event a client has seen acknowledged; joins arriving together
share one write.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from .protocol import Role


class EventKind(str, enum.Enum):
    JOINED = "joined"
    RECONNECTING = "reconnecting"
    REJOINED = "rejoined"
    LEFT = "left"
    ICE_RESTART = "ice_restart"
    SNAPSHOT_REQUESTED = "snapshot_requested"
    SNAPSHOT_STORED = "snapshot_stored"
    """A photo of the consultation was stored (written by the upload, with its row); detail
    the snapshot's id."""
    VIDEO_PROFILE = "video_profile"
    """The camera changed what it sends; detail ``<active>/<mode>``, e.g. ``low/auto``."""
    VIDEO_PROFILE_ASKED = "video_profile_asked"
    """A viewer chose the camera's mode; detail the mode."""
    ANNOTATION = "annotation"
    """A specialist's telestration relayed to the nurse; detail ``<op>`` or ``<op>/<shape>``,
    never coordinates (pointers are not logged)."""
    FREEZE = "freeze"
    """A shared freeze; detail ``on`` or ``off``."""
    DENIED = "denied"
    """A join refused; detail the error code."""
    REFUSED = "refused"
    """A joined participant's frame refused by its rights or the room's rules (``forbidden``,
    e.g. an observer's ``snapshot_request``): a security event; detail the frame's type."""


@dataclass(frozen=True, slots=True)
class RoomEvent:
    consultation: str
    kind: EventKind
    subject: str | None
    role: Role | None
    region: str | None
    participant: str | None = None
    detail: str | None = None
    """A reason or error code; never message content."""
    address: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class EventSink(Protocol):
    def emit(self, event: RoomEvent) -> None: ...

    async def stored(self) -> None:
        """Return once every event emitted so far is durable; raise if it could not be stored."""
        ...


class NullSink:
    """For signaling used on its own (benchmarks, protocol tests)."""

    def emit(self, event: RoomEvent) -> None:
        return None

    async def stored(self) -> None:
        return None
