"""What a request names, loaded only if the caller may act on it: one function for every kind.

A resource of a region where the caller may not take the action answers exactly like one
that does not exist (404), so ids tell nobody what exists in other regions. Whether the
caller may is :func:`woundcare.auth.policy.authorize`'s to say, never the handler's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

from ..appkeys import services
from ..auth.policy import Action, Denied, Placed, authorize
from .errors import api_error
from .guard import SUBJECT, audit_target

T = TypeVar("T", bound=Placed)


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    noun: str
    """Names the resource in its audit entry and in the 404."""
    find: Callable[[web.Request, str], Awaitable[T | None]]
    label: Callable[[T], str]
    """The resource's pseudonymous id, for the audit entry."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    region_id: int


async def _device(request: web.Request, key: str) -> DeviceRef | None:
    if not key.isascii() or not key.isdigit():
        return None
    region_id = await services(request).accounts.device_region(int(key))
    return None if region_id is None else DeviceRef(int(key), region_id)


CONSULTATION = Kind("consultation", lambda r, key: services(r).consultations.get(key), lambda v: v.id)
PATIENT = Kind("patient", lambda r, key: services(r).patients.find(key), lambda p: p.pseudonym)
UPLOAD_TARGET = Kind("consultation", lambda r, key: services(r).snapshots.target(key), lambda v: v.id)
"""A consultation with its snapshot consent, read in one query for an upload."""
SNAPSHOT = Kind("snapshot", lambda r, key: services(r).snapshots.get(key), lambda s: s.id)
RECORDING = Kind("recording", lambda r, key: services(r).recordings.get(key), lambda r: r.id)
DEVICE = Kind("device", _device, lambda d: str(d.id))


async def load_visible(request: web.Request, kind: Kind[T], action: Action, key: str | None = None) -> T:
    """The ``kind`` named ``key`` (by default the route's ``{id}``) if the caller may
    ``action`` it; otherwise the same 404 as for none."""
    found = await kind.find(request, request.match_info["id"] if key is None else key)
    if found is not None:
        audit_target(request, f"{kind.noun}:{kind.label(found)}", found.region_id)
        try:
            authorize(request.get(SUBJECT), action, found)
        except Denied:
            pass
        else:
            return found
    raise api_error(404, "not_found", f"no such {kind.noun}")
