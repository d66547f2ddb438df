"""The /ws endpoint of the real server: refusals with exact codes, and resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import select

from signaling.handler import ROOMS, SOCKETS
from signaling.protocol import CloseCode, Presence, Role
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import ConsultationEvent


class RawSocket:
    """A bare WebSocket client, to send exactly what a test means."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, **fields: Any) -> None:
        await self.ws.send_str(orjson.dumps(fields).decode())

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a frame, got {msg.type} {self.ws.close_code}"
        return orjson.loads(msg.data)

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert frame["type"] == kind, frame
        return frame

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return self.ws.close_code

    async def join(self, consultation: str, role: Role, token: str | None = None, **extra: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": "join", "v": 1, "consultation": consultation, "role": role.value}
        if token is not None:
            fields["token"] = token
        fields.update(extra)
        await self.send(**fields)
        return await self.recv()

    async def silent(self, seconds: float = 0.3) -> bool:
        """True if nothing arrives for a while."""
        try:
            msg = await self.ws.receive(timeout=seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected {msg.type}: {msg.data!r}")


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Any]:
    session = aiohttp.ClientSession()
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def open_socket() -> RawSocket:
        ws = await session.ws_connect(f"{server.url}/ws", max_msg_size=4 << 20)
        sockets.append(ws)
        return RawSocket(ws)

    yield open_socket
    for ws in sockets:
        await ws.close()
    await session.close()


async def joined_pair(server: RunningServer, connect: Any) -> tuple[str, RawSocket, RawSocket]:
    consultation = await server.new_consultation()
    nurse, specialist = await connect(), await connect()
    assert (await nurse.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE)))["type"] == "joined"
    joined = await specialist.join(consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST))
    assert joined["type"] == "joined"
    assert (await nurse.expect("presence"))["state"] == "joined"
    return consultation, nurse, specialist


async def joined_trio(server: RunningServer, connect: Any) -> tuple[str, RawSocket, RawSocket, RawSocket, str, str]:
    """A joined pair and an observer: the consultation, the three sockets, the nurse's and the
    specialist's participant ids."""
    consultation, nurse, specialist = await joined_pair(server, connect)
    observer = await connect()
    joined = await observer.join(consultation, Role.OBSERVER, server.invite(consultation, Role.OBSERVER))
    nurse_id = next(p["id"] for p in joined["peers"] if p["role"] == "nurse")
    specialist_id = next(p["id"] for p in joined["peers"] if p["role"] == "specialist")
    await nurse.expect("presence")
    await specialist.expect("presence")
    return consultation, nurse, specialist, observer, nurse_id, specialist_id


async def test_second_nurse_is_rejected(server: RunningServer, connect: Any) -> None:
    consultation, nurse, specialist = await joined_pair(server, connect)
    second = await connect()
    error = await second.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE, subject="other"))
    assert (error["type"], error["code"]) == ("error", "role_taken")
    assert await second.closed_with() == CloseCode.CONFLICT
    assert await nurse.silent() and await specialist.silent()


async def test_token_for_another_consultation_is_rejected(server: RunningServer, connect: Any) -> None:
    mine, other = await server.new_consultation(), await server.new_consultation()
    ws = await connect()
    error = await ws.join(mine, Role.NURSE, server.invite(other, Role.NURSE))
    assert (error["type"], error["code"]) == ("error", "wrong_consultation")
    assert await ws.closed_with() == CloseCode.FORBIDDEN


async def test_token_for_another_role_is_rejected(server: RunningServer, connect: Any) -> None:
    consultation = await server.new_consultation()
    ws = await connect()
    error = await ws.join(consultation, Role.NURSE, server.invite(consultation, Role.SPECIALIST))
    assert (error["code"], await ws.closed_with()) == ("forbidden", CloseCode.FORBIDDEN)


async def test_expired_token_is_rejected(server: RunningServer, connect: Any) -> None:
    consultation = await server.new_consultation()
    ws = await connect()
    error = await ws.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE, ttl=-1))
    assert (error["code"], await ws.closed_with()) == ("token_expired", CloseCode.UNAUTHORIZED)


@pytest.mark.parametrize("mangle", ["signature", "claims", "garbage"])
async def test_forged_token_is_rejected(server: RunningServer, connect: Any, mangle: str) -> None:
    consultation = await server.new_consultation()
    token = server.invite(consultation, Role.SPECIALIST)
    prefix, claims, signature = token.split(".")
    forged = {
        "signature": f"{prefix}.{claims}.{signature[:-2]}AA",
        "claims": f"{prefix}.{claims[:-3]}xyz.{signature}",
        "garbage": "wc1.bm90IGEgdG9rZW4.c2lnbmF0dXJl",
    }[mangle]
    ws = await connect()
    error = await ws.join(consultation, Role.SPECIALIST, forged)
    assert (error["code"], await ws.closed_with()) == ("token_invalid", CloseCode.UNAUTHORIZED)


async def test_token_for_unknown_consultation_is_rejected(server: RunningServer, connect: Any) -> None:
    ws = await connect()
    error = await ws.join("doesnotexist", Role.NURSE, server.invite("doesnotexist", Role.NURSE))
    assert (error["code"], await ws.closed_with()) == ("wrong_consultation", CloseCode.FORBIDDEN)


async def test_one_mebibyte_frame_closes_with_1009(server: RunningServer, connect: Any) -> None:
    _, nurse, specialist = await joined_pair(server, connect)
    await specialist.send(type="chat", text="x" * (1 << 20))
    assert await specialist.closed_with() == CloseCode.TOO_LARGE
    # The room holds the specialist's place: the nurse sees a drop, not a crash.
    presence = await nurse.expect("presence")
    assert presence["state"] == "reconnecting"


async def test_garbage_is_refused_without_disturbing_the_room(server: RunningServer, connect: Any) -> None:
    consultation, nurse, specialist = await joined_pair(server, connect)
    await specialist.ws.send_str("{this is not json")
    assert (await specialist.expect("error"))["code"] == "bad_json"
    await specialist.send(type="teleport", to="nurse")
    error = await specialist.expect("error")
    assert (error["code"], error["ref"]) == ("unknown_type", "teleport")
    await specialist.send(type="offer", to="nobody", sdp="v=0")
    assert (await specialist.expect("error"))["code"] == "unknown_peer"
    await specialist.send(type="join", v=1, consultation=consultation, role="specialist", token="x")
    assert (await specialist.expect("error"))["code"] == "already_joined"
    assert await nurse.silent()
    await specialist.send(type="chat", text="still here")
    chat = await nurse.expect("chat")
    assert chat["text"] == "still here"


async def test_frames_before_join_are_refused(server: RunningServer, connect: Any) -> None:
    ws = await connect()
    await ws.send(type="chat", text="hello?")
    assert (await ws.expect("error"))["code"] == "not_joined"


async def test_messages_keep_their_order(server: RunningServer, connect: Any) -> None:
    _, nurse, specialist = await joined_pair(server, connect)
    for i in range(100):
        await specialist.send(type="chat", text=f"m{i}")
    received = [(await nurse.expect("chat"))["text"] for _ in range(100)]
    assert received == [f"m{i}" for i in range(100)]


async def test_resume_within_grace_keeps_the_place(server: RunningServer, connect: Any) -> None:
    consultation = await server.new_consultation()
    nurse, specialist = await connect(), await connect()
    joined = await nurse.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE))
    await specialist.join(consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST))
    await nurse.expect("presence")
    await nurse.ws.close()
    presence = await specialist.expect("presence")
    assert (presence["state"], presence["participant"]["id"]) == ("reconnecting", joined["you"]["id"])
    assert presence["graceSeconds"] == 60
    await specialist.send(type="chat", text="are you there?")

    back = await connect()
    resumed = await back.join(consultation, Role.NURSE, resume=joined["resumeToken"])
    assert resumed["type"] == "joined" and resumed["resumed"] is True
    assert resumed["you"]["id"] == joined["you"]["id"]
    assert resumed["resumeToken"] != joined["resumeToken"]
    # What was said while the nurse was away arrives after the rejoin, in order.
    assert (await back.expect("chat"))["text"] == "are you there?"
    presence = await specialist.expect("presence")
    assert (presence["state"], presence["participant"]["id"]) == ("rejoined", joined["you"]["id"])
    await back.send(type="chat", text="yes")
    assert (await specialist.expect("chat"))["text"] == "yes"

    # A resume token works once.
    again = await connect()
    error = await again.join(consultation, Role.NURSE, resume=joined["resumeToken"])
    assert error["code"] == "resume_invalid"


async def test_after_the_grace_window_the_peer_has_left(start_server: Any) -> None:
    server = await start_server(grace_seconds=0.5)
    session = aiohttp.ClientSession()
    try:
        consultation = await server.new_consultation()
        nurse = RawSocket(await session.ws_connect(f"{server.url}/ws"))
        specialist = RawSocket(await session.ws_connect(f"{server.url}/ws"))
        joined = await nurse.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE))
        await specialist.join(consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST))
        await nurse.ws.close()
        assert (await specialist.expect("presence"))["state"] == "reconnecting"
        left = await specialist.expect("presence", timeout=3)
        assert (left["state"], left["reason"]) == ("left", "timeout")
        late = RawSocket(await session.ws_connect(f"{server.url}/ws"))
        error = await late.join(consultation, Role.NURSE, resume=joined["resumeToken"])
        assert error["code"] == "resume_invalid"
        # The place is free again: a nurse may join afresh.
        fresh = await late.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE))
        assert fresh["type"] == "joined"
    finally:
        await session.close()


async def test_a_peer_that_stops_answering_pings_is_dropped_and_its_leave_stored(start_server: Any) -> None:
    """The heartbeat: a socket that goes quiet is pinged; one that does not answer is dropped
    (its place held, then let go after the grace window, on record), while a peer that
    answers stays however long it says nothing else."""
    # An interval long enough that the live client, busy in this test now and then, still answers in time.
    server = await start_server(heartbeat_seconds=1.0, grace_seconds=1.0)
    consultation = await server.new_consultation()
    async with aiohttp.ClientSession() as session:
        # Never answers a ping: aiohttp's client answers them only with autoping.
        dead = RawSocket(await session.ws_connect(f"{server.url}/ws", autoping=False))
        alive = RawSocket(await session.ws_connect(f"{server.url}/ws"))
        assert (await dead.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE)))["type"] == "joined"
        assert (await alive.join(consultation, Role.SPECIALIST, server.invite(consultation, Role.SPECIALIST)))["type"] == "joined"
        assert (await dead.expect("presence"))["state"] == "joined"
        dropped = await alive.expect("presence", timeout=5)
        assert (dropped["state"], dropped["participant"]["role"]) == ("reconnecting", "nurse")
        left = await alive.expect("presence", timeout=5)
        assert (left["state"], left["reason"], left["participant"]["role"]) == ("left", "timeout", "nurse")
        # Asked before it was dropped, then cut off without a closing handshake it would not answer.
        assert (await dead.ws.receive(timeout=1)).type is aiohttp.WSMsgType.PING
        while (msg := await dead.ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING:
            pass
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        # The one who answers, quiet for several intervals (its client answers the pings
        # while it waits to receive), is still in.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(alive.ws.receive(), 2.5)
        room = server.app[ROOMS].get(consultation)
        assert room is not None
        assert [(p.identity.role, p.state) for p in room.participants.values()] == [(Role.SPECIALIST, Presence.JOINED)]
        assert len(server.app[SOCKETS]) == 1
    services = server.app[SERVICES]
    await services.session_log.flush()
    async with services.database.sessions() as db:
        rows = (await db.execute(
            select(ConsultationEvent.kind, ConsultationEvent.role, ConsultationEvent.detail)
            .where(ConsultationEvent.consultation_id == consultation, ConsultationEvent.role == "nurse")
            .order_by(ConsultationEvent.id)
        )).all()
    assert [tuple(row) for row in rows] == [("joined", "nurse", None), ("reconnecting", "nurse", None), ("left", "nurse", "timeout")]


async def test_leave_is_final_and_seen_by_the_others(server: RunningServer, connect: Any) -> None:
    _, nurse, specialist = await joined_pair(server, connect)
    await specialist.send(type="leave")
    assert await specialist.closed_with() == CloseCode.NORMAL
    left = await nurse.expect("presence")
    assert (left["state"], left["reason"]) == ("left", "left")


async def test_a_socket_that_never_joins_is_closed(start_server: Any) -> None:
    server = await start_server(join_timeout_seconds=0.3)
    async with aiohttp.ClientSession() as session:
        ws = RawSocket(await session.ws_connect(f"{server.url}/ws"))
        assert (await ws.expect("error"))["code"] == "join_timeout"
        assert await ws.closed_with() == CloseCode.JOIN_TIMEOUT


async def test_floods_are_rate_limited_then_closed(start_server: Any) -> None:
    server = await start_server(rate_per_second=5, rate_burst=5)
    async with aiohttp.ClientSession() as session:
        ws = RawSocket(await session.ws_connect(f"{server.url}/ws"))
        for _ in range(40):
            await ws.send(type="chat", text="flood")
        codes = []
        while True:
            msg = await ws.ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            codes.append(orjson.loads(msg.data)["code"])
        assert codes[:5] == ["not_joined"] * 5
        assert "rate_limited" in codes
        assert ws.ws.close_code == CloseCode.RATE_LIMITED


async def test_a_refused_request_after_joining_does_not_end_the_socket(server: RunningServer, connect: Any) -> None:
    _, nurse, specialist = await joined_pair(server, connect)
    await nurse.send(type="snapshot_request", id="s1")
    assert (await nurse.expect("error"))["code"] == "forbidden"
    await nurse.send(type="chat", text="still connected")
    assert (await specialist.expect("chat"))["text"] == "still connected"


async def test_video_profiles_go_between_the_camera_and_a_viewer_only(server: RunningServer, connect: Any) -> None:
    _, nurse, specialist, observer, nurse_id, specialist_id = await joined_trio(server, connect)

    await specialist.send(type="video_profile", to=nurse_id, mode="low")
    asked = await nurse.expect("video_profile")
    assert (asked["mode"], asked["from"]) == ("low", specialist_id)
    await nurse.send(type="video_profile", to=specialist_id, mode="low", active="low", reason="loss 11%, rtt 420 ms")
    assert (await specialist.expect("video_profile"))["active"] == "low"

    await observer.send(type="video_profile", to=specialist_id, mode="standard")
    assert (await observer.expect("error"))["code"] == "forbidden"
    await specialist.send(type="video_profile", to=nurse_id, mode="sharp")
    assert (await specialist.expect("error"))["code"] == "bad_message"
    assert await specialist.silent() and await nurse.silent()


async def test_telestration_reaches_the_nurse_and_the_log_counts_strokes_without_coordinates(
    server: RunningServer, connect: Any
) -> None:
    consultation, nurse, specialist, observer, nurse_id, specialist_id = await joined_trio(server, connect)

    points = [[0.125, 0.25], [0.75, 0.5]]
    await specialist.send(type="annotation", to=nurse_id, op="stroke", id="s-1", shape="arrow",
                          points=points, color="#FFEB3B")
    stroke = await nurse.expect("annotation")
    assert (stroke["from"], stroke["points"], stroke["shape"], stroke["color"]) == (specialist_id, points, "arrow", "#FFEB3B")
    await specialist.send(type="annotation", to=nurse_id, op="pointer", points=[[0.5, 0.5]])
    assert (await nurse.expect("annotation"))["op"] == "pointer"
    await specialist.send(type="freeze", to=nurse_id, on=True, id="f-1", still="req-1")
    assert (await nurse.expect("freeze"))["still"] == "req-1"
    await specialist.send(type="annotation", to=nurse_id, op="undo", id="u-1")
    assert (await nurse.expect("annotation"))["op"] == "undo"
    await specialist.send(type="freeze", to=nurse_id, on=False, id="f-2")
    assert (await nurse.expect("freeze"))["on"] is False

    # Refusals are plain errors: the observer and the nurse stay joined.
    await observer.send(type="annotation", to=nurse_id, op="clear", id="c-1")
    assert (await observer.expect("error"))["code"] == "forbidden"
    await nurse.send(type="freeze", to=specialist_id, on=False, id="f-3")
    assert (await nurse.expect("error"))["code"] == "forbidden"
    await specialist.send(type="annotation", to=specialist_id, op="clear", id="c-2")
    assert (await specialist.expect("error"))["code"] == "unknown_peer"
    await nurse.send(type="chat", text="still here")
    assert (await observer.expect("chat"))["text"] == "still here"
    assert await nurse.silent()

    services = server.app[SERVICES]
    await services.session_log.flush()
    async with services.database.sessions() as session:
        rows = (await session.execute(
            select(ConsultationEvent.kind, ConsultationEvent.detail, ConsultationEvent.role)
            .where(ConsultationEvent.consultation_id == consultation, ConsultationEvent.kind.in_(["annotation", "freeze"]))
            .order_by(ConsultationEvent.id)
        )).all()
    assert [tuple(row) for row in rows] == [
        ("annotation", "stroke/arrow", "specialist"),
        ("freeze", "on", "specialist"),
        ("annotation", "undo", "specialist"),
        ("freeze", "off", "specialist"),
    ]
