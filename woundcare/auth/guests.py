"""A guest's credentials: the one-time link's code and the browser cookie it is exchanged for.

Both are random bearer secrets (:mod:`.tokens`), stored only as hashes by
:class:`woundcare.records.guests.Guests`. The code travels in the link's fragment (``#``),
which browsers never send to a server, so it is in no access log; the guest page posts it
once and drops it from the address bar. Docs: docs/protocol.md §3.4.
"""

from __future__ import annotations

from ..db.models import StaffRole
from ..records.guests import Guest
from .subject import Subject
from .tokens import new_token

COOKIE = "wc_guest"
LINK_PREFIX = "wcg"
COOKIE_PREFIX = "wcgc"
PAGE = "/guest"
"""The guest page; the link is ``<base url>/guest#<code>``."""


def new_link_code() -> str:
    return new_token(LINK_PREFIX)


def new_cookie() -> str:
    return new_token(COOKIE_PREFIX)


def guest_subject(ref: str, name: str, consultation: str, region_id: int | None) -> Subject:
    """A guest of one consultation: of its region for the policy, limited to what an
    invitation's holder may do (:data:`woundcare.auth.policy.INVITATION_ACTIONS`) and its own room."""
    roles = {region_id: frozenset({StaffRole.SPECIALIST})} if region_id is not None else {}
    return Subject(ref, name, roles, invitation=consultation)


def subject_of_guest(guest: Guest) -> Subject:
    return guest_subject(guest.subject, guest.kind.value, guest.consultation, guest.region_id)
