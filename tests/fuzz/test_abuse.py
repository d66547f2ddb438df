"""500 sockets on one server, 50 of them misbehaving; every other room keeps relaying.

The misbehaviours, ten sockets each (rate 300/s, burst 300), and the close each must get (docs/protocol.md §9):

- flood: joined, then far more frames than the rate allows -> ``rate_limited``, 4029
- garbage: joined, then non-JSON text and random binary, also too fast -> ``bad_json``, then 4029
- huge: joined, then one 1 MiB frame -> 1009
- slow reader: a joined specialist that does not read while its own nurse (a well-behaved
  feeder, ten more sockets) chats 2000-character messages at the allowed rate. The socket's
  receive buffer is made small so the kernel cannot absorb the backlog; when its 512-frame
  outbox overflows the server cuts it off at once. Reading again, it finds what the kernel
  had delivered (the first chats, in order), then the end of the connection: 4030 if the
  close frame fitted, else 1006 (the server resets it rather than wait for the reader).
- never joins -> ``join_timeout``, 4008

The other 440 sockets are 220 nurse/specialist pairs, each in its own room, chatting both
ways throughout; every message must arrive, in order, and nothing else but presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohappyeyeballs import AddrInfoType

from signaling.handler import ROOMS, SOCKETS
from signaling.protocol import MAX_CHAT_CHARS, CloseCode, Presence, Role
from tests.server import RunningServer
from tests.signaling.test_ws import RawSocket

HEALTHY_PAIRS = 220
PER_KIND = 10
ROUNDS = 8
RATE = 300
FEED = 3000  # chats to each slow reader: the 512-frame outbox plus what the kernel buffers hold


def _more_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def _small_receive_buffer(addr_info: AddrInfoType) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    # Set before connect, so the receive window stays small and autotuning stays off.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


@pytest.fixture
async def sessions() -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    _more_files()
    normal = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    slow = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, socket_factory=_small_receive_buffer))
    yield normal, slow
    await normal.close()
    await slow.close()


def fed(i: int) -> str:
    """The i-th chat a feeder sends its slow reader: long, and numbered to check order."""
    return f"{i:04d}" + "w" * (MAX_CHAT_CHARS - 4)


class Reader:
    """Collects every frame a socket receives, and its close code."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> int | None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(orjson.loads(msg.data))
        return self.ws.close_code

    def chats(self) -> list[str]:
        return [f["text"] for f in self.frames if f["type"] == "chat"]

    def errors(self) -> list[str]:
        return [f["code"] for f in self.frames if f["type"] == "error"]

    async def closed(self, timeout: float) -> int | None:
        async with asyncio.timeout(timeout):
            return await self.task


async def test_500_sockets_50_misbehaving(
    start_server: Callable[..., Awaitable[RunningServer]],
    sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    started = time.monotonic()
    server = await start_server(rate_per_second=RATE, rate_burst=RATE, join_timeout_seconds=8)  # 500 joins on a loaded 2-core machine can take over 2 s
    session, slow_session = sessions
    url = f"{server.url}/ws"
    gate = asyncio.Semaphore(64)
    # One at a time: the test helper makes the region on first use.
    rooms = [await server.new_consultation() for _ in range(HEALTHY_PAIRS + 4 * PER_KIND)]

    async def joined(role: Role, consultation: str, *, slow: bool = False) -> RawSocket:
        async with gate:
            ws = RawSocket(await (slow_session if slow else session).ws_connect(url, max_msg_size=4 << 20))
            frame = await ws.join(consultation, role, server.invite(consultation, role))
            assert frame["type"] == "joined", frame
            return ws

    async def pair() -> tuple[RawSocket, RawSocket]:
        consultation = rooms.pop()
        nurse = await joined(Role.NURSE, consultation)
        specialist = await joined(Role.SPECIALIST, consultation)
        assert (await nurse.expect("presence"))["state"] == "joined"
        return nurse, specialist

    async def alone() -> RawSocket:
        return await joined(Role.NURSE, rooms.pop())

    async def slow_pair() -> tuple[RawSocket, RawSocket]:
        consultation = rooms.pop()
        feeder = await joined(Role.NURSE, consultation)
        reader = await joined(Role.SPECIALIST, consultation, slow=True)
        assert (await feeder.expect("presence"))["state"] == "joined"
        return feeder, reader

    pairs = await asyncio.gather(*(pair() for _ in range(HEALTHY_PAIRS)))
    flooders = await asyncio.gather(*(alone() for _ in range(PER_KIND)))
    garblers = await asyncio.gather(*(alone() for _ in range(PER_KIND)))
    giants = await asyncio.gather(*(alone() for _ in range(PER_KIND)))
    slow_rooms = await asyncio.gather(*(slow_pair() for _ in range(PER_KIND)))
    setup_seconds = time.monotonic() - started

    healthy = [(Reader(n.ws), Reader(s.ws)) for n, s in pairs]
    feeders = [Reader(f.ws) for f, _ in slow_rooms]
    loiterers = [Reader(await session.ws_connect(url)) for _ in range(PER_KIND)]
    assert len(pairs) * 2 + len(slow_rooms) * 2 + 3 * PER_KIND + len(loiterers) == 500

    async def chat_rounds() -> None:
        for i in range(ROUNDS):
            for nurse, specialist in healthy:
                await nurse.ws.send_str(orjson.dumps({"type": "chat", "text": f"n{i}"}).decode())
                await specialist.ws.send_str(orjson.dumps({"type": "chat", "text": f"s{i}"}).decode())
            await asyncio.sleep(0.4)

    async def flood(ws: RawSocket) -> None:
        # Until the server closes it (bounded): faster than the bucket refills.
        with contextlib.suppress(ConnectionError):
            for i in range(RATE * 20):
                if ws.ws.closed:
                    return
                await ws.send(type="chat", text=f"flood {i}")

    async def garble(ws: RawSocket) -> None:
        with contextlib.suppress(ConnectionError):
            for i in range(RATE * 20):
                if ws.ws.closed:
                    return
                if i % 2:
                    await ws.ws.send_str("{not json " + "x" * (i % 1000))
                else:
                    await ws.ws.send_bytes(bytes(range(i % 256)))

    async def huge(ws: RawSocket) -> None:
        await ws.send(type="chat", text="x" * (1 << 20))

    async def feed(ws: RawSocket) -> None:
        for i in range(FEED):
            await ws.send(type="chat", text=fed(i))
            if i >= RATE // 2:
                await asyncio.sleep(1 / (RATE * 0.9))

    misbehaving = [Reader(ws.ws) for ws in (*flooders, *garblers, *giants)]
    await asyncio.gather(
        chat_rounds(),
        *(flood(ws) for ws in flooders),
        *(garble(ws) for ws in garblers),
        *(huge(ws) for ws in giants),
        *(feed(f) for f, _ in slow_rooms),
        return_exceptions=False,
    )
    flood_readers, garble_readers, giant_readers = (
        misbehaving[:PER_KIND], misbehaving[PER_KIND:2 * PER_KIND], misbehaving[2 * PER_KIND:])

    # Exact close codes per kind of misbehaviour.
    for reader in flood_readers:
        assert await reader.closed(5) == CloseCode.RATE_LIMITED
        assert reader.errors()[-1] == "rate_limited"
    for reader in garble_readers:
        assert await reader.closed(5) == CloseCode.RATE_LIMITED
        assert "bad_json" in reader.errors() and reader.errors()[-1] == "rate_limited"
    for reader in giant_readers:
        assert await reader.closed(5) == CloseCode.TOO_LARGE
    for reader in loiterers:
        assert await reader.closed(15) == CloseCode.JOIN_TIMEOUT
        assert reader.errors() == ["join_timeout"]

    # The slow readers are gone on the server, without waiting for them to read: only the
    # healthy pairs and the feeders still have a socket there.
    async with asyncio.timeout(5):
        while len(server.app[SOCKETS]) > 2 * HEALTHY_PAIRS + PER_KIND:
            await asyncio.sleep(0.05)
    # Reading now, each finds the first chats in order, then the connection's end.
    for _, slow in slow_rooms:
        late = Reader(slow.ws)
        code = await late.closed(15)
        chats = late.chats()
        assert late.errors() in ([], ["slow_consumer"]), late.errors()
        assert code in (CloseCode.SLOW_CONSUMER, 1006), code
        assert len(chats) < FEED, len(chats)
        assert chats == [fed(i) for i in range(len(chats))]
    # The feeders see their reader drop to reconnecting, nothing worse.
    for feeder in feeders:
        async with asyncio.timeout(5):
            while not any(f["type"] == "presence" and f["state"] == "reconnecting" for f in feeder.frames):
                await asyncio.sleep(0.05)
        assert not feeder.errors(), feeder.errors()

    # Every healthy room got all its chat, in order, and nothing else.
    await asyncio.sleep(0.5)
    for nurse, specialist in healthy:
        assert nurse.chats() == [f"s{i}" for i in range(ROUNDS)]
        assert specialist.chats() == [f"n{i}" for i in range(ROUNDS)]
        assert {f["type"] for f in nurse.frames + specialist.frames} <= {"chat"}
        assert not nurse.ws.closed and not specialist.ws.closed
    elapsed = time.monotonic() - started
    print(f"setup {setup_seconds:.1f} s, total {elapsed:.1f} s")
    assert elapsed < 90

    for nurse, specialist in healthy:
        await nurse.ws.close()
        await specialist.ws.close()
    for feeder in feeders:
        await feeder.ws.close()


async def test_reader_that_never_reads_again_is_cut_off(
    start_server: Callable[..., Awaitable[RunningServer]],
    sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    """A specialist that stops reading for good is gone from the server once its outbox
    overflows: not after a heartbeat (set far beyond the test here), not when it reads."""
    server = await start_server(rate_per_second=RATE, rate_burst=RATE, heartbeat_seconds=600)
    session, slow_session = sessions
    url = f"{server.url}/ws"

    async def joined(http: aiohttp.ClientSession, role: Role, consultation: str) -> RawSocket:
        ws = RawSocket(await http.ws_connect(url, max_msg_size=4 << 20))
        frame = await ws.join(consultation, role, server.invite(consultation, role))
        assert frame["type"] == "joined", frame
        return ws

    stuck_room, healthy_room = await server.new_consultation(), await server.new_consultation()
    feeder = await joined(session, Role.NURSE, stuck_room)
    stuck = await joined(slow_session, Role.SPECIALIST, stuck_room)
    assert (await feeder.expect("presence"))["state"] == "joined"
    nurse = await joined(session, Role.NURSE, healthy_room)
    specialist = await joined(session, Role.SPECIALIST, healthy_room)
    assert (await nurse.expect("presence"))["state"] == "joined"
    sockets = server.app[SOCKETS]
    assert len(sockets) == 4

    # Feed until the server lets the stuck socket go; the stuck client never reads again.
    sent = 0
    while len(sockets) == 4 and sent < FEED:
        await feeder.send(type="chat", text=fed(sent))
        sent += 1
        await asyncio.sleep(1 / (RATE * 0.9) if sent > RATE // 2 else 0)
    assert len(sockets) == 3, f"still {len(sockets)} sockets after {sent} chats"
    assert sent < FEED
    room = server.app[ROOMS].get(stuck_room)
    assert room is not None
    assert [p.state for p in room.participants.values()].count(Presence.RECONNECTING) == 1

    # The feeder sees its reader drop, nothing worse; the other room carries on.
    assert (await feeder.expect("presence"))["state"] == "reconnecting"
    for i in range(ROUNDS):
        await nurse.send(type="chat", text=f"n{i}")
        await specialist.send(type="chat", text=f"s{i}")
    assert [(await specialist.expect("chat"))["text"] for _ in range(ROUNDS)] == [f"n{i}" for i in range(ROUNDS)]
    assert [(await nurse.expect("chat"))["text"] for _ in range(ROUNDS)] == [f"s{i}" for i in range(ROUNDS)]
    assert not stuck.ws.closed  # the client has not noticed yet: it does not read
    for ws in (feeder, stuck, nurse, specialist):
        await ws.ws.close()
