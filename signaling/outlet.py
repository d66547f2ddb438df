"""The sending half of one ``/ws`` socket: frames in order, without ever blocking the caller.

Frames delivered during one turn of the event loop are written together, with one
system call, at the end of the turn; no task runs per socket while the connection keeps
up. When the kernel's buffer for the socket fills (the reader is slow), frames wait in a
bounded outbox while a task waits for the connection to drain. A reader that lets the
outbox fill has stopped reading: it is cut off at once (outbox dropped, close frame if the
kernel takes it now, connection reset) instead of holding the socket and its backlog until
a heartbeat notices.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from contextlib import suppress
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .protocol import CloseCode, ErrorCode, dumps, error_frame

HIGH_WATER: Final = 64 * 1024
"""Bytes the transport may buffer before frames wait in the outbox instead."""
_TEXT: Final = 0x1
_CLOSE: Final = 0x8
_PING: Final = 0x9
_PONG: Final = 0xA
_PING_FRAME: Final = bytes((0x80 | _PING, 0))
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: closing the socket resets the connection instead of leaving the
kernel to deliver what it still holds to a reader that does not read."""
_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack


def frame_header(opcode: int, size: int) -> bytes:
    """The header of an unmasked, unfragmented WebSocket frame (RFC 6455 §5.2), as a server sends it."""
    if size < 126:
        return _SHORT(0x80 | opcode, size)
    if size < 1 << 16:
        return _MEDIUM(0x80 | opcode, 126, size)
    return _LONG(0x80 | opcode, 127, size)


class SocketOutlet:
    """Frames to one socket, in order, without ever blocking the caller."""

    __slots__ = (
        "_ws", "_transport", "_writer", "_loop", "_capacity", "_pending", "_scheduled",
        "_draining", "_closer", "_close_code", "_closing", "silence",
    )

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, writer: AbstractStreamWriter, capacity: int
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._capacity = capacity
        self._pending: list[bytes] = []
        """Payloads of text frames not yet handed to the transport."""
        self._scheduled = False
        self._draining: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._close_code = CloseCode.NORMAL
        self._closing = False
        self.silence = 0
        """Heartbeat sweeps since the peer was last heard from: the socket's reader sets it
        to 0 on every frame it receives, :mod:`signaling.heartbeat` counts it up."""

    @property
    def closing(self) -> bool:
        return self._closing

    def deliver(self, text: str | bytes) -> None:
        if self._closing:
            return
        self._queue(text)

    def close(self, code: CloseCode, error: ErrorCode, message: str) -> None:
        if self._closing:
            return
        self._queue(dumps(error_frame(error, message)))
        self.end(code)

    def end(self, code: CloseCode = CloseCode.NORMAL) -> None:
        """Close after the frames already queued."""
        if self._closing:
            return
        self._closing = True
        self._close_code = code
        if not self._pending and self._draining is None:
            self._start_close()

    def ping(self) -> None:
        """Ask the peer for a pong (a control frame goes between whole frames, so straight to
        the transport, ahead of what waits in the outbox)."""
        if not self._transport.is_closing():
            self._transport.write(_PING_FRAME)

    def pong(self, payload: bytes) -> None:
        """Answer the peer's ping with its payload (RFC 6455 §5.5.3)."""
        if not self._transport.is_closing():
            self._transport.writelines([frame_header(_PONG, len(payload)), payload])

    def lost(self) -> None:
        """The peer stopped answering: drop the connection without a closing handshake it
        would not answer either. The reader sees the connection end and holds the
        participant's place for a resume."""
        self._closing = True
        self._pending.clear()
        self._transport.abort()

    async def finish(self, timeout: float = 2.0) -> None:
        """Wait (briefly) for queued frames, then for the close handshake, then stop."""
        self.end(CloseCode.NORMAL)
        await _wait(self._draining, timeout)
        self._start_close()  # if the outbox did not drain in time
        await _wait(self._closer, timeout)
        for task in (self._draining, self._closer):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    def _queue(self, text: str | bytes) -> None:
        pending = self._pending
        if len(pending) >= self._capacity:
            self._cut_off()
            return
        pending.append(text.encode() if type(text) is str else text)  # type: ignore[arg-type]
        if not self._scheduled and self._draining is None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """End of the loop turn: everything delivered meanwhile goes out in one write."""
        self._scheduled = False
        if self._draining is not None:
            return
        if not self._write_some():
            self._draining = asyncio.create_task(self._drain())
        elif self._closing:
            self._start_close()

    def _write_some(self) -> bool:
        """Hand pending frames to the transport up to its high-water mark; True if none are left."""
        transport = self._transport
        if transport.is_closing():
            self._pending.clear()
            return True
        room = HIGH_WATER - transport.get_write_buffer_size()
        if room <= 0:
            return False
        pending = self._pending
        chunks: list[bytes] = []
        taken = 0
        for payload in pending:
            if room <= 0:
                break
            chunks.append(frame_header(_TEXT, len(payload)))
            chunks.append(payload)
            room -= len(payload)
            taken += 1
        del pending[:taken]
        transport.writelines(chunks)
        return not pending

    async def _drain(self) -> None:
        try:
            while True:
                await self._writer.drain()
                if self._write_some():
                    break
                # Above the mark but not paused (yet): let the loop write before looking again.
                await asyncio.sleep(0)
        except ConnectionError:
            # The peer is gone; the reader notices and drops the participant.
            self._pending.clear()
            self._closing = True
        finally:
            self._draining = None
        if self._closing:
            self._start_close()

    def _start_close(self) -> None:
        # A transport already closing (the peer left, or was cut off) needs no handshake.
        if self._closer is None and not self._transport.is_closing():
            self._closer = asyncio.create_task(self._close_handshake())

    async def _close_handshake(self) -> None:
        with suppress(ConnectionError, RuntimeError):
            await self._ws.close(code=self._close_code)

    def _cut_off(self) -> None:
        """The outbox is full: the reader has stopped reading. Waiting for it would keep the
        socket and its backlog for as long as it likes, so drop both now. The error and close
        frames go out only if the kernel takes them at once; the reader's handler sees the
        connection end and holds the participant's place for a resume."""
        self._closing = True
        self._close_code = CloseCode.SLOW_CONSUMER
        self._pending.clear()
        for task in (self._draining, self._closer):
            if task is not None:
                task.cancel()
        transport = self._transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() == 0:
            error = dumps(error_frame(ErrorCode.SLOW_CONSUMER, "reader too slow")).encode()
            code = struct.pack("!H", CloseCode.SLOW_CONSUMER)
            transport.writelines([frame_header(_TEXT, len(error)), error, frame_header(_CLOSE, len(code)), code])
            if transport.get_write_buffer_size() == 0:
                transport.close()
                return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()


async def _wait(task: asyncio.Task[None] | None, timeout: float) -> None:
    if task is not None:
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
