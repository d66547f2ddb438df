"""A signaling client over ``/ws`` for aiortc peers (camera, viewer, bench)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp
import orjson

from signaling.protocol import ClientMessage, Join, Role, to_wire

from ..errors import WoundcareError


def _ws_url(base_url: str) -> str:
    return base_url.rstrip("/").replace("http", "ws", 1) + "/ws"


class SignalingClosed(WoundcareError):
    """The server closed the socket; ``close_code`` is the WebSocket close code."""

    def __init__(self, code: int | None, error: dict[str, Any] | None = None) -> None:
        super().__init__(f"signaling closed with {code}")
        self.close_code = code
        self.error = error


class SignalingClient:
    def __init__(
        self, base_url: str, session: aiohttp.ClientSession | None = None, *, heartbeat: float = 10.0
    ) -> None:
        self._url = _ws_url(base_url)
        self._own_session = session is None
        # No total timeout: it would cut the socket. A connect that hangs (the link is down,
        # SYNs vanish) must give up soon, so that the next try comes when the link is back.
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=15.0, sock_connect=10.0)
        )
        self._heartbeat = heartbeat
        """Ping interval; a missing pong after half of it drops the socket."""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._last_error: dict[str, Any] | None = None
        self.consultation: str | None = None
        self.role: Role | None = None
        self.participant: str | None = None
        self.resume_token: str | None = None
        self.peers: list[dict[str, Any]] = []

    async def __aenter__(self) -> SignalingClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        self._ws = await self._session.ws_connect(self._url, heartbeat=self._heartbeat, max_msg_size=1 << 20)

    async def join(self, consultation: str, role: Role, token: str) -> dict[str, Any]:
        """Connect if needed, join, and return the ``joined`` frame."""
        return await self._enter(Join(consultation=consultation, role=role, token=token))

    async def resume(self, base_url: str | None = None) -> dict[str, Any]:
        """Take our place back on a new socket with the last resume token; with ``base_url``,
        on another server instance (resume tokens work cluster-wide)."""
        if self.consultation is None or self.role is None or self.resume_token is None:
            raise RuntimeError("nothing to resume")
        if base_url is not None:
            self._url = _ws_url(base_url)
        return await self._enter(Join(consultation=self.consultation, role=self.role, resume=self.resume_token))

    async def _enter(self, join: Join) -> dict[str, Any]:
        if not self.connected:
            await self.connect()
        await self.send(join)
        frame = await self.recv()
        if frame.get("type") != "joined":
            raise SignalingClosed(None, frame)
        self.consultation = join.consultation
        self.role = join.role
        self.participant = frame["you"]["id"]
        self.resume_token = frame["resumeToken"]
        self.peers = frame["peers"]
        return frame

    async def send(self, message: ClientMessage | dict[str, Any]) -> None:
        """Raises :class:`SignalingClosed` when the socket has gone, as :meth:`recv` does."""
        if self._ws is None:
            raise RuntimeError("not connected")
        data = message if isinstance(message, dict) else to_wire(message)
        try:
            await self._ws.send_str(orjson.dumps(data).decode())
        except ConnectionResetError as exc:
            # aiohttp's "Cannot write to closing transport": a frame read before the socket
            # died (an ice_restart after a freeze) is answered on it. The caller reconnects.
            raise SignalingClosed(self._ws.close_code, self._last_error) from exc

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame; raises :class:`SignalingClosed` when the socket ends."""
        if self._ws is None:
            raise RuntimeError("not connected")
        try:
            msg = await self._ws.receive(timeout=timeout)
        except ConnectionResetError as exc:
            # aiohttp answers a ping inside receive(): on a closing transport that raises
            # (seen by bench.browser_join as a camera crash). The socket has gone: reconnect.
            raise SignalingClosed(self._ws.close_code, self._last_error) from exc
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame: dict[str, Any] = orjson.loads(msg.data)
            if frame.get("type") == "error":
                self._last_error = frame
            return frame
        raise SignalingClosed(self._ws.close_code, self._last_error)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._own_session:
            await self._session.close()

    async def drop(self) -> None:
        """Lose the socket without a leave, as a tunnel or network switch would."""
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
