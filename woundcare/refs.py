"""The pseudonymous strings that name who acted, and the one grammar that writes and reads them.

A ref names a subject in audit entries, session logs, invitation claims and TURN usernames
without naming a person: ``u<user id>`` for a staff member, ``d<device id>`` for a head-camera
device and ``inv-<random>`` for a guest invited to one consultation (an interpreter, a
colleague). Only users and devices are read back (:func:`parse`); any other ref is opaque,
such as the ``rec-<recording id>`` of the server-side recorder that older session logs and
audit entries still hold.

It sits below every package that meets a ref: :mod:`woundcare.records` reads them out of the
audit trail, :mod:`woundcare.auth` builds its :class:`~woundcare.auth.subject.Subject` on them.
"""

from __future__ import annotations

import enum
import secrets


class Kind(str, enum.Enum):
    """The subjects a ref can be read back as; the value is the ref's first letter."""

    USER = "u"
    DEVICE = "d"


def user_ref(user_id: int) -> str:
    return f"{Kind.USER.value}{user_id}"


def device_ref(device_id: int) -> str:
    return f"{Kind.DEVICE.value}{device_id}"


def guest_ref() -> str:
    """A new ref for an invitation's holder: random, so two guests never share a seat."""
    return f"inv-{secrets.token_hex(4)}"


def parse(ref: str) -> tuple[Kind, int] | None:
    """The kind and id a user's or a device's ref names; None for any other ref."""
    head, number = ref[:1], ref[1:]
    if head not in (Kind.USER.value, Kind.DEVICE.value) or not number.isascii() or not number.isdigit():
        return None
    return Kind(head), int(number)
