"""The sending half of one ``/ws`` socket: frames in order, without ever blocking the caller.

Frames wait in a bounded queue drained by the socket's own writer task, so a slow reader
never stalls the sender's loop or the rest of its room. A reader that lets the queue fill
has stopped reading: it is cut off at once (queue dropped, close frame if the kernel takes
it now, connection reset) instead of holding the socket and its backlog until a heartbeat.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from contextlib import suppress
from typing import Final

from aiohttp import web

from .protocol import CloseCode, ErrorCode, dumps, error_frame

_CLOSE: Final = object()
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: closing the socket resets the connection instead of leaving the
kernel to deliver what it still holds to a reader that does not read."""


def _server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket frame (RFC 6455 §5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


class SocketOutlet:
    """Frames to one socket, in order, without ever blocking the caller."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, capacity: int) -> None:
        self._ws = ws
        self._transport = transport
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._capacity = capacity
        self._close_code = CloseCode.NORMAL
        self._closing = False
        self._task = asyncio.create_task(self._write())

    @property
    def closing(self) -> bool:
        return self._closing

    def deliver(self, text: str) -> None:
        if self._closing:
            return
        if self._queue.qsize() >= self._capacity:
            self._cut_off()
            return
        self._queue.put_nowait(text)

    def close(self, code: CloseCode, error: ErrorCode, message: str) -> None:
        if self._closing:
            return
        self._queue.put_nowait(dumps(error_frame(error, message)))
        self.end(code)

    def end(self, code: CloseCode = CloseCode.NORMAL) -> None:
        """Close after the frames already queued."""
        if self._closing:
            return
        self._closing = True
        self._close_code = code
        self._queue.put_nowait(_CLOSE)

    async def finish(self, timeout: float = 2.0) -> None:
        """Wait (briefly) for queued frames and the close handshake, then stop the writer."""
        self.end(CloseCode.NORMAL)
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    def _cut_off(self) -> None:
        """The outbox is full: the reader has stopped reading. Waiting for it would keep the
        socket and its backlog for as long as it likes, so drop both now. The error and close
        frames go out only if the kernel takes them at once; the reader's handler sees the
        connection end and holds the participant's place for a resume."""
        self._closing = True
        self._close_code = CloseCode.SLOW_CONSUMER
        self._queue = asyncio.Queue()
        self._task.cancel()
        transport = self._transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() == 0:
            error = dumps(error_frame(ErrorCode.SLOW_CONSUMER, "reader too slow")).encode()
            code = struct.pack("!H", CloseCode.SLOW_CONSUMER)
            transport.write(_server_frame(0x1, error) + _server_frame(0x8, code))
            if transport.get_write_buffer_size() == 0:
                transport.close()
                return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

    async def _write(self) -> None:
        ws = self._ws
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSE:
                    await ws.close(code=self._close_code)
                    return
                await ws.send_str(item)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError):
            # The peer is gone; the reader notices and drops the participant.
            self._closing = True
