"""One Rooms over each directory, the same cases: in memory, and over a real Redis with a
prefix of the test's own. No sockets: outlets that record what they are given."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import web

from signaling.admission import Identity
from signaling.directory import Directory
from signaling.directory.memory import MemoryDirectory
from signaling.limits import Limits
from signaling.protocol import (
    Chat,
    CloseCode,
    ErrorCode,
    Join,
    Offer,
    Presence,
    ProtocolError,
    Role,
    SnapshotRequest,
)
from signaling.rooms import Occupancy, Participant, Rooms
from signaling.sink import EventKind, RoomEvent
from tests.services import REDIS_URL

CONSULTATION = "c0nsultation"


class Outlet:
    """Keeps every frame it is given, and how it was closed."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[CloseCode, ErrorCode] | None = None

    def deliver(self, text: str) -> None:
        self.frames.append(orjson.loads(text))

    def close(self, code: CloseCode, error: ErrorCode, message: str) -> None:
        self.closed = (code, error)

    async def expect(self, kind: str, timeout: float = 3.0) -> dict[str, Any]:
        """The next frame, which must be of ``kind`` (a Redis directory delivers later)."""
        async with asyncio.timeout(timeout):
            while not self.frames:
                await asyncio.sleep(0.005)
        frame = self.frames.pop(0)
        assert frame["type"] == kind, frame
        return frame

    async def silent(self, seconds: float = 0.15) -> bool:
        await asyncio.sleep(seconds)
        assert not self.frames, self.frames
        return True


class Events:
    def __init__(self) -> None:
        self.seen: list[RoomEvent] = []
        self.storing: asyncio.Event | None = None
        """Set: :meth:`stored` waits for it, as for a slow batch write."""

    def emit(self, event: RoomEvent) -> None:
        self.seen.append(event)

    async def stored(self) -> None:
        if self.storing is not None:
            await self.storing.wait()

    def kinds(self) -> list[tuple[EventKind, str | None]]:
        return [(e.kind, e.detail) for e in self.seen]


Start = Callable[..., Awaitable[Rooms]]


@pytest.fixture(params=["memory", "redis"])
def prefix(request: pytest.FixtureRequest) -> str | None:
    """None: the memory directory; else the Redis directory, under a key prefix of this test's own."""
    return request.getfixturevalue("redis_prefix") if request.param == "redis" else None


@pytest.fixture
async def start(prefix: str | None) -> AsyncIterator[Start]:
    """``start(grace=...)`` runs one more instance's Rooms (with Redis: on the same prefix)."""
    events = Events()
    async with AsyncExitStack() as stack:

        async def start_one(grace: float = 60.0) -> Rooms:
            directory: Directory
            if prefix is None:
                directory = MemoryDirectory()
            else:
                from signaling.directory.redis import RedisDirectory

                instance = f"t{secrets.token_hex(3)}"
                directory = RedisDirectory(REDIS_URL, instance, prefix=prefix, ttl_seconds=2.0, grace_seconds=grace)
            rooms = Rooms(Limits(grace_seconds=grace), events, directory)
            await stack.enter_async_context(asynccontextmanager(rooms.running)(web.Application()))
            rooms.events = events  # type: ignore[attr-defined]
            return rooms

        yield start_one


def identity(role: Role, subject: str | None = None) -> Identity:
    return Identity(subject or f"u-{role.value}", role, f"Test {role.value}", "r1")


async def enter(rooms: Rooms, role: Role, subject: str | None = None) -> tuple[Participant, Outlet, dict[str, Any]]:
    outlet = Outlet()
    join = Join(consultation=CONSULTATION, role=role, token="t")
    participant = await rooms.enter(join, identity(role, subject), outlet)
    return participant, outlet, await outlet.expect("joined")


async def resume(rooms: Rooms, role: Role, token: str) -> tuple[Participant, Outlet, dict[str, Any]]:
    outlet = Outlet()
    participant = await rooms.reenter(Join(consultation=CONSULTATION, role=role, resume=token), outlet)
    return participant, outlet, await outlet.expect("joined")


async def refused(call: Awaitable[object]) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        await call
    return info.value.code


def drop(rooms: Rooms, participant: Participant) -> None:
    assert participant.outlet is not None
    rooms.drop(participant, participant.outlet)


async def occupancy(rooms: Rooms) -> Occupancy:
    return (await rooms.occupancy([CONSULTATION]))[CONSULTATION]


async def test_join_tells_the_newcomer_its_peers_and_the_others_the_newcomer(start: Start) -> None:
    rooms = await start()
    nurse, nurse_out, joined = await enter(rooms, Role.NURSE)
    assert (joined["you"]["id"], joined["peers"], joined["resumed"]) == (nurse.id, [], False)
    assert len(joined["resumeToken"]) == 43 and joined["graceSeconds"] == 60.0
    specialist, _, theirs = await enter(rooms, Role.SPECIALIST)
    assert theirs["peers"] == [{"id": nurse.id, "role": "nurse", "name": "Test nurse", "state": "joined"}]
    presence = await nurse_out.expect("presence")
    assert (presence["state"], presence["participant"]["id"]) == ("joined", specialist.id)
    assert rooms.events.kinds() == [(EventKind.JOINED, None)] * 2  # type: ignore[attr-defined]
    assert await occupancy(rooms) == Occupancy(Presence.JOINED, 1)
    assert (await rooms.occupancy(["elsewhere"]))["elsewhere"] == Occupancy(None, 0)


async def test_resume_inside_grace_keeps_the_place_and_the_held_frames(start: Start) -> None:
    rooms = await start()
    nurse, _, joined = await enter(rooms, Role.NURSE)
    specialist, specialist_out, _ = await enter(rooms, Role.SPECIALIST)
    drop(rooms, nurse)
    presence = await specialist_out.expect("presence")
    assert (presence["state"], presence["graceSeconds"]) == ("reconnecting", 60.0)
    assert await occupancy(rooms) == Occupancy(Presence.RECONNECTING, 1)
    rooms.relay(specialist, Chat(text="are you there?"))
    rooms.relay(specialist, Chat(text="hello?"))

    back, back_out, resumed = await resume(rooms, Role.NURSE, joined["resumeToken"])
    assert (back.id, resumed["resumed"]) == (nurse.id, True)
    assert resumed["resumeToken"] != joined["resumeToken"]
    assert [p["role"] for p in resumed["peers"]] == ["specialist"]
    assert [(await back_out.expect("chat"))["text"] for _ in range(2)] == ["are you there?", "hello?"]
    assert (await specialist_out.expect("presence"))["state"] == "rejoined"
    assert await occupancy(rooms) == Occupancy(Presence.JOINED, 1)
    # Single use, and for its own role only.
    assert await refused(resume(rooms, Role.NURSE, joined["resumeToken"])) is ErrorCode.RESUME_INVALID
    assert await refused(resume(rooms, Role.SPECIALIST, resumed["resumeToken"])) is ErrorCode.RESUME_INVALID
    again, _, _ = await resume(rooms, Role.NURSE, resumed["resumeToken"])
    assert back_out.closed == (CloseCode.CONFLICT, ErrorCode.REPLACED)  # its socket looked open
    assert again is back


async def test_a_resume_token_claims_a_place_in_its_own_consultation_only(start: Start) -> None:
    rooms = await start()
    nurse, _, joined = await enter(rooms, Role.NURSE)
    drop(rooms, nurse)
    elsewhere = Join(consultation="elsewhere", role=Role.NURSE, resume=joined["resumeToken"])
    assert await refused(rooms.reenter(elsewhere, Outlet())) is ErrorCode.RESUME_INVALID
    back, _, _ = await resume(rooms, Role.NURSE, joined["resumeToken"])
    assert back is nurse


async def test_a_second_nurse_is_refused_joined_or_reconnecting(start: Start) -> None:
    rooms = await start()
    nurse, _, _ = await enter(rooms, Role.NURSE, "u1")
    _, specialist_out, _ = await enter(rooms, Role.SPECIALIST)
    assert await refused(enter(rooms, Role.NURSE, "u2")) is ErrorCode.ROLE_TAKEN
    # Her own subject too, while her socket is open.
    assert await refused(enter(rooms, Role.NURSE, "u1")) is ErrorCode.ROLE_TAKEN
    drop(rooms, nurse)
    assert (await specialist_out.expect("presence"))["state"] == "reconnecting"
    assert await refused(enter(rooms, Role.NURSE, "u2")) is ErrorCode.ROLE_TAKEN
    denied = [e for e in rooms.events.seen if e.kind is EventKind.DENIED]  # type: ignore[attr-defined]
    assert [(e.detail, e.subject) for e in denied] == [("role_taken", "u2"), ("role_taken", "u1"), ("role_taken", "u2")]
    assert await specialist_out.silent()


async def test_a_nurse_back_without_her_token_takes_her_held_place_over_at_once(start: Start) -> None:
    rooms = await start(grace=0.5)
    nurse, _, joined = await enter(rooms, Role.NURSE, "u1")
    _, specialist_out, _ = await enter(rooms, Role.SPECIALIST)
    drop(rooms, nurse)
    assert (await specialist_out.expect("presence"))["state"] == "reconnecting"

    fresh, fresh_out, theirs = await enter(rooms, Role.NURSE, "u1")
    assert fresh.id != nurse.id and theirs["resumed"] is False
    assert [p["role"] for p in theirs["peers"]] == ["specialist"]
    left = await specialist_out.expect("presence")
    assert (left["state"], left["reason"], left["participant"]["id"]) == ("left", "replaced", nurse.id)
    presence = await specialist_out.expect("presence")
    assert (presence["state"], presence["participant"]["id"]) == ("joined", fresh.id)
    assert await refused(resume(rooms, Role.NURSE, joined["resumeToken"])) is ErrorCode.RESUME_INVALID
    # The released place's grace timer is gone with it: no timeout later.
    assert await specialist_out.silent(0.8) and await fresh_out.silent(0)
    assert await occupancy(rooms) == Occupancy(Presence.JOINED, 1)
    kinds = rooms.events.kinds()  # type: ignore[attr-defined]
    assert kinds[-2:] == [(EventKind.LEFT, "replaced"), (EventKind.JOINED, None)]


async def test_frames_go_where_the_rules_say(start: Start) -> None:
    rooms = await start()
    nurse, nurse_out, _ = await enter(rooms, Role.NURSE)
    specialist, specialist_out, _ = await enter(rooms, Role.SPECIALIST)
    observer, observer_out, _ = await enter(rooms, Role.OBSERVER)
    await nurse_out.expect("presence")
    await nurse_out.expect("presence")
    await specialist_out.expect("presence")

    rooms.relay(specialist, Chat(text="hello"))
    for outlet in (nurse_out, observer_out):
        assert (await outlet.expect("chat"))["from"] == specialist.id
    rooms.relay(nurse, Offer(to=observer.id, sdp="v=0", pc=3))
    offer = await observer_out.expect("offer")
    assert (offer["from"], offer["pc"], offer["to"]) == (nurse.id, 3, observer.id)
    rooms.relay(observer, SnapshotRequest(id="s1"))
    assert (await nurse_out.expect("snapshot_request"))["from"] == observer.id
    with pytest.raises(ProtocolError) as unknown:
        rooms.relay(specialist, Offer(to="nobody", sdp="v=0"))
    assert unknown.value.code is ErrorCode.UNKNOWN_PEER
    assert await specialist_out.silent(0.05) and await nurse_out.silent(0) and await observer_out.silent(0)
    assert rooms.events.kinds()[-1] == (EventKind.SNAPSHOT_REQUESTED, "s1")  # type: ignore[attr-defined]


async def test_leave_is_final(start: Start) -> None:
    rooms = await start()
    nurse, nurse_out, _ = await enter(rooms, Role.NURSE)
    specialist, _, joined = await enter(rooms, Role.SPECIALIST)
    await nurse_out.expect("presence")
    rooms.leave(specialist)
    left = await nurse_out.expect("presence")
    assert (left["state"], left["reason"], left["participant"]["id"]) == ("left", "left", specialist.id)
    assert await refused(resume(rooms, Role.SPECIALIST, joined["resumeToken"])) is ErrorCode.RESUME_INVALID
    assert await occupancy(rooms) == Occupancy(Presence.JOINED, 0)
    rooms.leave(nurse)
    assert len(rooms) == 0 and await occupancy(rooms) == Occupancy(None, 0)


async def test_the_grace_window_ends_once(start: Start) -> None:
    rooms = await start(grace=0.3)
    nurse, _, joined = await enter(rooms, Role.NURSE)
    _, specialist_out, _ = await enter(rooms, Role.SPECIALIST)
    drop(rooms, nurse)
    assert (await specialist_out.expect("presence"))["state"] == "reconnecting"
    left = await specialist_out.expect("presence")
    assert (left["state"], left["reason"], left["participant"]["id"]) == ("left", "timeout", nurse.id)
    assert await specialist_out.silent(0.4)
    assert await occupancy(rooms) == Occupancy(None, 1)
    assert await refused(resume(rooms, Role.NURSE, joined["resumeToken"])) is ErrorCode.RESUME_INVALID
    await enter(rooms, Role.NURSE, "someone else")  # the place is free again


async def test_publish_and_close_reach_everyone(start: Start) -> None:
    rooms = await start()
    _, nurse_out, _ = await enter(rooms, Role.NURSE)
    _, specialist_out, _ = await enter(rooms, Role.SPECIALIST)
    await nurse_out.expect("presence")
    assert rooms.publish(CONSULTATION, {"type": "snapshot_stored", "id": "x1", "request": "s1"})
    for outlet in (nurse_out, specialist_out):
        assert (await outlet.expect("snapshot_stored"))["id"] == "x1"
    rooms.close_room(CONSULTATION, CloseCode.NORMAL, ErrorCode.ENDED, "the consultation has ended")
    async with asyncio.timeout(3):
        while len(rooms):
            await asyncio.sleep(0.005)
    assert nurse_out.closed == specialist_out.closed == (CloseCode.NORMAL, ErrorCode.ENDED)
    assert await occupancy(rooms) == Occupancy(None, 0)


async def test_a_joiner_gets_its_notices_right_after_joined_and_only_it(start: Start) -> None:
    rooms = await start()
    _, nurse_out, _ = await enter(rooms, Role.NURSE)
    told = {"type": "recording", "state": "on"}
    outlet = Outlet()
    with_notice = replace(identity(Role.SPECIALIST), notices=(told,))
    await rooms.enter(Join(consultation=CONSULTATION, role=Role.SPECIALIST, token="t"), with_notice, outlet)
    await outlet.expect("joined")
    assert await outlet.expect("recording") == told
    assert (await nurse_out.expect("presence"))["state"] == "joined"
    assert await nurse_out.silent() and await outlet.silent()


@pytest.mark.parametrize("prefix", ["redis"], indirect=True)  # one process has one instance
async def test_a_nurse_takes_her_place_over_on_another_instance(start: Start) -> None:
    """Held on one instance, taken over on another: its owner forgets it, no timeout follows."""
    a, b = await start(grace=0.5), await start(grace=0.5)
    nurse, _, _ = await enter(a, Role.NURSE, "u1")
    _, specialist_out, _ = await enter(a, Role.SPECIALIST)
    drop(a, nurse)
    assert (await specialist_out.expect("presence"))["state"] == "reconnecting"
    fresh, _, theirs = await enter(b, Role.NURSE, "u1")
    assert [p["role"] for p in theirs["peers"]] == ["specialist"]
    left = await specialist_out.expect("presence")
    assert (left["state"], left["reason"], left["participant"]["id"]) == ("left", "replaced", nurse.id)
    assert (await specialist_out.expect("presence"))["participant"]["id"] == fresh.id
    assert await specialist_out.silent(0.8)
    room = a.get(CONSULTATION)
    assert room is not None and nurse.id not in room.participants and nurse.expiry is None


async def test_a_join_cancelled_while_it_is_stored_is_closed_on_record(start: Start) -> None:
    """The socket went away while its join was being written: the join is on record, so its
    leave is too (the audit's access span is closed), and the room does not keep the member."""
    rooms = await start()
    events: Events = rooms.events  # type: ignore[attr-defined]
    events.storing = asyncio.Event()
    joining = asyncio.create_task(rooms.enter(Join(consultation=CONSULTATION, role=Role.NURSE, token="t"),
                                              identity(Role.NURSE), Outlet()))
    while (EventKind.JOINED, None) not in events.kinds():
        await asyncio.sleep(0.005)
    joining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await joining
    assert events.kinds()[-2:] == [(EventKind.JOINED, None), (EventKind.LEFT, "cancelled")]
    events.storing = None
    await enter(rooms, Role.NURSE)  # the place is free again
