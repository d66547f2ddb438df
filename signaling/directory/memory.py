"""The rooms' shared state in this process: one instance, the default.

Every participant is local, so nothing ever travels between instances, and every call
returns before the caller's next line: the relay stays synchronous end to end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from ..protocol import Presence, Role
from ..rules import Place, nurse_place
from . import Claimed, Envelope, Inbox, Joined, Member, Refused


class MemoryDirectory:
    def __init__(self, instance: str = "local") -> None:
        self.instance = instance
        self._rooms: dict[str, dict[str, Member]] = {}
        self._held: dict[tuple[str, str], deque[str]] = {}
        self._inbox: Inbox | None = None

    @asynccontextmanager
    async def connected(self, inbox: Inbox) -> AsyncIterator[None]:
        self._inbox = inbox
        try:
            yield
        finally:
            self._inbox = None

    async def join(self, member: Member) -> Joined | Refused:
        room = self._rooms.setdefault(member.consultation, {})
        if member.id in room:
            return Refused.IN_USE
        place, seat = nurse_place(member.role, member.subject, room.values())
        if place is Place.TAKEN:
            return Refused.TAKEN
        # Past TAKEN, a seat is the newcomer's own held place (Place.HELD).
        released = self._remove(room[seat.id]) if seat is not None else None
        room = self._rooms.setdefault(member.consultation, {})  # _remove drops a room left empty
        room[member.id] = member
        return Joined(list(room.values()), released)

    async def claim(self, consultation: str, role: Role, digest: bytes, new_digest: bytes) -> Claimed | Refused:
        # A room holds a handful of members: looked for there, a resume token costs no index entry.
        room = self._rooms.get(consultation, {})
        member = next((m for m in room.values() if m.digest == digest), None)
        if member is None:
            return Refused.UNKNOWN
        if member.role is not role:
            return Refused.OTHER_ROLE
        claimed = replace(member, instance=self.instance, state=Presence.JOINED, digest=new_digest, deadline=None)
        room[member.id] = claimed
        held = self._held.pop((consultation, member.id), ())
        return Claimed(claimed, member.instance, list(held), list(room.values()))

    def mark(self, member: Member) -> None:
        stored = self._owned(member)
        if stored is not None and stored.state is Presence.JOINED:
            self._rooms[member.consultation][member.id] = replace(
                stored, state=Presence.RECONNECTING, deadline=member.deadline
            )

    def hold(self, member: Member, text: str, capacity: int) -> None:
        stored = self._owned(member)
        if stored is not None and stored.state is Presence.RECONNECTING:
            key = (member.consultation, member.id)
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = deque(maxlen=capacity)
            held.append(text)

    def discard(self, member: Member) -> None:
        stored = self._owned(member)
        if stored is not None:
            self._remove(stored)

    async def expire(self, member: Member) -> bool:
        stored = self._owned(member)
        if stored is None or stored.state is not Presence.RECONNECTING:
            return False
        self._remove(stored)
        return True

    def send(self, instance: str, envelope: Envelope) -> None:
        # One instance: every participant is here.
        self.publish(envelope)

    def publish(self, envelope: Envelope) -> None:
        if envelope.consultation in self._rooms and self._inbox is not None:
            self._inbox.receive(envelope)

    def close(self, envelope: Envelope) -> None:
        for member in list(self._rooms.get(envelope.consultation, {}).values()):
            self._remove(member)
        if self._inbox is not None:
            self._inbox.receive(envelope)

    async def members(self, consultations: list[str]) -> list[list[Member]]:
        return [list(self._rooms.get(c, {}).values()) for c in consultations]

    def _owned(self, member: Member) -> Member | None:
        """The stored record of ``member`` if this instance still owns it under its digest."""
        stored = self._rooms.get(member.consultation, {}).get(member.id)
        if stored is None or stored.instance != self.instance or stored.digest != member.digest:
            return None
        return stored

    def _remove(self, member: Member) -> Member:
        room = self._rooms[member.consultation]
        del room[member.id]
        if not room:
            del self._rooms[member.consultation]
        self._held.pop((member.consultation, member.id), None)
        return member
