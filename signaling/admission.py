"""Who may join a room: the one question signaling asks the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from .protocol import Join, Role
from .rules import sends_for


class _ByRole(frozenset[str]):
    """The type of :data:`BY_ROLE`: a frozenset of its own, so the default is told apart
    from any set the application passes, the empty one included."""


BY_ROLE: Final = _ByRole()
"""The default of :attr:`Identity.may_send`: what :func:`signaling.rules.sends_for` gives the role."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a socket speaks for, as decided at join time."""

    subject: str
    """Stable, non-identifying id of the actor (user or device id), for audit. A nurse who
    joins again under the same subject takes over her own place held in grace."""
    role: Role
    display_name: str
    """Shown to the others in the room (name and role are required in health video calls)."""
    region: str
    """The pilot region the consultation belongs to."""
    may_send: frozenset[str] = BY_ROLE
    """The message kinds this socket may send (``type`` values); the handler refuses the
    others with ``forbidden``. Left out, the role's (:func:`signaling.rules.sends_for`)."""

    notices: tuple[dict[str, Any], ...] = ()
    """Server frames this participant gets right after its ``joined``: what the application
    knows of the room that the others were told as it happened (a recording that is on)."""

    def __post_init__(self) -> None:
        if self.may_send is BY_ROLE:
            object.__setattr__(self, "may_send", sends_for(self.role))


class Admission(Protocol):
    async def admit(self, join: Join, address: str | None) -> Identity:
        """Return who joins, or raise :class:`signaling.protocol.ProtocolError`
        with ``TOKEN_INVALID``, ``TOKEN_EXPIRED``, ``WRONG_CONSULTATION`` or ``FORBIDDEN``."""
        ...
