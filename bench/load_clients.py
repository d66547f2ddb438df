"""Client processes for the load benches: each holds a slice of the pairs and answers the
orchestrator's commands over a pipe (connect, run a phase, close).

A pair is an offerer A and an answerer B. One round: A sends an SDP-sized offer and four
ICE candidates to B; once B has all five it sends an answer and four candidates back; the
round ends when A has all five. Send times are kept per direction in order (every server
keeps one sender's frames in order), so each relayed frame's latency is its arrival time
minus its send time, on one clock, in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson

from bench.load_servers import Client, more_files

SDP_LINE = "a=rtcp-fb:96 goog-remb transport-cc ccm fir nack nack pli"
SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "\r\n".join(
    f"{SDP_LINE} {i}" for i in range(55)
)
"""About 3.5 KB, like a browser's offer for one video and one audio track."""
CANDIDATE = "candidate:842163049 1 udp 1677729535 127.0.0.1 54400 typ host generation 0 ufrag EsAw network-id 1"
CANDIDATES = 4
PER_ROUND = 2 * (1 + CANDIDATES)
RELAYED = ('{"type":"offer"', '{"type":"answer"', '{"type":"candidate"',
           '{"type":"OFFER"', '{"type":"ANSWER"', '{"type":"CANDIDATE"')
"""How relayed signaling frames begin, on every server (other frames are not counted)."""
CONNECTS_IN_FLIGHT = 32
LEAVE = '{"type":"leave"}'


def burst(dialect: str, kind: str, to: str) -> list[str]:
    """The five frames one side sends in a round: an offer or answer, then the candidates."""
    if dialect == "peerjs":
        description = {"type": "OFFER" if kind == "offer" else "ANSWER", "dst": to,
                       "payload": {"sdp": {"type": kind, "sdp": SDP}, "type": "media", "connectionId": "mc_bench"}}
        candidate = {"type": "CANDIDATE", "dst": to, "payload": {
            "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0},
            "type": "media", "connectionId": "mc_bench"}}
    else:
        description = {"type": kind, "to": to, "sdp": SDP, "pc": 0}
        candidate = {"type": "candidate", "to": to, "candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}
    return [orjson.dumps(description).decode()] + [orjson.dumps(candidate).decode()] * CANDIDATES


@dataclass(slots=True)
class Window:
    """Frames received between ``start`` and ``end`` count; with ``latencies`` kept or not."""

    start: float = float("inf")
    end: float = float("inf")
    keep_latencies: bool = False
    received: int = 0
    latencies: list[float] = field(default_factory=list)

    def record(self, now: float, sent: float) -> None:
        if self.start <= now < self.end:
            self.received += 1
            if self.keep_latencies:
                self.latencies.append(now - sent)


class Pair:
    def __init__(self, a: aiohttp.ClientWebSocketResponse, b: aiohttp.ClientWebSocketResponse,
                 to_b: list[str], to_a: list[str]) -> None:
        self.a, self.b = a, b
        self.to_b, self.to_a = to_b, to_a
        self.sent_to_b: deque[float] = deque()
        self.sent_to_a: deque[float] = deque()
        self.b_got = self.a_got = 0
        self.rounds_open = 0
        self.on_round_end: Callable[[Pair], None] | None = None

    async def start_round(self) -> None:
        self.rounds_open += 1
        await _send(self.a, self.to_b, self.sent_to_b)

    async def b_received(self, window: Window, now: float) -> None:
        window.record(now, self.sent_to_b.popleft())
        self.b_got += 1
        if self.b_got == PER_ROUND // 2:
            self.b_got = 0
            await _send(self.b, self.to_a, self.sent_to_a)

    def a_received(self, window: Window, now: float) -> None:
        window.record(now, self.sent_to_a.popleft())
        self.a_got += 1
        if self.a_got == PER_ROUND // 2:
            self.a_got = 0
            self.rounds_open -= 1
            if self.on_round_end is not None:
                self.on_round_end(self)


async def _send(ws: aiohttp.ClientWebSocketResponse, frames: list[str], stamps: deque[float]) -> None:
    for frame in frames:
        stamps.append(time.monotonic())
        await ws.send_str(frame)


class Fleet:
    """This process's clients."""

    def __init__(self, dialect: str, specs: list[tuple[int, Client, Client]]) -> None:
        self.dialect = dialect
        self.specs = specs
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.pairs: list[tuple[int, Pair]] = []
        self.readers: list[asyncio.Task[None]] = []
        self.window = Window()

    async def _open(self, client: Client) -> tuple[aiohttp.ClientWebSocketResponse, str, dict[str, Any] | None, float]:
        started = time.monotonic()
        ws = await self.session.ws_connect(client.url, autoclose=False, max_msg_size=1 << 20, compress=0)
        if client.join is not None:
            await ws.send_str(client.join)
        ready: dict[str, Any] | None = None
        if client.ready is not None:
            while True:
                msg = await ws.receive(timeout=60)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"connection refused: {msg.type} {ws.close_code}")
                if msg.data.startswith(client.ready):
                    ready = orjson.loads(msg.data)
                    break
        seconds = time.monotonic() - started
        ident = client.id if client.id is not None else ready["you"]["id"]  # type: ignore[index]
        return ws, ident, ready, seconds

    async def connect(self) -> list[float]:
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        seconds: list[float] = []

        async def pair(index: int, a: Client, b: Client) -> None:
            async with gate:
                a_ws, a_id, _, a_s = await self._open(a)
                b_ws, b_id, _, b_s = await self._open(b)
            seconds.extend((a_s, b_s))
            kind_a, kind_b = "offer", "answer"
            made = Pair(a_ws, b_ws, burst(self.dialect, kind_a, b_id), burst(self.dialect, kind_b, a_id))
            self.pairs.append((index, made))
            self.readers.append(asyncio.create_task(self._read(made.b, made.b_received)))
            self.readers.append(asyncio.create_task(self._read_sync(made.a, made.a_received)))

        await asyncio.gather(*(pair(*spec) for spec in self.specs))
        return seconds

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, handle: Callable[[Window, float], Any]) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and msg.data.startswith(RELAYED):
                await handle(self.window, time.monotonic())

    async def _read_sync(self, ws: aiohttp.ClientWebSocketResponse, handle: Callable[[Window, float], None]) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and msg.data.startswith(RELAYED):
                handle(self.window, time.monotonic())

    async def saturate(self, begin: float, start: float, end: float) -> tuple[int, list[float]]:
        """Every pair runs rounds back to back from ``begin``; frames between ``start`` and
        ``end`` count. No new round after ``end``; returns once the open rounds are done."""
        self.window = Window(start, end)
        await _sleep_until(begin)
        pending: set[asyncio.Task[None]] = set()

        def again(pair: Pair) -> None:
            if time.monotonic() < end:
                task = asyncio.create_task(pair.start_round())
                pending.add(task)
                task.add_done_callback(pending.discard)

        for _, pair in self.pairs:
            pair.on_round_end = again
            await pair.start_round()
        await _sleep_until(end)
        await self._settle()
        return self.window.received, self.window.latencies

    async def fixed(self, rate: float, total_pairs: int, begin: float, start: float, end: float) -> tuple[int, list[float]]:
        """``rate`` relayed frames per second over all processes: pair ``i`` of
        ``total_pairs`` starts a round every ``period`` seconds, offset by its index."""
        self.window = Window(start, end, keep_latencies=True)
        period = PER_ROUND * total_pairs / rate

        async def schedule(index: int, pair: Pair) -> None:
            pair.on_round_end = None
            at = begin + period * index / total_pairs
            while at < end:
                await _sleep_until(at)
                await pair.start_round()
                at += period

        await asyncio.gather(*(schedule(index, pair) for index, pair in self.pairs))
        await self._settle()
        return self.window.received, self.window.latencies

    async def _settle(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while any(pair.rounds_open for _, pair in self.pairs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def leave(self) -> int:
        """Every client leaves at once: woundcare's send ``leave`` and wait for the server's
        close (which comes once the leave is stored); the others close their socket. Returns
        how many left."""

        async def one(ws: aiohttp.ClientWebSocketResponse) -> None:
            if self.dialect == "woundcare":
                await ws.send_str(LEAVE)
                while (await ws.receive(timeout=60)).type is aiohttp.WSMsgType.TEXT:
                    pass  # frames still on their way before the close
            await ws.close()

        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.readers = []
        sockets = [ws for _, pair in self.pairs for ws in (pair.a, pair.b)]
        await asyncio.gather(*(one(ws) for ws in sockets))
        return len(sockets)

    async def close(self) -> None:
        for _, pair in self.pairs:
            pair.on_round_end = None
            for ws in (pair.a, pair.b):
                with contextlib.suppress(Exception):
                    await ws.close()
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await self.session.close()


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _serve(conn: Connection, dialect: str, specs: list[tuple[int, Client, Client]]) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet(dialect, specs)
    try:
        while True:
            # Waiting for the next command in a thread keeps the loop answering pings.
            command, args = await loop.run_in_executor(None, conn.recv)
            if command == "close":
                break
            try:
                result = await getattr(fleet, command)(*args)
            except Exception:
                conn.send(("error", traceback.format_exc()))
            else:
                conn.send(("ok", result))
    finally:
        await fleet.close()
        conn.send(("ok", None))


class ClientProcesses:
    """Several client processes, each with a slice of the pairs, driven in lockstep."""

    def __init__(self, dialect: str, pairs: list[tuple[Client, Client]], processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        indexed = list(enumerate(pairs))
        self._pipes: list[Connection] = []
        self._processes = []
        for k in range(processes):
            mine = [(index, a, b) for index, (a, b) in indexed[k::processes]]
            ours, theirs = context.Pipe()
            process = context.Process(target=run, args=(theirs, dialect, mine), daemon=True)
            process.start()
            self._pipes.append(ours)
            self._processes.append(process)

    def send(self, command: str, *args: Any) -> None:
        for pipe in self._pipes:
            pipe.send((command, args))

    def gather(self) -> list[Any]:
        results = []
        for pipe in self._pipes:
            status, value = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"client process failed:\n{value}")
            results.append(value)
        return results

    def ask(self, command: str, *args: Any) -> list[Any]:
        self.send(command, *args)
        return self.gather()

    def close(self) -> None:
        self.ask("close")
        for process in self._processes:
            process.join(10)


def run(conn: Connection, dialect: str, specs: list[tuple[int, Client, Client]]) -> None:
    """A client process's entry point."""
    more_files()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(conn, dialect, specs))
    else:
        uvloop.run(_serve(conn, dialect, specs))
