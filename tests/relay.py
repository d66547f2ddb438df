"""Delay relays: what ``netem delay`` would do, in user space (this kernel has no netem).

Each relay listens on the test's link address and forwards to a loopback service,
holding every chunk (TCP) or datagram (UDP) for ``delay`` seconds in each direction, in
order. Timers with one fixed delay fire in the order they were set, so order is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

_CHUNK = 64 * 1024


def _later(delay: float, callback: object, *args: object) -> None:
    asyncio.get_running_loop().call_later(delay, callback, *args)  # type: ignore[arg-type]


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    with suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            _later(delay, _write, writer, data)
    _later(delay, _close, writer)


@asynccontextmanager
async def tcp_delay(listen: tuple[str, int], target: tuple[str, int], delay: float) -> AsyncIterator[None]:
    connections: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        pipes = asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))
        task = asyncio.ensure_future(pipes)
        connections.add(task)  # type: ignore[arg-type]
        task.add_done_callback(connections.discard)

    server = await asyncio.start_server(accept, *listen)
    try:
        yield
    finally:
        server.close()
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)


class _Upstream(asyncio.DatagramProtocol):
    """One client's flow to the target: answers go back to that client, delayed."""

    def __init__(self, downstream: asyncio.DatagramTransport, client: tuple[str, int], delay: float) -> None:
        self._downstream = downstream
        self._client = client
        self._delay = delay

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        _later(self._delay, self._downstream.sendto, data, self._client)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self._target = target
        self._delay = delay
        self._transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], asyncio.DatagramTransport | asyncio.Future[asyncio.DatagramTransport]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        client = (str(addr[0]), int(addr[1]))
        _later(self._delay, self._forward, client, data)

    def _forward(self, client: tuple[str, int], data: bytes) -> None:
        flow = self.flows.get(client)
        if flow is None:
            flow = self.flows[client] = asyncio.ensure_future(self._open(client))
        if isinstance(flow, asyncio.Future):  # still opening: send once it is open, in order
            flow.add_done_callback(lambda f: f.result().sendto(data) if not f.exception() else None)
        else:
            flow.sendto(data)

    async def _open(self, client: tuple[str, int]) -> asyncio.DatagramTransport:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(self._transport, client, self._delay),  # type: ignore[arg-type]
            remote_addr=self._target,
        )
        self.flows[client] = transport
        return transport


@asynccontextmanager
async def udp_delay(listen: tuple[str, int], target: tuple[str, int], delay: float) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    transport, listener = await loop.create_datagram_endpoint(lambda: _Listener(target, delay), local_addr=listen)
    try:
        yield
    finally:
        transport.close()
        for flow in listener.flows.values():
            if isinstance(flow, asyncio.Future):
                flow.cancel()
            else:
                flow.close()
