"""Rooms shared by several server instances through Redis (``redis_url`` set).

What all instances must agree on lives in Redis, changed only by the Lua scripts below
(each runs atomically):

| key | holds |
|---|---|
| ``room:<consultation>`` | hash: participant id -> record (JSON: id, role, name, subject, region, instance, state, digest, since, deadline) |
| ``resume:<sha256 hex>`` | ``"<consultation> <participant id>"`` for the live resume token |
| ``held:<consultation>:<id>`` | list: frames held for a reconnecting participant, newest ``held_frames`` |
| ``owned:<instance>`` | set of ``"<consultation> <id>"`` the instance answers for |
| ``alive:<instance>`` / ``instances`` | liveness key with a TTL / every instance that announced itself |
| ``sweep:<instance>`` | the lock one survivor takes to take over a dead instance's participants |

Every participant has one **owner** instance (``record.instance``): the one holding its
socket, or its place while it is reconnecting. Only the owner holds frames for it, runs its
grace timer and expires it, and each of those is guarded in Lua by ``instance == me``, so
exactly one instance says ``left``/``timeout``. A resume on any instance claims the
participant atomically (new digest, new owner) and takes its held frames in the same
script. When an instance's liveness key expires, one survivor takes its participants over:
``joined`` ones become ``reconnecting`` (the others are told, the grace window starts),
``reconnecting`` ones keep their deadline.

Each instance keeps, per room it has participants in, its local :class:`Participant`
objects and a cache of every member's record, kept current by the records that ride along
with presence frames. Frames go to the owner's channel (see :mod:`signaling.bus`); relays
stay synchronous. Order: frames from one instance reach each receiver in the order they
were sent; frames from different instances are not ordered against each other.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from .admission import Identity
from .bus import RedisBus
from .limits import Limits
from .protocol import (
    Chat,
    ClientMessage,
    CloseCode,
    ErrorCode,
    Join,
    Presence,
    ProtocolError,
    Role,
    SnapshotRequest,
    check_sender,
    dumps,
    relay_frame,
)
from .rooms import Occupancy, Outlet, Participant, Room, Rooms, _digest, addressed_event
from .sink import EventKind, EventSink

log = logging.getLogger(__name__)

Record = dict[str, Any]

_SWEEP_LOCK_SECONDS: Final = 30

# KEYS: room, resume, owned. ARGV: id, record, role, ref.
_JOIN: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'dup'} end
local all = redis.call('HVALS', KEYS[1])
if ARGV[3] == 'nurse' then
  for _, raw in ipairs(all) do
    if cjson.decode(raw).role == 'nurse' then return {'taken'} end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
table.insert(all, ARGV[2])
return {'ok', all}
"""

# KEYS: old resume key. ARGV: consultation, role, new digest, me, prefix.
_CLAIM: Final = """
local ref = redis.call('GET', KEYS[1])
if not ref then return {'invalid'} end
local c, id = string.match(ref, '^(%S+) (%S+)$')
if c ~= ARGV[1] then return {'invalid'} end
local p = ARGV[5]
local room = p .. 'room:' .. c
local raw = redis.call('HGET', room, id)
if not raw then
  redis.call('DEL', KEYS[1])
  return {'invalid'}
end
local rec = cjson.decode(raw)
if rec.role ~= ARGV[2] then return {'role'} end
local old_instance, old_state = rec.instance, rec.state
redis.call('DEL', KEYS[1])
redis.call('SREM', p .. 'owned:' .. old_instance, ref)
rec.instance = ARGV[4]
rec.state = 'joined'
rec.digest = ARGV[3]
rec.deadline = nil
raw = cjson.encode(rec)
redis.call('HSET', room, id, raw)
redis.call('SET', p .. 'resume:' .. ARGV[3], ref)
redis.call('SADD', p .. 'owned:' .. ARGV[4], ref)
local heldkey = p .. 'held:' .. c .. ':' .. id
local held = redis.call('LRANGE', heldkey, 0, -1)
redis.call('DEL', heldkey)
return {'ok', old_instance, old_state, raw, held, redis.call('HVALS', room)}
"""

# KEYS: room. ARGV: id, me, digest, deadline.
_MARK: Final = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.instance ~= ARGV[2] or rec.digest ~= ARGV[3] or rec.state ~= 'joined' then return 0 end
rec.state = 'reconnecting'
rec.deadline = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 1
"""

# KEYS: room, held. ARGV: id, me, frame, capacity.
_HOLD: Final = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.instance ~= ARGV[2] or rec.state ~= 'reconnecting' then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
return 1
"""

# KEYS: room, resume, held, owned. ARGV: id, me, digest, only if reconnecting ('1'/'0'), ref.
_REMOVE: Final = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'gone'} end
local rec = cjson.decode(raw)
if rec.instance ~= ARGV[2] or rec.digest ~= ARGV[3] then return {'gone'} end
if ARGV[4] == '1' and rec.state ~= 'reconnecting' then return {'gone'} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[5])
return {'ok', redis.call('HVALS', KEYS[1])}
"""

# KEYS: room. ARGV: id, dead, me, deadline if it was joined, prefix, ref.
_TAKE_OVER: Final = """
local p = ARGV[5]
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  redis.call('SREM', p .. 'owned:' .. ARGV[2], ARGV[6])
  return {'gone'}
end
local rec = cjson.decode(raw)
if rec.instance ~= ARGV[2] then return {'gone'} end
local before = rec.state
rec.instance = ARGV[3]
if rec.state == 'joined' then
  rec.state = 'reconnecting'
  rec.deadline = tonumber(ARGV[4])
end
raw = cjson.encode(rec)
redis.call('HSET', KEYS[1], ARGV[1], raw)
redis.call('SREM', p .. 'owned:' .. ARGV[2], ARGV[6])
redis.call('SADD', p .. 'owned:' .. ARGV[3], ARGV[6])
return {'ok', before, raw, redis.call('HVALS', KEYS[1])}
"""

# KEYS: room. ARGV: prefix, consultation.
_CLOSE: Final = """
local p = ARGV[1]
local all = redis.call('HVALS', KEYS[1])
for _, raw in ipairs(all) do
  local rec = cjson.decode(raw)
  redis.call('DEL', p .. 'resume:' .. rec.digest, p .. 'held:' .. ARGV[2] .. ':' .. rec.id)
  redis.call('SREM', p .. 'owned:' .. rec.instance, ARGV[2] .. ' ' .. rec.id)
end
redis.call('DEL', KEYS[1])
return all
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _records(raw: list[bytes]) -> dict[str, Record]:
    records = (orjson.loads(r) for r in raw)
    return {r["id"]: r for r in sorted(records, key=lambda r: r.get("since", 0.0))}


def _info(record: Record, state: str | None = None) -> dict[str, Any]:
    return {"id": record["id"], "role": record["role"], "name": record["name"], "state": state or record["state"]}


def _identity(record: Record) -> Identity:
    return Identity(record["subject"], Role(record["role"]), record["name"], record["region"])


@dataclass(eq=False, slots=True)
class ClusterRoom(Room):
    members: dict[str, Record] = field(default_factory=dict)
    """Every participant's record, local or not, as this instance last heard of it."""


class ClusterRooms(Rooms):
    """Rooms whose participants may be on any instance that shares the Redis."""

    def __init__(self, limits: Limits, sink: EventSink, bus: RedisBus) -> None:
        super().__init__(limits, sink)
        self._bus = bus
        self._me = bus.instance
        self._p = f"{bus.prefix}:"
        redis = bus.redis
        self._join_script = redis.register_script(_JOIN)
        self._claim_script = redis.register_script(_CLAIM)
        self._mark_script = redis.register_script(_MARK)
        self._hold_script = redis.register_script(_HOLD)
        self._remove_script = redis.register_script(_REMOVE)
        self._take_over_script = redis.register_script(_TAKE_OVER)
        self._close_script = redis.register_script(_CLOSE)

    @property
    def instance(self) -> str:
        return self._me

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: connect and subscribe, take back what this instance name owned
        before a crash, then heartbeat and sweep until the app stops."""
        await self._bus.start(self.on_message, self.sweep)
        await self._take_over_all(self._me)
        yield
        await self._bus.stop()

    # -- keys ------------------------------------------------------------------------

    def _room_key(self, consultation: str) -> str:
        return f"{self._p}room:{consultation}"

    def _held_key(self, consultation: str, pid: str) -> str:
        return f"{self._p}held:{consultation}:{pid}"

    def _owned_key(self, instance: str) -> str:
        return f"{self._p}owned:{instance}"

    def _resume_key(self, digest: bytes) -> str:
        return f"{self._p}resume:{digest.hex()}"

    async def occupancy(self, consultations: Iterable[str]) -> dict[str, Occupancy]:
        """From the rooms' records in Redis, so participants on every instance count."""
        wanted = list(consultations)

        async def read(redis: aioredis.Redis) -> list[list[bytes]]:
            pipe = redis.pipeline(transaction=False)
            for consultation in wanted:
                pipe.hvals(self._room_key(consultation))
            return await pipe.execute()  # type: ignore[no-any-return]

        found = await self._bus.call(read) if wanted else []
        return {
            consultation: Occupancy.of(
                (Role(r["role"]), Presence(r["state"])) for r in map(orjson.loads, raw)
            )
            for consultation, raw in zip(wanted, found, strict=True)
        }

    # -- joining ---------------------------------------------------------------------

    def join(self, join: Join, identity: Identity, outlet: Outlet, address: str | None = None) -> tuple[Participant, str]:
        raise TypeError("a cluster joins through Redis: use enter()")

    def resume(self, join: Join, outlet: Outlet, address: str | None = None) -> tuple[Participant, str]:
        raise TypeError("a cluster resumes through Redis: use reenter()")

    async def enter(
        self, join: Join, identity: Identity, outlet: Outlet, address: str | None = None
    ) -> Participant:
        consultation = join.consultation
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        while True:
            pid = secrets.token_urlsafe(6)
            record: Record = {
                "id": pid,
                "role": identity.role.value,
                "name": identity.display_name,
                "subject": identity.subject,
                "region": identity.region,
                "instance": self._me,
                "state": Presence.JOINED.value,
                "digest": digest.hex(),
                "since": time.time(),
            }
            ref = f"{consultation} {pid}"
            reply = await self._bus.call(
                partial(
                    self._join_script,
                    [self._room_key(consultation), self._resume_key(digest), self._owned_key(self._me)],
                    [pid, orjson.dumps(record), identity.role.value, ref],
                )
            )
            if reply[0] != b"dup":
                break
        room = self._room(consultation, identity.region)
        if reply[0] == b"taken":
            self._event(room, EventKind.DENIED, identity, detail=ErrorCode.ROLE_TAKEN.value, address=address)
            self._forget_if_empty(room)
            raise ProtocolError(ErrorCode.ROLE_TAKEN, "this consultation already has a nurse camera", "join")
        room.members = _records(reply[1])
        participant = Participant(pid, identity, room, outlet, digest, deque(maxlen=0))
        room.participants[pid] = participant
        outlet.deliver(dumps(self._joined(participant, token, resumed=False)))
        self._broadcast(room, self._presence(participant, Presence.JOINED), exclude=participant, update=room.members[pid])
        self._event(room, EventKind.JOINED, identity, pid, address=address)
        return participant

    async def reenter(self, join: Join, outlet: Outlet, address: str | None = None) -> Participant:
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        reply = await self._bus.call(
            partial(
                self._claim_script,
                [self._resume_key(_digest(join.resume or ""))],
                [join.consultation, join.role.value, digest.hex(), self._me, self._p],
            )
        )
        if reply[0] == b"role":
            raise ProtocolError(ErrorCode.RESUME_INVALID, "resume token is for another role", "join")
        if reply[0] != b"ok":
            raise ProtocolError(
                ErrorCode.RESUME_INVALID, "resume token is unknown or its grace window has ended", "join"
            )
        _, old_instance, _old_state, raw, held, all_records = reply
        record: Record = orjson.loads(raw)
        pid = record["id"]
        room = self._room(join.consultation, record["region"])
        room.members = _records(all_records)
        participant = room.participants.get(pid)
        if participant is not None:
            # Its place (or a half-open socket) is here on this instance.
            if participant.expiry is not None:
                participant.expiry.cancel()
                participant.expiry = None
            if participant.outlet is not None:
                participant.outlet.close(CloseCode.CONFLICT, ErrorCode.REPLACED, "resumed on another socket")
            participant.resume_digest = digest
        else:
            participant = Participant(pid, _identity(record), room, None, digest, deque(maxlen=0))
            room.participants[pid] = participant
            if _text(old_instance) != self._me:
                self._bus.send(_text(old_instance), orjson.dumps({"k": "replaced", "c": room.consultation, "p": pid}))
        participant.outlet = outlet
        outlet.deliver(dumps(self._joined(participant, token, resumed=True)))
        for frame in held:
            outlet.deliver(_text(frame))
        self._broadcast(room, self._presence(participant, Presence.REJOINED), exclude=participant, update=record)
        self._event(room, EventKind.REJOINED, participant.identity, pid, address=address)
        return participant

    # -- frames ----------------------------------------------------------------------

    def relay(self, sender: Participant, message: ClientMessage) -> None:
        room: ClusterRoom = sender.room  # type: ignore[assignment]
        check_sender(sender.identity.role, message.type)
        if isinstance(message, Chat):
            self._broadcast(room, relay_frame(message, sender.id), exclude=sender)
            return
        if isinstance(message, SnapshotRequest):
            if sender.identity.role is Role.NURSE:
                raise ProtocolError(ErrorCode.FORBIDDEN, "only viewers request snapshots", message.type)
            nurse = next((pid for pid, r in room.members.items() if r["role"] == Role.NURSE.value), None)
            if nurse is None:
                raise ProtocolError(ErrorCode.UNKNOWN_PEER, "no nurse camera in this room", message.type)
            self._send(room, nurse, dumps(relay_frame(message, sender.id)))
            self._event(room, EventKind.SNAPSHOT_REQUESTED, sender.identity, sender.id, detail=message.id)
            return
        target: str = message.to  # type: ignore[union-attr]
        if target == sender.id or target not in room.members:
            raise ProtocolError(ErrorCode.UNKNOWN_PEER, "no such participant in this room", message.type)
        event = addressed_event(message, sender.identity.role, Role(room.members[target]["role"]))
        self._send(room, target, dumps(relay_frame(message, sender.id)))
        if event is not None:
            self._event(room, event[0], sender.identity, sender.id, detail=event[1])

    def publish(self, consultation: str, frame: dict[str, Any]) -> bool:
        """Send a server frame to everyone in the room, on every instance. Returns at once;
        True if the room has participants on this instance (the others are not asked)."""
        data = orjson.dumps({"c": consultation, "f": dumps(frame)})

        async def fan_out(redis: aioredis.Redis) -> None:
            instances = {orjson.loads(r)["instance"] for r in await redis.hvals(self._room_key(consultation))}
            for instance in instances:
                self._bus.send(instance, data)

        self._bus.submit(fan_out)
        return consultation in self._rooms

    def close_room(self, consultation: str, code: CloseCode, error: ErrorCode, message: str) -> None:
        """End a room on every instance: forget it in Redis, then each instance closes its sockets."""
        data = orjson.dumps(
            {"k": "close", "c": consultation, "code": int(code), "error": error.value, "message": message}
        )

        async def end(redis: aioredis.Redis) -> None:
            records = await self._close_script([self._room_key(consultation)], [self._p, consultation])
            instances = {orjson.loads(r)["instance"] for r in records} | {self._me}
            for instance in instances:
                self._bus.send(instance, data)

        self._bus.submit(end)

    def on_message(self, data: bytes) -> None:
        """A frame or order from another instance (or from this one, for publish and close)."""
        envelope = orjson.loads(data)
        kind = envelope.get("k")
        consultation = envelope["c"]
        if kind == "close":
            self._close_here(
                consultation, CloseCode(envelope["code"]), ErrorCode(envelope["error"]), envelope["message"]
            )
            return
        room: ClusterRoom | None = self._rooms.get(consultation)  # type: ignore[assignment]
        if room is None:
            return
        if kind == "replaced":
            self._moved(room, envelope["p"])
            return
        update = envelope.get("u")
        if update is not None:
            if update["instance"] != self._me and update["id"] in room.participants:
                self._moved(room, update["id"])
            room.members[update["id"]] = update
        gone = envelope.get("g")
        if gone is not None:
            room.members.pop(gone, None)
        text = envelope["f"]
        exclude = envelope.get("x")
        targets = envelope.get("t")
        if targets is None:
            recipients = [p for p in room.participants.values() if p.id != exclude]
        else:
            recipients = [p for t in targets if (p := room.participants.get(t)) is not None]
        for participant in recipients:
            self._give(participant, text)

    # -- leaving ---------------------------------------------------------------------

    def leave(self, participant: Participant, reason: str = "left") -> None:
        room: ClusterRoom = participant.room  # type: ignore[assignment]
        if room.participants.get(participant.id) is not participant:
            return
        self._forget(participant)
        self._broadcast(room, self._presence(participant, Presence.LEFT, reason), gone=participant.id)
        self._event(room, EventKind.LEFT, participant.identity, participant.id, detail=reason)
        self._bus.submit(partial(self._unregister, participant, only_reconnecting=False))

    def drop(self, participant: Participant, outlet: Outlet) -> None:
        room: ClusterRoom = participant.room  # type: ignore[assignment]
        if participant.outlet is not outlet or room.participants.get(participant.id) is not participant:
            return
        participant.outlet = None
        deadline = time.time() + self._limits.grace_seconds
        self._expire_in(participant, self._limits.grace_seconds)
        record = dict(room.members.get(participant.id) or {}, state=Presence.RECONNECTING.value, deadline=deadline)
        room.members[participant.id] = record
        frame = self._presence(participant, Presence.RECONNECTING)
        frame["graceSeconds"] = self._limits.grace_seconds
        self._broadcast(room, frame, exclude=participant, update=record)
        self._event(room, EventKind.RECONNECTING, participant.identity, participant.id)
        self._bus.submit(
            partial(
                self._mark_script,
                [self._room_key(room.consultation)],
                [participant.id, self._me, participant.resume_digest.hex(), repr(deadline)],
            )
        )

    def _expire_in(self, participant: Participant, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        participant.expiry = loop.call_later(max(0.0, seconds), self._expire, participant)

    def _expire(self, participant: Participant) -> None:
        participant.expiry = None
        self._bus.submit(partial(self._time_out, participant))

    async def _time_out(self, participant: Participant, redis: aioredis.Redis) -> None:
        """The grace window has ended: exactly one instance (the owner, per Redis) says so."""
        room: ClusterRoom = participant.room  # type: ignore[assignment]
        removed = await self._unregister(participant, redis, only_reconnecting=True)
        if room.participants.get(participant.id) is not participant or participant.outlet is not None:
            return  # resumed in the meantime
        self._forget(participant)
        if not removed:
            return  # resumed on another instance: it has told the room
        self._broadcast(room, self._presence(participant, Presence.LEFT, "timeout"), gone=participant.id)
        self._event(room, EventKind.LEFT, participant.identity, participant.id, detail="timeout")

    async def _unregister(self, participant: Participant, redis: aioredis.Redis, *, only_reconnecting: bool) -> bool:
        """Out of Redis, if this instance still owns it; True if it did."""
        consultation = participant.room.consultation
        reply = await self._remove_script(
            [
                self._room_key(consultation),
                self._resume_key(participant.resume_digest),
                self._held_key(consultation, participant.id),
                self._owned_key(self._me),
            ],
            [
                participant.id,
                self._me,
                participant.resume_digest.hex(),
                "1" if only_reconnecting else "0",
                f"{consultation} {participant.id}",
            ],
        )
        return bool(reply[0] == b"ok")

    def _forget(self, participant: Participant) -> None:
        """Take a participant off this instance (not out of Redis)."""
        room: ClusterRoom = participant.room  # type: ignore[assignment]
        if participant.expiry is not None:
            participant.expiry.cancel()
            participant.expiry = None
        if room.participants.get(participant.id) is participant:
            del room.participants[participant.id]
        room.members.pop(participant.id, None)
        participant.outlet = None
        self._forget_if_empty(room)

    def _moved(self, room: ClusterRoom, pid: str) -> None:
        """The participant resumed on another instance: close our old socket, quietly."""
        participant = room.participants.get(pid)
        if participant is None:
            return
        outlet = participant.outlet
        if participant.expiry is not None:
            participant.expiry.cancel()
            participant.expiry = None
        del room.participants[pid]
        participant.outlet = None
        if outlet is not None:
            outlet.close(CloseCode.CONFLICT, ErrorCode.REPLACED, "resumed on another socket")
        self._forget_if_empty(room)

    def _close_here(self, consultation: str, code: CloseCode, error: ErrorCode, message: str) -> None:
        room: ClusterRoom | None = self._rooms.get(consultation)  # type: ignore[assignment]
        if room is None:
            return
        for participant in list(room.participants.values()):
            outlet = participant.outlet
            if room.participants.get(participant.id) is not participant:
                continue
            self._forget(participant)
            # Redis has forgotten the room already; tell only who is still here.
            frame = dumps(self._presence(participant, Presence.LEFT, error.value))
            for other in room.participants.values():
                if other.outlet is not None:
                    other.outlet.deliver(frame)
            self._event(room, EventKind.LEFT, participant.identity, participant.id, detail=error.value)
            if outlet is not None:
                outlet.close(code, error, message)

    # -- instances that died ---------------------------------------------------------

    async def sweep(self) -> None:
        """Take over the participants of every instance whose liveness key has expired;
        one survivor per dead instance (``sweep:<instance>`` lock)."""
        redis = self._bus.redis
        for raw in await redis.smembers(f"{self._p}instances"):
            name = _text(raw)
            if name == self._me or await redis.exists(f"{self._p}alive:{name}"):
                continue
            if not await redis.set(f"{self._p}sweep:{name}", self._me, nx=True, ex=_SWEEP_LOCK_SECONDS):
                continue
            log.warning("signaling instance %s is gone; taking over its participants", name)
            await self._take_over_all(name)
            await redis.srem(f"{self._p}instances", name)

    async def _take_over_all(self, instance: str) -> None:
        for ref in await self._bus.redis.smembers(self._owned_key(instance)):
            await self._bus.call(partial(self._take_over, instance, _text(ref)))

    async def _take_over(self, dead: str, ref: str, redis: aioredis.Redis) -> None:
        consultation, pid = ref.split(" ", 1)
        deadline = time.time() + self._limits.grace_seconds
        reply = await self._take_over_script(
            [self._room_key(consultation)], [pid, dead, self._me, repr(deadline), self._p, ref]
        )
        if reply[0] != b"ok":
            return
        _, before, raw, all_records = reply
        record: Record = orjson.loads(raw)
        room = self._room(consultation, record["region"])
        room.members = _records(all_records)
        existing = room.participants.get(pid)
        if existing is not None:
            self._forget(existing)
            room = self._room(consultation, record["region"])
            room.members = _records(all_records)
        participant = Participant(pid, _identity(record), room, None, bytes.fromhex(record["digest"]), deque(maxlen=0))
        room.participants[pid] = participant
        self._expire_in(participant, float(record.get("deadline") or deadline) - time.time())
        if _text(before) == Presence.JOINED.value:
            frame = self._presence(participant, Presence.RECONNECTING)
            frame["graceSeconds"] = self._limits.grace_seconds
            self._broadcast(room, frame, exclude=participant, update=record)
            self._event(room, EventKind.RECONNECTING, participant.identity, pid)

    # -- routing ---------------------------------------------------------------------

    def _room(self, consultation: str, region: str) -> ClusterRoom:
        room: ClusterRoom | None = self._rooms.get(consultation)  # type: ignore[assignment]
        if room is None:
            room = ClusterRoom(consultation, region)
            self._rooms[consultation] = room
        return room

    def _forget_if_empty(self, room: Room) -> None:
        if not room.participants and self._rooms.get(room.consultation) is room:
            del self._rooms[room.consultation]

    def _give(self, participant: Participant, text: str) -> None:
        """To a local participant: its socket, or its held frames in Redis."""
        if participant.outlet is not None:
            participant.outlet.deliver(text)
        elif self._limits.held_frames:
            consultation = participant.room.consultation
            self._bus.submit(
                partial(
                    self._hold_script,
                    [self._room_key(consultation), self._held_key(consultation, participant.id)],
                    [participant.id, self._me, text, self._limits.held_frames],
                )
            )

    def _send(self, room: ClusterRoom, pid: str, text: str) -> None:
        participant = room.participants.get(pid)
        if participant is not None:
            self._give(participant, text)
            return
        record = room.members.get(pid)
        if record is not None:
            self._bus.send(record["instance"], orjson.dumps({"c": room.consultation, "t": [pid], "f": text}))

    def _broadcast(
        self,
        room: ClusterRoom,
        frame: dict[str, Any],
        exclude: Participant | None = None,
        *,
        update: Record | None = None,
        gone: str | None = None,
    ) -> None:
        text = dumps(frame)
        for participant in list(room.participants.values()):
            if participant is not exclude:
                self._give(participant, text)
        instances = {
            r["instance"] for pid, r in room.members.items() if pid not in room.participants
        } - {self._me}
        if not instances:
            return
        envelope: dict[str, Any] = {"c": room.consultation, "f": text}
        if exclude is not None:
            envelope["x"] = exclude.id
        if update is not None:
            envelope["u"] = update
        if gone is not None:
            envelope["g"] = gone
        data = orjson.dumps(envelope)
        for instance in instances:
            self._bus.send(instance, data)

    def _joined(self, participant: Participant, token: str, *, resumed: bool) -> dict[str, Any]:
        room: ClusterRoom = participant.room  # type: ignore[assignment]
        return {
            "type": "joined",
            "v": 1,
            "consultation": room.consultation,
            "you": participant.info(),
            "peers": [_info(r) for pid, r in room.members.items() if pid != participant.id],
            "resumeToken": token,
            "graceSeconds": self._limits.grace_seconds,
            "resumed": resumed,
        }
