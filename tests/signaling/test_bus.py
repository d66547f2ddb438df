"""Two instances of the real app share one PostgreSQL database and one Redis: a nurse on
one and a specialist on the other meet in the same room, exactly as on one instance."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.handler import ROOMS
from signaling.protocol import CloseCode, ErrorCode, Presence, Role
from signaling.rooms import Occupancy, Rooms
from tests.server import RunningServer
from tests.services import REDIS_URL
from tests.signaling.test_ws import RawSocket

StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def cluster(
    database_url: str, redis_prefix: str, start_server: StartServer, tmp_path: Path
) -> Callable[..., Awaitable[RunningServer]]:
    """``start(**settings)`` starts one more instance on the shared database and Redis
    (the database and Redis fixtures come first, so they outlive the servers)."""
    count = 0

    async def start(**overrides: Any) -> RunningServer:
        nonlocal count
        count += 1
        overrides.setdefault("instance_ttl_seconds", 1.0)
        return await start_server(
            data_dir=tmp_path / "shared",  # one signing secret and master key, as deployed
            database_url=database_url,
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix,
            instance=f"i{count}-{secrets.token_hex(3)}",
            **overrides,
        )

    return start


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[[RunningServer], Awaitable[RawSocket]]]:
    session = aiohttp.ClientSession()
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def open_on(server: RunningServer) -> RawSocket:
        ws = await session.ws_connect(f"{server.url}/ws", max_msg_size=4 << 20)
        opened.append(ws)
        return RawSocket(ws)

    yield open_on
    for ws in opened:
        await ws.close()
    await session.close()


async def meet(a: RunningServer, b: RunningServer, sockets: Any) -> tuple[str, RawSocket, RawSocket, dict[str, Any]]:
    """A nurse on ``a``, a specialist on ``b``; returns the nurse's ``joined``."""
    consultation = await a.new_consultation()
    nurse, specialist = await sockets(a), await sockets(b)
    joined = await nurse.join(consultation, Role.NURSE, a.invite(consultation, Role.NURSE))
    assert joined["type"] == "joined", joined
    theirs = await specialist.join(consultation, Role.SPECIALIST, b.invite(consultation, Role.SPECIALIST))
    assert theirs["type"] == "joined", theirs
    assert [(p["id"], p["role"], p["state"]) for p in theirs["peers"]] == [(joined["you"]["id"], "nurse", "joined")]
    presence = await nurse.expect("presence")
    assert (presence["state"], presence["participant"]) == (
        "joined",
        {"id": theirs["you"]["id"], "role": "specialist", "name": "Test specialist", "state": "joined"},
    )
    return consultation, nurse, specialist, joined


async def test_nurse_and_specialist_on_two_instances_meet_and_chat_in_order(cluster: Any, sockets: Any) -> None:
    a, b = await cluster(), await cluster()
    consultation, nurse, specialist, _ = await meet(a, b, sockets)
    for i in range(100):
        await specialist.send(type="chat", text=f"s{i}")
        await nurse.send(type="chat", text=f"n{i}")
    assert [(await nurse.expect("chat"))["text"] for _ in range(100)] == [f"s{i}" for i in range(100)]
    assert [(await specialist.expect("chat"))["text"] for _ in range(100)] == [f"n{i}" for i in range(100)]
    await specialist.send(type="offer", to="nobody", sdp="v=0")
    assert (await specialist.expect("error"))["code"] == "unknown_peer"
    await specialist.send(type="snapshot_request", id="req-1")
    request = await nurse.expect("snapshot_request")
    assert (request["id"], request["from"]) == ("req-1", (await _id_of(specialist, nurse)))

    # The single-nurse rule holds across instances.
    second = await sockets(b)
    error = await second.join(consultation, Role.NURSE, b.invite(consultation, Role.NURSE, subject="other"))
    assert (error["type"], error["code"]) == ("error", "role_taken")
    assert await second.closed_with() == CloseCode.CONFLICT
    assert await nurse.silent() and await specialist.silent()


async def _id_of(sender: RawSocket, receiver: RawSocket) -> str:
    """The sender's participant id, as the receiver sees it in ``from``."""
    await sender.send(type="chat", text="who am I")
    return str((await receiver.expect("chat"))["from"])


async def test_a_nurse_resumes_on_the_other_instance_with_held_frames(cluster: Any, sockets: Any) -> None:
    a, b = await cluster(), await cluster()
    consultation, nurse, specialist, joined = await meet(a, b, sockets)
    await nurse.ws.close()
    presence = await specialist.expect("presence")
    assert (presence["state"], presence["participant"]["id"]) == ("reconnecting", joined["you"]["id"])
    assert presence["graceSeconds"] == 60
    await specialist.send(type="chat", text="are you there?")
    await specialist.send(type="chat", text="hello?")
    await asyncio.sleep(0.2)  # held in Redis by instance a

    back = await sockets(b)
    resumed = await back.join(consultation, Role.NURSE, resume=joined["resumeToken"])
    assert resumed["type"] == "joined" and resumed["resumed"] is True
    assert resumed["you"]["id"] == joined["you"]["id"]
    assert resumed["resumeToken"] != joined["resumeToken"]
    assert [p["role"] for p in resumed["peers"]] == ["specialist"]
    assert [(await back.expect("chat"))["text"] for _ in range(2)] == ["are you there?", "hello?"]
    presence = await specialist.expect("presence")
    assert (presence["state"], presence["participant"]["id"]) == ("rejoined", joined["you"]["id"])
    await back.send(type="chat", text="yes")
    assert (await specialist.expect("chat"))["text"] == "yes"
    await specialist.send(type="chat", text="good")
    assert (await back.expect("chat"))["text"] == "good"

    again = await sockets(a)
    error = await again.join(consultation, Role.NURSE, resume=joined["resumeToken"])
    assert error["code"] == "resume_invalid"
    # Resuming on the instance it came from works as well, with the newest token.
    home = await sockets(a)
    there = await home.join(consultation, Role.NURSE, resume=resumed["resumeToken"])
    assert there["you"]["id"] == joined["you"]["id"]
    assert (await back.expect("error"))["code"] == "replaced"
    assert await back.closed_with() == CloseCode.CONFLICT
    presence = await specialist.expect("presence")
    assert presence["state"] == "rejoined"  # no reconnecting: the new socket replaced the old one
    assert await specialist.silent()


async def test_snapshot_stored_and_the_end_of_a_consultation_reach_every_instance(
    cluster: Any, sockets: Any
) -> None:
    a, b = await cluster(), await cluster()
    consultation, nurse, specialist, _ = await meet(a, b, sockets)
    a.app[ROOMS].publish(consultation, {"type": "snapshot_stored", "id": "Q2xv7mB1", "request": "req-1"})
    for ws in (nurse, specialist):
        stored = await ws.expect("snapshot_stored")
        assert (stored["id"], stored["request"]) == ("Q2xv7mB1", "req-1")

    b.app[ROOMS].close_room(consultation, CloseCode.NORMAL, ErrorCode.ENDED, "the consultation has ended")
    for ws in (nurse, specialist):
        frame = await ws.recv()
        while frame["type"] == "presence":
            frame = await ws.recv()
        assert (frame["type"], frame["code"]) == ("error", "ended")
        assert await ws.closed_with() == CloseCode.NORMAL
    assert len(a.app[ROOMS]) == len(b.app[ROOMS]) == 0
    # The room is gone everywhere: a new nurse is welcome.
    fresh = await sockets(b)
    assert (await fresh.join(consultation, Role.NURSE, b.invite(consultation, Role.NURSE)))["type"] == "joined"


async def test_the_grace_window_ends_once_for_everyone(cluster: Any, sockets: Any) -> None:
    a, b = await cluster(grace_seconds=0.5), await cluster(grace_seconds=0.5)
    consultation, nurse, specialist, joined = await meet(a, b, sockets)
    observer = await sockets(a)
    assert (await observer.join(consultation, Role.OBSERVER, a.invite(consultation, Role.OBSERVER)))["type"] == "joined"
    assert (await nurse.expect("presence"))["state"] == "joined"
    assert (await specialist.expect("presence"))["state"] == "joined"
    await nurse.ws.close()
    for ws in (specialist, observer):
        assert (await ws.expect("presence"))["state"] == "reconnecting"
        left = await ws.expect("presence", timeout=3)
        assert (left["state"], left["reason"], left["participant"]["id"]) == ("left", "timeout", joined["you"]["id"])
    assert await specialist.silent(1.0) and await observer.silent(0.1)
    late = await sockets(b)
    assert (await late.join(consultation, Role.NURSE, resume=joined["resumeToken"]))["code"] == "resume_invalid"
    fresh = await late.join(consultation, Role.NURSE, b.invite(consultation, Role.NURSE))
    assert fresh["type"] == "joined"


async def test_a_stopped_instance_hands_its_participants_to_a_survivor(cluster: Any, sockets: Any) -> None:
    """Its socket ends with going_away; the survivor keeps the place, then times it out once."""
    a, b = await cluster(grace_seconds=2.0), await cluster(grace_seconds=2.0)
    _, nurse, specialist, _ = await meet(a, b, sockets)
    await a.stop()
    # going_away may come first, or not; the aiohttp client may report 1006 (docs/protocol.md §9)
    assert await nurse.closed_with() in (CloseCode.GOING_AWAY, 1006)
    assert (await specialist.expect("presence"))["state"] == "reconnecting"
    left = await specialist.expect("presence", timeout=6)
    assert (left["state"], left["reason"]) == ("left", "timeout")
    assert await specialist.silent(1.0)


async def test_every_instance_sees_who_is_in_a_room(cluster: Any, sockets: Any) -> None:
    """What the specialists' queue asks: a nurse on A is in the room for B, which has no
    participant of that room itself; reconnecting while her place is held; then gone."""
    a, b = await cluster(grace_seconds=2.0), await cluster(grace_seconds=2.0)
    consultation, nurse, specialist, _ = await meet(a, b, sockets)
    other = await a.new_consultation()
    rooms_a, rooms_b = a.app[ROOMS], b.app[ROOMS]
    assert rooms_b.get(other) is None
    found = await rooms_b.occupancy([consultation, other])
    assert found == {consultation: Occupancy(Presence.JOINED, 1), other: Occupancy(None, 0)}
    await specialist.send(type="leave")
    await nurse.ws.close()
    seen = [await _occupancy_until(rooms_b, consultation, lambda o: o.viewers == 0 and o.nurse is not Presence.JOINED)]
    seen.append(await _occupancy_until(rooms_a, consultation, lambda o: o.nurse is None))
    assert seen == [Occupancy(Presence.RECONNECTING, 0), Occupancy(None, 0)]
    assert await rooms_b.occupancy([]) == {}


async def _occupancy_until(rooms: Rooms, consultation: str, accept: Callable[[Occupancy], bool]) -> Occupancy:
    async with asyncio.timeout(5):
        while not accept(found := (await rooms.occupancy([consultation]))[consultation]):
            await asyncio.sleep(0.02)
    return found
