"""Who is asking: one :class:`Subject`, however they proved it (session, device, invitation).

A subject's :attr:`~Subject.ref` is the one string that names it in audit entries, session
logs, invitation claims and TURN usernames: ``u<user id>`` for a user, ``d<device id>`` for
a head-camera device, anything else for an invitation's holder (``inv-…``). It
is pseudonymous. Its grammar is :mod:`woundcare.refs` (which records/ can import too);
:meth:`Subject.user_ref`, :meth:`Subject.device_ref` and :meth:`Subject.parse` are that
module's functions, here for auth's callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import refs
from ..db.models import StaffRole
from ..refs import Kind

__all__ = ["Kind", "Subject"]


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is asking, with their staff roles per region id."""

    ref: str
    """``u<user id>``, ``d<device id>`` or an invitation's subject: pseudonymous, safe for
    audit and TURN usernames."""
    display_name: str
    roles: Mapping[int, frozenset[StaffRole]] = field(default_factory=dict)
    user_id: int | None = None
    device_id: int | None = None
    """Set for a head-camera device: it acts for its nurse, in its one region, for the call."""
    session_id: str | None = None
    invitation: str | None = None
    """The consultation an invitation-token holder (e.g. an interpreter) was invited to."""

    user_ref = staticmethod(refs.user_ref)
    device_ref = staticmethod(refs.device_ref)
    parse = staticmethod(refs.parse)
