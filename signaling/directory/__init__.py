"""Where the rooms' shared state lives: who is in which room, on which instance, in which
state, which resume token is live, and the frames held for a participant who is away.

:class:`signaling.rooms.Rooms` keeps each participant's socket and decides everything a
frame needs from its own copy of each room's :class:`Member` list; a :class:`Directory`
keeps the state several instances must agree on and carries :class:`Envelope` s to the
instance that holds a participant. Two directories, chosen by :func:`create_directory`:

- :class:`signaling.directory.memory.MemoryDirectory`: one process (the default); every
  participant is local and nothing ever travels.
- :class:`signaling.directory.redis.RedisDirectory`: several instances sharing a Redis;
  its Lua scripts decide atomically what all instances must agree on.

Methods that return ``None`` are queued in order and never wait (the relay path calls
them); the async ones are answered in the same order.
"""

from __future__ import annotations

import enum
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from ..protocol import CloseCode, ErrorCode, Presence, Role


@dataclass(frozen=True, slots=True)
class Member:
    """One participant as every instance sees it."""

    consultation: str
    id: str
    role: Role
    name: str
    subject: str
    region: str
    may_send: frozenset[str]
    instance: str
    """The owner: the instance holding its socket, or its place while it is reconnecting."""
    state: Presence
    """``joined`` or ``reconnecting``."""
    digest: bytes
    """SHA-256 of the live resume token (raw: two thirds of its hex text's memory)."""
    since: float
    """When it joined (Unix seconds): the room lists its members in this order."""
    deadline: float | None = None
    """While reconnecting: when its grace window ends (Unix seconds)."""

    def info(self) -> dict[str, str]:
        """As the others see it in ``joined.peers`` and ``presence``."""
        return {"id": self.id, "role": self.role.value, "name": self.name, "state": self.state.value}


@dataclass(frozen=True, slots=True)
class Closing:
    code: CloseCode
    error: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one instance tells the instances holding a room's participants (itself
    included, for :meth:`Directory.publish` and :meth:`Directory.close`)."""

    consultation: str
    text: str = ""
    """A server frame, serialized once."""
    targets: tuple[str, ...] | None = None
    """Whom it is for; None: every participant there but ``exclude``."""
    exclude: str | None = None
    update: Member | None = None
    """A member whose record changed: the receiver's copy of the room is refreshed first."""
    gone: str | None = None
    """A member that has left the room."""
    replaced: str | None = None
    """A participant that resumed on another instance: its old socket here is closed."""
    closing: Closing | None = None
    """The room has ended: every socket in it here is closed."""


class Refused(enum.Enum):
    IN_USE = "in use"
    """The participant id is taken: pick another."""
    TAKEN = "taken"
    """The one-nurse rule (:func:`signaling.rules.nurse_place`)."""
    UNKNOWN = "unknown"
    """No live resume token of that digest in that room."""
    OTHER_ROLE = "other role"
    """The resume token is for another role."""


@dataclass(frozen=True, slots=True)
class Joined:
    members: list[Member]
    """Everyone in the room now, the newcomer included, oldest first."""
    released: Member | None = None
    """The newcomer's own held place it took over, now gone."""


@dataclass(frozen=True, slots=True)
class Claimed:
    member: Member
    """As it is now: joined, on this instance, with the new digest."""
    previous: str
    """The instance that owned it before the claim."""
    held: list[str]
    """The frames held for it, oldest first; they are the claimer's to deliver."""
    members: list[Member]


class Inbox(Protocol):
    """What a directory hands to the rooms of its instance."""

    def receive(self, envelope: Envelope) -> None:
        """An envelope for participants on this instance."""

    def adopt(self, member: Member, before: Presence, members: list[Member]) -> None:
        """This instance now owns ``member`` of an instance that died (its place is held
        until ``member.deadline``); ``before`` is the state it had there."""


class Directory(Protocol):
    instance: str
    """This instance's name, unique among those sharing the directory."""

    def connected(self, inbox: Inbox) -> AbstractAsyncContextManager[None]:
        """While the application runs: envelopes and adopted members go to ``inbox``."""

    async def join(self, member: Member) -> Joined | Refused:
        """Add a member (``IN_USE``, ``TAKEN``); a nurse may release her own held place."""

    async def claim(self, consultation: str, role: Role, digest: bytes, new_digest: bytes) -> Claimed | Refused:
        """Give the member whose resume token has ``digest`` to this instance, under
        ``new_digest`` (``UNKNOWN``, ``OTHER_ROLE``)."""

    def mark(self, member: Member) -> None:
        """``member`` (owned here) is reconnecting until its deadline: hold its frames."""

    def hold(self, member: Member, text: str, capacity: int) -> None:
        """Keep a frame for a reconnecting member owned here, the newest ``capacity`` only."""

    def discard(self, member: Member) -> None:
        """Remove a member owned here, whatever its state."""

    async def expire(self, member: Member) -> bool:
        """Remove a member owned here if it is still reconnecting under the same digest;
        True if it was (else it resumed, perhaps elsewhere, or has gone)."""

    def send(self, instance: str, envelope: Envelope) -> None:
        """To the rooms of another instance, after everything sent before."""

    def publish(self, envelope: Envelope) -> None:
        """To every instance with a member in the room, this one included."""

    def close(self, envelope: Envelope) -> None:
        """Forget the room, then tell every instance that had a member in it, and this one."""

    async def members(self, consultations: list[str]) -> list[list[Member]]:
        """Everyone in each of these rooms now, on every instance."""


def create_directory(
    redis_url: str | None = None,
    *,
    instance: str = "local",
    prefix: str = "wc",
    ttl_seconds: float = 5.0,
    grace_seconds: float = 60.0,
) -> Directory:
    """In this process, or shared through Redis by every instance on the same ``redis_url``
    and ``prefix``: then ``instance`` names this one, ``ttl_seconds`` is how long it is
    thought alive after its last heartbeat, and ``grace_seconds`` how long the places of
    an instance that died are held."""
    if redis_url is None:
        from .memory import MemoryDirectory

        return MemoryDirectory(instance)
    from .redis import RedisDirectory  # redis is imported only by a cluster

    return RedisDirectory(redis_url, instance, prefix=prefix, ttl_seconds=ttl_seconds, grace_seconds=grace_seconds)
