"""The ``/ws`` endpoint: one task reads a socket and routes its frames to the rooms.

Writes go through a per-socket :class:`~signaling.outlet.SocketOutlet`, so a slow reader
never stalls the sender's loop or the rest of its room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from aiohttp import WSMsgType, web

from .admission import Admission
from .heartbeat import beating
from .limits import Limits
from .outlet import SocketOutlet
from .protocol import (
    CloseCode,
    ErrorCode,
    Join,
    Leave,
    ProtocolError,
    dumps,
    error_frame,
    parse,
)
from .rooms import Participant, Rooms, create_rooms
from .rules import check_send
from .sink import EventKind, EventSink, RoomEvent
from .stats import Stats

log = logging.getLogger(__name__)

ROOMS = web.AppKey("signaling_rooms", Rooms)
ADMISSION = web.AppKey("signaling_admission", Admission)
SINK = web.AppKey("signaling_sink", EventSink)
LIMITS = web.AppKey("signaling_limits", Limits)
STATS = web.AppKey("signaling_stats", Stats)
SOCKETS = web.AppKey("signaling_sockets", set[SocketOutlet])
"""Every open socket's outlet; its handler adds it and discards it on the way out."""
CLIENT_ADDRESS: web.AppKey[Callable[[web.Request], str | None]] = web.AppKey("signaling_client_address")
"""Who a socket's peer is (behind a proxy, the app knows better than ``request.remote``)."""

# Which failed joins end the socket, and with which close code.
_FATAL: Final[dict[ErrorCode, CloseCode]] = {
    ErrorCode.TOKEN_INVALID: CloseCode.UNAUTHORIZED,
    ErrorCode.TOKEN_EXPIRED: CloseCode.UNAUTHORIZED,
    ErrorCode.WRONG_CONSULTATION: CloseCode.FORBIDDEN,
    ErrorCode.FORBIDDEN: CloseCode.FORBIDDEN,
    ErrorCode.ROLE_TAKEN: CloseCode.CONFLICT,
    ErrorCode.UNSUPPORTED_VERSION: CloseCode.POLICY,
}

class _Bucket:
    """Token bucket: ``rate`` frames per second, bursts of ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "overdraft")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.overdraft = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.overdraft = 0
            return True
        self.overdraft += 1
        return False


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    # The application that mounted signaling holds every key (``setup``): unlike
    # ``config_dict``, a reference kept for the socket's life costs nothing of its own.
    app = request.app
    limits = app[LIMITS]
    stats = app[STATS]
    rooms = app[ROOMS]
    # Pings and pongs come to this loop: liveness is one sweep for all sockets (signaling.heartbeat).
    ws = web.WebSocketResponse(autoping=False, max_msg_size=limits.max_message_bytes, compress=False)
    outlet = await _upgrade(request, ws, app[SOCKETS], limits)
    if outlet is None:  # the client left during the upgrade
        return ws
    address = app[CLIENT_ADDRESS](request)
    participant: Participant | None = None
    bucket = _Bucket(limits.rate_per_second, limits.burst)
    join_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
        limits.join_timeout_seconds,
        outlet.close,
        CloseCode.JOIN_TIMEOUT,
        ErrorCode.JOIN_TIMEOUT,
        "no join received in time",
    )
    try:
        while True:
            # An idle socket keeps nothing of its last frame (the join, with its token).
            msg = message = None
            msg = await ws.receive()
            outlet.silence = 0
            kind = msg.type
            if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
                if kind is WSMsgType.PONG:
                    continue
                if kind is WSMsgType.PING:
                    outlet.pong(msg.data)
                    continue
                break
            if outlet.closing:
                break
            if not bucket.take():
                if bucket.overdraft > limits.burst:
                    stats.errors[ErrorCode.RATE_LIMITED.value] += 1
                    outlet.close(CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED, "too many frames")
                    break
                if bucket.overdraft == 1:
                    stats.errors[ErrorCode.RATE_LIMITED.value] += 1
                    outlet.deliver(dumps(error_frame(ErrorCode.RATE_LIMITED, "frame dropped: too many frames")))
                continue
            try:
                message = parse(msg.data)
                if participant is None:
                    if not isinstance(message, Join):
                        raise ProtocolError(ErrorCode.NOT_JOINED, "join a consultation first", message.type)
                    participant = await _admit(app, message, outlet, address)
                    if join_timer is not None:
                        join_timer.cancel()
                        join_timer = None
                elif isinstance(message, Join):
                    raise ProtocolError(ErrorCode.ALREADY_JOINED, "this socket has joined already", "join")
                elif isinstance(message, Leave):
                    rooms.leave(participant, "left")
                    participant = None  # gone for good: no place to hold
                    # The close answers the leave: it is stored first (one write for leaves together).
                    await app[SINK].stored()
                    outlet.end(CloseCode.NORMAL)
                    break
                else:
                    check_send(participant.identity.may_send, message.type)
                    rooms.relay(participant, message)
                    stats.relayed += 1
            except ProtocolError as exc:
                if _failed(app, exc, participant, outlet, address):
                    break
    except Exception:
        log.exception("signaling handler failed")
        outlet.close(CloseCode.INTERNAL, ErrorCode.INTERNAL, "internal error")
    finally:
        if join_timer is not None:
            join_timer.cancel()
        app[SOCKETS].discard(outlet)
        if participant is not None:
            rooms.drop(participant, outlet)
        await outlet.finish()
    return ws


def _failed(
    app: web.Application,
    exc: ProtocolError,
    participant: Participant | None,
    outlet: SocketOutlet,
    address: str | None,
) -> bool:
    """Count and answer a frame that failed; True if it ends the socket. (Not in the
    handler: its frame, kept for the socket's life, would be deeper for it.)"""
    app[STATS].errors[exc.code.value] += 1
    if participant is not None and exc.code is ErrorCode.FORBIDDEN:
        _refused(app[SINK], participant, exc.ref, address)
    # Refusals end the socket only while joining; later errors are reported.
    fatal = _FATAL.get(exc.code) if participant is None else None
    if fatal is None:
        outlet.deliver(dumps(error_frame(exc.code, exc.message, exc.ref)))
        return False
    outlet.close(fatal, exc.code, exc.message)
    return True


def _refused(sink: EventSink, participant: Participant, kind: str | None, address: str | None) -> None:
    """A frame its sender may not send: the application audits it (the type, never the content)."""
    identity = participant.identity
    sink.emit(
        RoomEvent(
            participant.room.consultation,
            EventKind.REFUSED,
            identity.subject,
            identity.role,
            identity.region,
            participant.id,
            detail=kind,
            address=address,
        )
    )


async def _upgrade(
    request: web.Request, ws: web.WebSocketResponse, sockets: set[SocketOutlet], limits: Limits
) -> SocketOutlet | None:
    """The socket's outlet, once the upgrade is answered; its own coroutine, so that what
    only the outlet needs is not kept in the handler's frame for the socket's life."""
    writer = await ws.prepare(request)
    transport = request.transport
    if transport is None or writer is None:
        return None
    outlet = SocketOutlet(ws, transport, writer, limits.outbox_frames)
    sockets.add(outlet)
    return outlet


async def _admit(app: web.Application, join: Join, outlet: SocketOutlet, address: str | None) -> Participant:
    rooms = app[ROOMS]
    if join.resume is not None:
        return await rooms.reenter(join, outlet, address)
    try:
        identity = await app[ADMISSION].admit(join, address)
    except ProtocolError as exc:
        app[SINK].emit(
            RoomEvent(join.consultation, EventKind.DENIED, None, join.role, None, detail=exc.code.value, address=address)
        )
        raise
    if outlet.closing:
        # Admission outlasted the join timeout: the client has been told to go.
        raise ProtocolError(ErrorCode.JOIN_TIMEOUT, "no join received in time", "join")
    return await rooms.enter(join, identity, outlet, address)


async def _close_sockets(app: web.Application) -> None:
    """Tell every socket to resume elsewhere: the ``going_away`` frame goes out after the
    frames already queued, then the close, both through the socket's own writer."""
    sockets: set[SocketOutlet] = app[SOCKETS]
    outlets = list(sockets)
    for outlet in outlets:
        outlet.close(CloseCode.GOING_AWAY, ErrorCode.GOING_AWAY, "server shutting down: reconnect and resume")
    # Longer than a socket's own end: a loaded server still owes every client its close frame.
    await asyncio.gather(*(outlet.finish(timeout=8.0) for outlet in outlets))


def setup(
    app: web.Application,
    *,
    admission: Admission,
    sink: EventSink,
    limits: Limits,
    path: str = "/ws",
    redis_url: str | None = None,
    instance: str = "local",
    redis_prefix: str = "wc",
    instance_ttl_seconds: float = 5.0,
    client_address: Callable[[web.Request], str | None] = lambda request: request.remote,
) -> Rooms:
    """Mount signaling on ``app`` and return its rooms: in memory, or shared through Redis
    with every instance on the same ``redis_url`` and ``redis_prefix`` when it is set."""
    rooms = create_rooms(
        limits,
        sink,
        redis_url=redis_url,
        instance=instance,
        redis_prefix=redis_prefix,
        instance_ttl_seconds=instance_ttl_seconds,
    )
    app.cleanup_ctx.append(rooms.running)
    app[ROOMS] = rooms
    app[ADMISSION] = admission
    app[SINK] = sink
    app[LIMITS] = limits
    app[STATS] = Stats()
    sockets: set[SocketOutlet] = set()
    app[SOCKETS] = sockets
    app.cleanup_ctx.append(beating(sockets, limits.heartbeat_seconds))
    app[CLIENT_ADDRESS] = client_address
    app.router.add_get(path, websocket_handler)
    app.on_shutdown.append(_close_sockets)
    return rooms
