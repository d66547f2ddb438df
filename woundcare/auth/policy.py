"""The one authorization function: may this actor do this action in this region?

Every HTTP route and every signaling join asks :func:`authorize`. The rules are one table,
:data:`RULES`, mirrored as the matrix in ``docs/security.md`` (a test keeps the two equal).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..db.models import Role
from ..errors import WoundcareError


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
    """Invite a second viewer (e.g. an interpreter) as an observer."""
    CONSULTATION_END = "consultation.end"
    CONSENT_RECORD = "consent.record"
    SNAPSHOT_UPLOAD = "snapshot.upload"
    SNAPSHOT_READ = "snapshot.read"
    SNAPSHOT_ANNOTATE = "snapshot.annotate"
    ASSESSMENT_READ = "assessment.read"
    ASSESSMENT_WRITE = "assessment.write"
    ASSESSMENT_SIGN = "assessment.sign"
    QUALITY_REPORT = "quality.report"
    """Call-quality samples from the clients, for the pilot's figures."""
    PILOT_FIGURES = "pilot.figures"
    """The pilot's figures and session log of a region, JSON and CSV exports."""
    PILOT_TRAVEL_EDIT = "pilot.travel_edit"
    """The per-municipality distances behind the travel-avoided figure."""
    FHIR_EXPORT = "fhir.export"
    """A consultation as a pseudonymous FHIR R4 Bundle."""
    TIMELINE_READ = "timeline.read"
    """A patient's wounds over time: consultations, snapshots, measurements."""
    RETENTION_MANAGE = "retention.manage"
    """See and delete consultations past their region's retention period."""
    DEVICE_ISSUE = "device.issue"
    DEVICE_REVOKE = "device.revoke"
    RECORDING_START = "recording.start"
    """Start recording the call's video (only with the patient's consent to recording)."""
    RECORDING_STOP = "recording.stop"
    RECORDING_VIEW = "recording.view"
    """List a consultation's recordings and play one back."""


_N, _S, _L, _A = Role.NURSE, Role.SPECIALIST, Role.PILOT_LEAD, Role.ADMIN

RULES: Mapping[Action, frozenset[Role]] = {
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
    Action.CONSULTATION_INVITE: frozenset({_L, _A}),
    Action.CONSULTATION_END: frozenset({_N, _S}),
    Action.CONSENT_RECORD: frozenset({_N}),
    Action.SNAPSHOT_UPLOAD: frozenset({_N, _S}),
    Action.SNAPSHOT_READ: frozenset({_N, _S}),
    Action.SNAPSHOT_ANNOTATE: frozenset({_S}),
    Action.ASSESSMENT_READ: frozenset({_N, _S}),
    Action.ASSESSMENT_WRITE: frozenset({_S}),
    Action.ASSESSMENT_SIGN: frozenset({_S}),
    Action.QUALITY_REPORT: frozenset({_N, _S}),
    Action.PILOT_FIGURES: frozenset({_L, _A}),
    Action.PILOT_TRAVEL_EDIT: frozenset({_L}),
    Action.FHIR_EXPORT: frozenset({_S, _L}),
    Action.TIMELINE_READ: frozenset({_N, _S}),
    Action.RETENTION_MANAGE: frozenset({_A}),
    Action.DEVICE_ISSUE: frozenset({_A}),
    Action.DEVICE_REVOKE: frozenset({_A}),
    Action.RECORDING_START: frozenset({_S}),
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
"""An invitation token holder may only fetch ICE servers (and join the one room, in signaling)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking, with their roles per region id."""

    subject: str
    """``u<user id>``, ``d<device id>`` or an invitation's subject: pseudonymous, safe for
    audit and TURN usernames."""
    user_id: int | None
    display_name: str
    roles: Mapping[int, frozenset[Role]] = field(default_factory=dict)
    device_id: int | None = None
    session_id: str | None = None
    invitation: str | None = None
    """The consultation an invitation-token holder (e.g. an interpreter) was invited to."""

    @property
    def limited_to(self) -> frozenset[Action] | None:
        if self.invitation is not None:
            return INVITATION_ACTIONS
        if self.device_id is not None:
            return DEVICE_ACTIONS
        return None

    def regions_for(self, action: Action) -> list[int]:
        """The regions where ``action`` is allowed."""
        limited = self.limited_to
        if limited is not None and action not in limited:
            return []
        allowed = RULES[action]
        return sorted(region for region, roles in self.roles.items() if roles & allowed)

    def role_in(self, region_id: int, action: Action) -> Role | None:
        roles = self.roles.get(region_id, frozenset()) & RULES[action]
        # A stable choice when a user holds several roles in a region.
        return min(roles, key=lambda r: list(Role).index(r)) if roles else None


class Denied(WoundcareError):
    code = "forbidden"
    status = 403
    message = "not allowed"

    def __init__(self, action: Action, region_id: int | None) -> None:
        super().__init__(f"{action.value} denied")
        self.action = action
        self.region_id = region_id


def authorize(actor: Actor | None, action: Action, region_id: int | None = None) -> Role:
    """The role under which ``actor`` may do ``action`` in ``region_id``; with no region,
    whether it may in some region (the caller then filters by :meth:`Actor.regions_for`)."""
    if actor is None:
        raise Denied(action, region_id)
    limited = actor.limited_to
    if limited is not None and action not in limited:
        raise Denied(action, region_id)
    if region_id is None:
        regions = actor.regions_for(action)
        if not regions:
            raise Denied(action, None)
        region_id = regions[0]
    role = actor.role_in(region_id, action)
    if role is None:
        raise Denied(action, region_id)
    return role
