"""The one authorization function: may this subject do this action to this resource?

Every HTTP route (through ``woundcare/api/guard.py`` and ``woundcare/api/visible.py``) and
every signaling join (``woundcare/auth/join.py``) asks :func:`authorize`, which decides role
x region x resource in one place and, for a room, which frames the socket may send. The
rules are one table, :data:`RULES`, mirrored as the matrix in ``docs/security.md`` (a test
keeps the two equal); ``tests/auth/test_policy.py`` walks every role x action x region.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from signaling import protocol, rules

from ..db.models import StaffRole
from ..errors import WoundcareError
from .subject import Subject


class Action(str, enum.Enum):
    SESSION_READ = "session.read"
    REGIONS_LIST = "regions.list"
    ICE_SERVERS = "ice_servers.get"
    PATIENT_CREATE = "patient.create"
    PATIENT_LIST = "patient.list"
    PATIENT_READ = "patient.read"
    PATIENT_ACCESS_LOG = "patient.access_log"
    """Who opened a patient's records: produced for the patient on request."""
    CONSULTATION_START = "consultation.start"
    CONSULTATION_QUEUE = "consultation.queue"
    CONSULTATION_READ = "consultation.read"
    CONSULTATION_JOIN = "consultation.join"
    """Signaling join: a nurse as the camera, a specialist as a viewer."""
    CONSULTATION_INVITE = "consultation.invite"
    """Invite a guest (an interpreter, a relative, the GP) into the call as an observer by a
    one-time link, see the consultation's guests and withdraw one. Only specialists: the
    specialist leads the call, and a pilot lead or an admin, who may not join a call, must
    not be able to watch one through a guest link (least privilege)."""
    CONSULTATION_END = "consultation.end"
    CONSENT_RECORD = "consent.record"
    SNAPSHOT_UPLOAD = "snapshot.upload"
    SNAPSHOT_READ = "snapshot.read"
    SNAPSHOT_ANNOTATE = "snapshot.annotate"
    ASSESSMENT_READ = "assessment.read"
    ASSESSMENT_WRITE = "assessment.write"
    ASSESSMENT_SIGN = "assessment.sign"
    PLAN_ACKNOWLEDGE = "plan.acknowledge"
    """The nurse has received a signed assessment's plan (once; audited)."""
    PLAN_LIST = "plan.list"
    """The signed plans of the nurse's regions that nobody has acknowledged yet."""
    QUALITY_REPORT = "quality.report"
    """Call-quality samples from the clients, for the pilot's figures."""
    PILOT_FIGURES = "pilot.figures"
    """The pilot's figures and session log of a region, JSON and CSV exports."""
    PILOT_TRAVEL_EDIT = "pilot.travel_edit"
    """The per-municipality distances behind the travel-avoided figure."""
    FHIR_EXPORT = "fhir.export"
    """A consultation as a pseudonymous FHIR R4 Bundle."""
    JOURNAL_EXPORT = "journal.export"
    """A signed assessment for the patient's journal: identified (name, national id), as a
    FHIR document Bundle or a PDF note. The region's clinicians only: pilot leads see
    pseudonymous figures, never identities."""
    TIMELINE_READ = "timeline.read"
    """A patient's wounds over time: consultations, snapshots, measurements."""
    RETENTION_MANAGE = "retention.manage"
    """See and delete consultations past their region's retention period."""
    DEVICE_ISSUE = "device.issue"
    DEVICE_REVOKE = "device.revoke"
    RECORDING_START = "recording.start"
    """Start recording the call's video (only with the patient's consent to recording)."""
    RECORDING_UPLOAD = "recording.upload"
    """Send the recording made in one's browser, piece by piece (only the one who started it)."""
    RECORDING_STOP = "recording.stop"
    RECORDING_VIEW = "recording.view"
    """List a consultation's recordings and play one back."""


_N, _S, _L, _A = StaffRole.NURSE, StaffRole.SPECIALIST, StaffRole.PILOT_LEAD, StaffRole.ADMIN

RULES: Mapping[Action, frozenset[StaffRole]] = {
    Action.SESSION_READ: frozenset({_N, _S, _L, _A}),
    Action.REGIONS_LIST: frozenset({_N, _S, _L, _A}),
    Action.ICE_SERVERS: frozenset({_N, _S}),
    Action.PATIENT_CREATE: frozenset({_N}),
    Action.PATIENT_LIST: frozenset({_N, _S}),
    Action.PATIENT_READ: frozenset({_N, _S}),
    Action.PATIENT_ACCESS_LOG: frozenset({_A}),
    Action.CONSULTATION_START: frozenset({_N}),
    Action.CONSULTATION_QUEUE: frozenset({_S}),
    Action.CONSULTATION_READ: frozenset({_N, _S}),
    Action.CONSULTATION_JOIN: frozenset({_N, _S}),
    Action.CONSULTATION_INVITE: frozenset({_S}),
    Action.CONSULTATION_END: frozenset({_N, _S}),
    Action.CONSENT_RECORD: frozenset({_N}),
    Action.SNAPSHOT_UPLOAD: frozenset({_N, _S}),
    Action.SNAPSHOT_READ: frozenset({_N, _S}),
    Action.SNAPSHOT_ANNOTATE: frozenset({_S}),
    Action.ASSESSMENT_READ: frozenset({_N, _S}),
    Action.ASSESSMENT_WRITE: frozenset({_S}),
    Action.ASSESSMENT_SIGN: frozenset({_S}),
    Action.PLAN_ACKNOWLEDGE: frozenset({_N}),
    Action.PLAN_LIST: frozenset({_N}),
    Action.QUALITY_REPORT: frozenset({_N, _S}),
    Action.PILOT_FIGURES: frozenset({_L, _A}),
    Action.PILOT_TRAVEL_EDIT: frozenset({_L}),
    Action.FHIR_EXPORT: frozenset({_S, _L}),
    Action.JOURNAL_EXPORT: frozenset({_N, _S}),
    Action.TIMELINE_READ: frozenset({_N, _S}),
    Action.RETENTION_MANAGE: frozenset({_A}),
    Action.DEVICE_ISSUE: frozenset({_A}),
    Action.DEVICE_REVOKE: frozenset({_A}),
    Action.RECORDING_START: frozenset({_S}),
    Action.RECORDING_UPLOAD: frozenset({_S}),
    Action.RECORDING_STOP: frozenset({_S}),
    Action.RECORDING_VIEW: frozenset({_S}),
}

DEVICE_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.SESSION_READ,
        Action.REGIONS_LIST,
        Action.ICE_SERVERS,
        Action.PATIENT_LIST,
        Action.PATIENT_READ,
        Action.CONSULTATION_START,
        Action.CONSULTATION_READ,
        Action.CONSULTATION_JOIN,
        Action.CONSULTATION_END,
        Action.CONSENT_RECORD,
        Action.SNAPSHOT_UPLOAD,
        Action.SNAPSHOT_READ,
        Action.QUALITY_REPORT,
    }
)
"""A head-camera device acts for its nurse in its one region, and only for the call."""

INVITATION_ACTIONS: frozenset[Action] = frozenset({Action.ICE_SERVERS})
"""An invitation token holder may only fetch ICE servers (and join its one :class:`Room`)."""


class Placed(Protocol):
    """A resource of one region: a consultation, patient, snapshot, recording, device..."""

    @property
    def region_id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class InRegion:
    """A resource named by its region alone (a region code in a request, a device's region)."""

    region_id: int


@dataclass(frozen=True, slots=True)
class Room:
    """A consultation's signaling room, entered in the wire role a token grants."""

    consultation: str
    region_id: int
    role: protocol.Role


@dataclass(frozen=True, slots=True)
class Grant:
    """What :func:`authorize` allowed: the staff role the subject acts in (for audit), where,
    and in a :class:`Room` the message kinds its socket may send."""

    role: StaffRole
    region_id: int
    may_send: frozenset[str] = frozenset()


class Denied(WoundcareError):
    code = "forbidden"
    status = 403
    message = "not allowed"

    def __init__(self, action: Action, region_id: int | None) -> None:
        super().__init__(f"{action.value} denied")
        self.action = action
        self.region_id = region_id


def limited_to(subject: Subject) -> frozenset[Action] | None:
    """The only actions a device or an invitation's holder may take; None: no such limit."""
    if subject.invitation is not None:
        return INVITATION_ACTIONS
    if subject.device_id is not None:
        return DEVICE_ACTIONS
    return None


def regions_for(subject: Subject, action: Action) -> list[int]:
    """The regions where ``subject`` may ``action``: what a list of resources may show."""
    limited = limited_to(subject)
    if limited is not None and action not in limited:
        return []
    allowed = RULES[action]
    return sorted(region for region, roles in subject.roles.items() if roles & allowed)


_RANK = {role: rank for rank, role in enumerate(StaffRole)}
"""A role's place in :class:`StaffRole`'s order (asked on every join and request)."""


def role_in(subject: Subject, region_id: int, action: Action) -> StaffRole | None:
    """The staff role under which ``subject`` may ``action`` in the region, if any."""
    roles = subject.roles.get(region_id, frozenset()) & RULES[action]
    # A stable choice when a user holds several roles in a region.
    return min(roles, key=_RANK.__getitem__) if roles else None


def authorize(subject: Subject | None, action: Action, resource: Placed | None = None) -> Grant:
    """Allow ``action`` on ``resource`` for ``subject``, or raise :class:`Denied`.

    Without a resource: whether the subject may ``action`` in some region (a route's first
    gate; a list then shows :func:`regions_for`). With one: whether it may in the
    resource's region. A :class:`Room` is entered by an invitation's holder for its own
    consultation only, by anyone else under :data:`RULES` like any resource.
    """
    region_id = resource.region_id if resource is not None else None
    if subject is None:
        raise Denied(action, region_id)
    if isinstance(resource, Room) and subject.invitation is not None:
        if action is not Action.CONSULTATION_JOIN or resource.consultation != subject.invitation:
            raise Denied(action, region_id)
        # The room's region must be the invitation's; the guest's role there is for the audit.
        guest = role_in(subject, resource.region_id, Action.ICE_SERVERS)
        if guest is None:
            raise Denied(action, region_id)
        return Grant(guest, resource.region_id, rules.sends_for(resource.role))
    limited = limited_to(subject)
    if limited is not None and action not in limited:
        raise Denied(action, region_id)
    if region_id is None:
        regions = regions_for(subject, action)
        if not regions:
            raise Denied(action, None)
        region_id = regions[0]
    role = role_in(subject, region_id, action)
    if role is None:
        raise Denied(action, region_id)
    return Grant(role, region_id, rules.sends_for(resource.role) if isinstance(resource, Room) else frozenset())


def room_role(role: StaffRole) -> protocol.Role:
    """The wire role a staff member joins a room in: a nurse is the camera, a specialist
    (the only other role that may join) a viewer."""
    return protocol.Role.NURSE if role is StaffRole.NURSE else protocol.Role.SPECIALIST
