"""The rules of a room as tables: no server, no sockets, no event loop."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from signaling.admission import Identity
from signaling.protocol import (
    MESSAGE_TYPES,
    Annotation,
    Answer,
    Chat,
    DrawOp,
    Freeze,
    ClientMessage,
    ErrorCode,
    IceRestart,
    Offer,
    Presence,
    ProtocolError,
    Role,
    Shape,
    SnapshotRequest,
    VideoMode,
    VideoProfile,
    VideoProfileMessage,
)
from signaling.rules import ANSWERER_SENDS, Place, Route, check_send, nurse_place, route, sends_for
from signaling.sink import EventKind


@dataclass(frozen=True)
class Seat:
    id: str
    role: Role
    state: Presence = Presence.JOINED
    subject: str = ""


NURSE, SPECIALIST, OBSERVER = "nurse1", "spec1", "obs1"
ROOM = {
    NURSE: Seat(NURSE, Role.NURSE),
    SPECIALIST: Seat(SPECIALIST, Role.SPECIALIST),
    OBSERVER: Seat(OBSERVER, Role.OBSERVER),
}
ROLE_OF = {pid: seat.role for pid, seat in ROOM.items()}


@pytest.mark.parametrize(
    ("role", "sends"),
    [
        (Role.NURSE, MESSAGE_TYPES),
        (Role.SPECIALIST, MESSAGE_TYPES),
        (Role.OBSERVER, frozenset({"answer", "candidate", "end_of_candidates", "ice_restart", "leave"})),
    ],
)
def test_what_each_role_may_send(role: Role, sends: frozenset[str]) -> None:
    assert sends_for(role) == sends
    assert Identity("u1", role, "Name", "r1").may_send == sends


def test_an_identity_keeps_the_rights_it_is_given_even_none() -> None:
    assert Identity("u1", Role.SPECIALIST, "Name", "r1", frozenset({"answer"})).may_send == {"answer"}
    assert Identity("u1", Role.SPECIALIST, "Name", "r1", frozenset()).may_send == frozenset()


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES - ANSWERER_SENDS))
def test_a_kind_outside_the_rights_is_forbidden_naming_the_rule(kind: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        check_send(ANSWERER_SENDS, kind)
    assert (refused.value.code, refused.value.message, refused.value.ref) == (
        ErrorCode.FORBIDDEN,
        "this participant may not send this message type",
        kind,
    )


@pytest.mark.parametrize("kind", sorted(ANSWERER_SENDS))
def test_a_kind_inside_the_rights_passes(kind: str) -> None:
    check_send(ANSWERER_SENDS, kind)


HELD_NURSE = Seat("n0", Role.NURSE, Presence.RECONNECTING, "u7")


@pytest.mark.parametrize(
    ("role", "subject", "seats", "place"),
    [
        (Role.NURSE, "u7", [], Place.FREE),
        (Role.NURSE, "u7", [Seat("s", Role.SPECIALIST, subject="u7")], Place.FREE),
        (Role.NURSE, "u7", [Seat("n0", Role.NURSE, Presence.JOINED, "u7")], Place.TAKEN),
        (Role.NURSE, "u8", [Seat("n0", Role.NURSE, Presence.JOINED, "u7")], Place.TAKEN),
        (Role.NURSE, "u8", [HELD_NURSE], Place.TAKEN),
        (Role.NURSE, "u7", [Seat("s", Role.SPECIALIST), HELD_NURSE], Place.HELD),
        (Role.SPECIALIST, "u7", [HELD_NURSE], Place.FREE),
        (Role.OBSERVER, "u7", [Seat("n0", Role.NURSE, subject="u7")], Place.FREE),
        (Role.OBSERVER, "u8", [HELD_NURSE], Place.FREE),
    ],
)
def test_one_nurse_per_room(role: Role, subject: str, seats: list[Seat], place: Place) -> None:
    found, seat = nurse_place(role, subject, seats)
    assert found is place
    assert (seat is not None) == (place is not Place.FREE)
    if place is Place.HELD:
        assert seat is HELD_NURSE


def _profile(to: str, *, active: VideoProfile | None = None) -> VideoProfileMessage:
    return VideoProfileMessage(to=to, mode=VideoMode.LOW, active=active)


@pytest.mark.parametrize(
    ("sender", "message", "expected"),
    [
        (SPECIALIST, Chat(text="hi"), Route(None)),
        (OBSERVER, Chat(text="hi"), Route(None)),
        (NURSE, Offer(to=SPECIALIST, sdp="v=0"), Route(SPECIALIST)),
        (SPECIALIST, Answer(to=NURSE, sdp="v=0"), Route(NURSE)),
        (OBSERVER, SnapshotRequest(id="r1"), Route(NURSE, EventKind.SNAPSHOT_REQUESTED, "r1")),
        (SPECIALIST, IceRestart(to=NURSE), Route(NURSE, EventKind.ICE_RESTART)),
        (SPECIALIST, _profile(NURSE), Route(NURSE, EventKind.VIDEO_PROFILE_ASKED, "low")),
        (NURSE, _profile(OBSERVER, active=VideoProfile.LOW), Route(OBSERVER, EventKind.VIDEO_PROFILE, "low/low")),
        (NURSE, _profile(OBSERVER), Route(OBSERVER, EventKind.VIDEO_PROFILE, "-/low")),
    ],
)
def test_where_a_frame_goes_and_what_it_makes(sender: str, message: ClientMessage, expected: Route) -> None:
    assert route(message, sender, ROLE_OF[sender], ROOM) == expected


@pytest.mark.parametrize(
    ("sender", "message", "code", "seats"),
    [
        (SPECIALIST, Offer(to="nobody", sdp="v=0"), ErrorCode.UNKNOWN_PEER, ROOM),
        (SPECIALIST, Offer(to=SPECIALIST, sdp="v=0"), ErrorCode.UNKNOWN_PEER, ROOM),
        (NURSE, SnapshotRequest(id="r1"), ErrorCode.FORBIDDEN, ROOM),
        (SPECIALIST, SnapshotRequest(id="r1"), ErrorCode.UNKNOWN_PEER, {SPECIALIST: ROOM[SPECIALIST]}),
        (OBSERVER, _profile(SPECIALIST), ErrorCode.FORBIDDEN, ROOM),
        (NURSE, _profile("nurse2"), ErrorCode.FORBIDDEN, {**ROOM, "nurse2": Seat("nurse2", Role.NURSE)}),
    ],
)
def test_frames_the_room_refuses(
    sender: str, message: ClientMessage, code: ErrorCode, seats: dict[str, Seat]
) -> None:
    with pytest.raises(ProtocolError) as refused:
        route(message, sender, ROLE_OF[sender], seats)
    assert (refused.value.code, refused.value.ref) == (code, message.type)


def _stroke(to: str, shape: Shape = Shape.ARROW) -> Annotation:
    return Annotation(to=to, op=DrawOp.STROKE, id="s-1", shape=shape, points=[[0.1, 0.2], [0.3, 0.4]], color="#00E5FF")


def _freeze(to: str, on: bool = True) -> Freeze:
    return Freeze(to=to, on=on, id="f-1", still="req-1" if on else None)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (_stroke(NURSE), Route(NURSE, EventKind.ANNOTATION, "stroke/arrow")),
        (_stroke(NURSE, Shape.FREE), Route(NURSE, EventKind.ANNOTATION, "stroke/free")),
        (_stroke(NURSE, Shape.CIRCLE), Route(NURSE, EventKind.ANNOTATION, "stroke/circle")),
        (Annotation(to=NURSE, op=DrawOp.UNDO, id="u-1"), Route(NURSE, EventKind.ANNOTATION, "undo")),
        (Annotation(to=NURSE, op=DrawOp.CLEAR, id="c-1", still="req-1"), Route(NURSE, EventKind.ANNOTATION, "clear")),
        (Annotation(to=NURSE, op=DrawOp.POINTER, points=[[0.5, 0.5]]), Route(NURSE)),
        (_freeze(NURSE), Route(NURSE, EventKind.FREEZE, "on")),
        (_freeze(NURSE, on=False), Route(NURSE, EventKind.FREEZE, "off")),
    ],
)
def test_a_specialist_draws_for_the_nurse_and_the_log_has_no_coordinates(message: ClientMessage, expected: Route) -> None:
    assert route(message, SPECIALIST, Role.SPECIALIST, ROOM) == expected


SECOND_SPECIALIST = "spec2"


@pytest.mark.parametrize(
    ("sender", "message", "code"),
    [
        (OBSERVER, _stroke(NURSE), ErrorCode.FORBIDDEN),
        (OBSERVER, _freeze(NURSE), ErrorCode.FORBIDDEN),
        (NURSE, _stroke(SPECIALIST), ErrorCode.FORBIDDEN),
        (NURSE, _freeze(SPECIALIST), ErrorCode.FORBIDDEN),
        (SPECIALIST, _stroke(OBSERVER), ErrorCode.FORBIDDEN),
        (SPECIALIST, _stroke(SECOND_SPECIALIST), ErrorCode.FORBIDDEN),
        (SPECIALIST, _freeze(OBSERVER), ErrorCode.FORBIDDEN),
        (SPECIALIST, _stroke("nobody"), ErrorCode.UNKNOWN_PEER),
        (SPECIALIST, _freeze(SPECIALIST), ErrorCode.UNKNOWN_PEER),
    ],
)
def test_telestration_goes_from_a_specialist_to_the_nurse_only(sender: str, message: ClientMessage, code: ErrorCode) -> None:
    seats = {**ROOM, SECOND_SPECIALIST: Seat(SECOND_SPECIALIST, Role.SPECIALIST)}
    with pytest.raises(ProtocolError) as refused:
        route(message, sender, ROLE_OF[sender], seats)
    assert (refused.value.code, refused.value.ref) == (code, message.type)


@pytest.mark.parametrize("kind", ["annotation", "freeze"])
def test_an_observer_may_not_draw(kind: str) -> None:
    assert kind in sends_for(Role.SPECIALIST)
    with pytest.raises(ProtocolError) as refused:
        check_send(sends_for(Role.OBSERVER), kind)
    assert refused.value.code is ErrorCode.FORBIDDEN
