"""Who is asking: one :class:`Subject`, however they proved it (session, device, invitation).

A subject's :attr:`~Subject.ref` is the one string that names it in audit entries, session
logs, invitation claims and TURN usernames: ``u<user id>`` for a user, ``d<device id>`` for
a head-camera device, anything else for an invitation's holder (``inv-…``, ``rec-…``). It
is pseudonymous. :meth:`Subject.user_ref`, :meth:`Subject.device_ref` and
:meth:`Subject.parse` are the only places that write or read that format.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..db.models import Role


class Kind(str, enum.Enum):
    USER = "u"
    DEVICE = "d"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is asking, with their staff roles per region id."""

    ref: str
    """``u<user id>``, ``d<device id>`` or an invitation's subject: pseudonymous, safe for
    audit and TURN usernames."""
    display_name: str
    roles: Mapping[int, frozenset[Role]] = field(default_factory=dict)
    user_id: int | None = None
    device_id: int | None = None
    """Set for a head-camera device: it acts for its nurse, in its one region, for the call."""
    session_id: str | None = None
    invitation: str | None = None
    """The consultation an invitation-token holder (e.g. an interpreter) was invited to."""

    @staticmethod
    def user_ref(user_id: int) -> str:
        return f"{Kind.USER.value}{user_id}"

    @staticmethod
    def device_ref(device_id: int) -> str:
        return f"{Kind.DEVICE.value}{device_id}"

    @staticmethod
    def parse(ref: str) -> tuple[Kind, int] | None:
        """The kind and id a user's or a device's ref names; None for any other ref."""
        head, number = ref[:1], ref[1:]
        if head not in (Kind.USER.value, Kind.DEVICE.value) or not number.isascii() or not number.isdigit():
            return None
        return Kind(head), int(number)
