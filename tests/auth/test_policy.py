"""authorize(), table-tested: every role x action x own/other region, devices, invitation
holders and signaling rooms, against the matrix in docs/security.md. No server, no database."""

from __future__ import annotations

import pytest

from signaling import protocol
from signaling.rules import ANSWERER_SENDS
from tests.auth.matrix import ROLES, allowed_by_action
from woundcare.auth.policy import Action, Denied, Grant, InRegion, Room, authorize, regions_for, room_role
from woundcare.auth.subject import Kind, Subject
from woundcare.db.models import StaffRole

OWN, OTHER = 1, 2
MATRIX = allowed_by_action()
DEVICE_MAY = {
    "session.read", "regions.list", "ice_servers.get", "patient.list", "patient.read", "consultation.start",
    "consultation.read", "consultation.join", "consultation.end", "consent.record", "snapshot.upload",
    "snapshot.read", "quality.report",
}
"""docs/security.md's "Devices" paragraph, as actions."""
OBSERVER_MAY = {"answer", "candidate", "end_of_candidates", "ice_restart", "leave"}


def user(role: StaffRole, *more: StaffRole) -> Subject:
    return Subject(Subject.user_ref(7), "Test", {OWN: frozenset({role, *more})}, user_id=7)


def allowed(subject: Subject | None, action: Action, resource: InRegion | Room | None = None) -> bool:
    try:
        grant = authorize(subject, action, resource)
    except Denied as denied:
        assert denied.action is action
        return False
    assert isinstance(grant, Grant)
    return True


def test_every_action_is_in_the_documented_matrix() -> None:
    assert set(MATRIX) == {action.value for action in Action}


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_role_by_action_by_region_matches_the_matrix(role: StaffRole) -> None:
    who = user(role)
    mismatches = []
    for action in Action:
        expected = role in MATRIX[action.value]
        got = (allowed(who, action), allowed(who, action, InRegion(OWN)), allowed(who, action, InRegion(OTHER)))
        if got != (expected, expected, False):
            mismatches.append(f"{action.value}: some region, own, other = {got}; expected {expected}")
        assert regions_for(who, action) == ([OWN] if expected else [])
    assert not mismatches, "\n".join(mismatches)


def test_the_grant_names_the_role_and_region_acted_in() -> None:
    # A user with two roles in one region acts in the first that allows, in a stable order.
    both = user(StaffRole.SPECIALIST, StaffRole.NURSE)
    assert authorize(both, Action.CONSULTATION_READ, InRegion(OWN)) == Grant(StaffRole.NURSE, OWN)
    assert authorize(both, Action.ASSESSMENT_SIGN, InRegion(OWN)) == Grant(StaffRole.SPECIALIST, OWN)
    assert authorize(both, Action.PATIENT_LIST) == Grant(StaffRole.NURSE, OWN)


def test_nobody_may_do_anything() -> None:
    assert not any(allowed(None, action) or allowed(None, action, InRegion(OWN)) for action in Action)
    # A user without memberships is somebody, and still may do nothing.
    lonely = Subject(Subject.user_ref(8), "Test", user_id=8)
    assert not any(allowed(lonely, action) for action in Action)


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
def test_a_device_acts_for_its_nurse_for_the_call_only(role: StaffRole) -> None:
    device = Subject(Subject.device_ref(3), "cam", {OWN: frozenset({role})}, user_id=7, device_id=3)
    for action in Action:
        expected = role in MATRIX[action.value] and action.value in DEVICE_MAY
        assert allowed(device, action, InRegion(OWN)) == expected, action
        assert not allowed(device, action, InRegion(OTHER)), action


def test_an_invitation_holder_fetches_ice_and_joins_its_one_room() -> None:
    guest = Subject("inv-1a2b3c4d", "Tolk", {OWN: frozenset({StaffRole.SPECIALIST})}, invitation="c1")
    assert [a for a in Action if allowed(guest, a) or allowed(guest, a, InRegion(OWN))] == [Action.ICE_SERVERS]
    own_room = Room("c1", OWN, protocol.Role.OBSERVER)
    assert authorize(guest, Action.CONSULTATION_JOIN, own_room).may_send == ANSWERER_SENDS
    assert not allowed(guest, Action.CONSULTATION_JOIN, Room("c2", OWN, protocol.Role.OBSERVER))
    assert not allowed(guest, Action.CONSULTATION_JOIN, Room("c1", OTHER, protocol.Role.OBSERVER))
    assert not allowed(guest, Action.CONSULTATION_READ, own_room)


def test_a_room_grants_the_frames_of_its_wire_role() -> None:
    guest = Subject("inv-5", "Tolk", {OWN: frozenset({StaffRole.SPECIALIST})}, invitation="c1")
    in_room = authorize(guest, Action.CONSULTATION_JOIN, Room("c1", OWN, protocol.Role.OBSERVER))
    assert in_room.may_send == OBSERVER_MAY
    nurse = authorize(user(StaffRole.NURSE), Action.CONSULTATION_JOIN, Room("c1", OWN, protocol.Role.NURSE))
    assert nurse.role is StaffRole.NURSE and {"offer", "chat", "snapshot_request"} <= nurse.may_send
    # Rooms are region resources like any other for staff: another region's is refused.
    for role in ROLES:
        assert not allowed(user(role), Action.CONSULTATION_JOIN, Room("c1", OTHER, protocol.Role.SPECIALIST))
    assert not allowed(user(StaffRole.PILOT_LEAD), Action.CONSULTATION_JOIN, Room("c1", OWN, protocol.Role.SPECIALIST))
    # Outside a room nothing is granted to send.
    assert authorize(user(StaffRole.NURSE), Action.CONSULTATION_JOIN, InRegion(OWN)).may_send == frozenset()


def test_staff_join_a_room_as_camera_or_viewer() -> None:
    assert room_role(StaffRole.NURSE) is protocol.Role.NURSE
    assert room_role(StaffRole.SPECIALIST) is protocol.Role.SPECIALIST


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("u12", (Kind.USER, 12)),
        ("d3", (Kind.DEVICE, 3)),
        ("inv-1a2b3c4d", None),
        ("rec-5", None),  # the retired server-side recorder's, in older audit entries
        ("test-nurse", None),
        ("u", None),
        ("u1x", None),
        ("d-1", None),
        ("u\u0663", None),
        ("x12", None),
    ],
)
def test_a_subject_ref_parses_only_as_written(ref: str, parsed: tuple[Kind, int] | None) -> None:
    assert Subject.parse(ref) == parsed


def test_refs_round_trip() -> None:
    assert Subject.parse(Subject.user_ref(41)) == (Kind.USER, 41)
    assert Subject.parse(Subject.device_ref(41)) == (Kind.DEVICE, 41)
    assert Subject.user_ref(41) != Subject.device_ref(41)


@pytest.mark.parametrize(
    ("role", "action", "own", "other"),
    [
        # The plan back (issue 18): only a nurse acknowledges a plan or lists the open ones,
        # in her own region; the specialist who signed it does neither.
        (StaffRole.NURSE, Action.PLAN_ACKNOWLEDGE, True, False),
        (StaffRole.NURSE, Action.PLAN_LIST, True, False),
        (StaffRole.SPECIALIST, Action.PLAN_ACKNOWLEDGE, False, False),
        (StaffRole.SPECIALIST, Action.PLAN_LIST, False, False),
        (StaffRole.PILOT_LEAD, Action.PLAN_ACKNOWLEDGE, False, False),
        (StaffRole.ADMIN, Action.PLAN_LIST, False, False),
        # An e-consult is a consultation: a nurse sends it, a specialist answers it.
        (StaffRole.NURSE, Action.CONSULTATION_START, True, False),
        (StaffRole.SPECIALIST, Action.ASSESSMENT_SIGN, True, False),
        (StaffRole.NURSE, Action.ASSESSMENT_SIGN, False, False),
    ],
)
def test_the_plan_back_and_econsult_rows(role: StaffRole, action: Action, own: bool, other: bool) -> None:
    assert allowed(user(role), action, InRegion(OWN)) is own
    assert allowed(user(role), action, InRegion(OTHER)) is other


def test_a_device_neither_acknowledges_nor_lists_plans() -> None:
    # Acknowledging is the nurse's own act, on her page; her camera only sends what it sees.
    device = Subject(Subject.device_ref(3), "cam", {OWN: frozenset({StaffRole.NURSE})}, user_id=7, device_id=3)
    assert not allowed(device, Action.PLAN_ACKNOWLEDGE, InRegion(OWN))
    assert not allowed(device, Action.PLAN_LIST, InRegion(OWN))
    assert allowed(device, Action.CONSULTATION_START, InRegion(OWN))  # so it may send an e-consult
