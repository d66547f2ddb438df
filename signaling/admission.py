"""Who may join a room: the one question signaling asks the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .protocol import Join, Role


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a socket speaks for, as decided at join time."""

    subject: str
    """Stable, non-identifying id of the actor (user or device id), for audit."""
    role: Role
    display_name: str
    """Shown to the others in the room (name and role are required in health video calls)."""
    region: str
    """The pilot region the consultation belongs to."""
    may_send: frozenset[str] = frozenset()  # empty = rules.sends_for(role)
    """The message kinds this socket may send, as the application's policy decided at join."""


class Admission(Protocol):
    async def admit(self, join: Join, address: str | None) -> Identity:
        """Return who joins, or raise :class:`signaling.protocol.ProtocolError`
        with ``TOKEN_INVALID``, ``TOKEN_EXPIRED``, ``WRONG_CONSULTATION`` or ``FORBIDDEN``."""
        ...
