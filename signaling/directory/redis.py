"""The rooms' shared state in Redis, for several server instances (``redis_url`` set).

What all instances must agree on lives in Redis, changed only by the Lua scripts below
(each runs atomically):

| key | holds |
|---|---|
| ``room:<consultation>`` | hash: participant id -> record (JSON: id, role, name, subject, region, sends, instance, state, digest, since, deadline) |
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
``reconnecting`` ones keep their deadline. Envelopes go to the owner's channel
(:mod:`signaling.directory.bus`), in the order this instance sent them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from ..protocol import CloseCode, ErrorCode, Presence, Role
from ..rules import sends_for
from . import Claimed, Closing, Envelope, Inbox, Joined, Member, Refused
from .bus import RedisBus

log = logging.getLogger(__name__)

_SWEEP_LOCK_SECONDS: Final = 30

# KEYS: room, resume, owned. ARGV: id, record, role, ref, subject, prefix, consultation.
# The one-nurse rule of signaling.rules.nurse_place, decided here atomically: a nurse's own
# place held in grace (same subject, reconnecting) is released for her; any other is taken.
_JOIN: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'dup'} end
local released = nil
if ARGV[3] == 'nurse' then
  for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
    local rec = cjson.decode(raw)
    if rec.role == 'nurse' then
      if rec.state ~= 'reconnecting' or rec.subject ~= ARGV[5] then return {'taken'} end
      local p, c = ARGV[6], ARGV[7]
      redis.call('HDEL', KEYS[1], rec.id)
      redis.call('DEL', p .. 'resume:' .. rec.digest, p .. 'held:' .. c .. ':' .. rec.id)
      redis.call('SREM', p .. 'owned:' .. rec.instance, c .. ' ' .. rec.id)
      released = raw
      break
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
if released then return {'ok', redis.call('HVALS', KEYS[1]), released} end
return {'ok', redis.call('HVALS', KEYS[1])}
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
local old_instance = rec.instance
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
return {'ok', old_instance, raw, held, redis.call('HVALS', room)}
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


def _record(member: Member) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": member.id,
        "role": member.role.value,
        "name": member.name,
        "subject": member.subject,
        "region": member.region,
        "sends": sorted(member.may_send),
        "instance": member.instance,
        "state": member.state.value,
        "digest": member.digest.hex(),
        "since": member.since,
    }
    if member.deadline is not None:
        record["deadline"] = member.deadline
    return record


def _member(record: dict[str, Any], consultation: str) -> Member:
    role = Role(record["role"])
    sends = record.get("sends")
    return Member(
        consultation,
        record["id"],
        role,
        record["name"],
        record["subject"],
        record["region"],
        frozenset(sends) if sends is not None else sends_for(role),
        record["instance"],
        Presence(record["state"]),
        bytes.fromhex(record["digest"]),
        record.get("since", 0.0),
        record.get("deadline"),
    )


def _members(raw: list[bytes], consultation: str) -> list[Member]:
    members = (_member(orjson.loads(r), consultation) for r in raw)
    return sorted(members, key=lambda m: m.since)


def _encode(envelope: Envelope) -> bytes:
    """The envelope on the wire between instances."""
    consultation = envelope.consultation
    if envelope.closing is not None:
        closing = envelope.closing
        return orjson.dumps(
            {"k": "close", "c": consultation, "code": int(closing.code), "error": closing.error.value,
             "message": closing.message}
        )
    if envelope.replaced is not None:
        return orjson.dumps({"k": "replaced", "c": consultation, "p": envelope.replaced})
    data: dict[str, Any] = {"c": consultation, "f": envelope.text}
    if envelope.targets is not None:
        data["t"] = envelope.targets
    if envelope.exclude is not None:
        data["x"] = envelope.exclude
    if envelope.update is not None:
        data["u"] = _record(envelope.update)
    if envelope.gone is not None:
        data["g"] = envelope.gone
    return orjson.dumps(data)


def _decode(raw: bytes) -> Envelope:
    data = orjson.loads(raw)
    consultation = data["c"]
    kind = data.get("k")
    if kind == "close":
        closing = Closing(CloseCode(data["code"]), ErrorCode(data["error"]), data["message"])
        return Envelope(consultation, closing=closing)
    if kind == "replaced":
        return Envelope(consultation, replaced=data["p"])
    targets = data.get("t")
    update = data.get("u")
    return Envelope(
        consultation,
        data["f"],
        targets=tuple(targets) if targets is not None else None,
        exclude=data.get("x"),
        update=_member(update, consultation) if update is not None else None,
        gone=data.get("g"),
    )


class RedisDirectory:
    """Rooms shared by every instance on the same Redis and key prefix."""

    def __init__(
        self, url: str, instance: str, *, prefix: str = "wc", ttl_seconds: float = 5.0, grace_seconds: float = 60.0
    ) -> None:
        self.instance = instance
        self._bus = RedisBus(url, instance, prefix=prefix, ttl_seconds=ttl_seconds)
        self._grace = grace_seconds
        self._p = f"{prefix}:"
        self._inbox: Inbox | None = None
        redis = self._bus.redis
        self._join_script = redis.register_script(_JOIN)
        self._claim_script = redis.register_script(_CLAIM)
        self._mark_script = redis.register_script(_MARK)
        self._hold_script = redis.register_script(_HOLD)
        self._remove_script = redis.register_script(_REMOVE)
        self._take_over_script = redis.register_script(_TAKE_OVER)
        self._close_script = redis.register_script(_CLOSE)

    @asynccontextmanager
    async def connected(self, inbox: Inbox) -> AsyncIterator[None]:
        """Connect and subscribe, take back what this instance name owned before a crash,
        then heartbeat and sweep until the application stops."""
        self._inbox = inbox
        await self._bus.start(self._on_message, self.sweep)
        await self._take_over_all(self.instance)
        try:
            yield
        finally:
            await self._bus.stop()
            self._inbox = None

    # -- keys ------------------------------------------------------------------------

    def _room_key(self, consultation: str) -> str:
        return f"{self._p}room:{consultation}"

    def _held_key(self, consultation: str, pid: str) -> str:
        return f"{self._p}held:{consultation}:{pid}"

    def _owned_key(self, instance: str) -> str:
        return f"{self._p}owned:{instance}"

    def _resume_key(self, digest: bytes) -> str:
        return f"{self._p}resume:{digest.hex()}"

    # -- the room's records ----------------------------------------------------------

    async def join(self, member: Member) -> Joined | Refused:
        consultation = member.consultation
        reply = await self._bus.call(
            partial(
                self._join_script,
                [self._room_key(consultation), self._resume_key(member.digest), self._owned_key(self.instance)],
                [
                    member.id,
                    orjson.dumps(_record(member)),
                    member.role.value,
                    f"{consultation} {member.id}",
                    member.subject,
                    self._p,
                    consultation,
                ],
            )
        )
        if reply[0] == b"dup":
            return Refused.IN_USE
        if reply[0] == b"taken":
            return Refused.TAKEN
        released = _member(orjson.loads(reply[2]), consultation) if len(reply) > 2 else None
        return Joined(_members(reply[1], consultation), released)

    async def claim(self, consultation: str, role: Role, digest: bytes, new_digest: bytes) -> Claimed | Refused:
        reply = await self._bus.call(
            partial(
                self._claim_script,
                [self._resume_key(digest)],
                [consultation, role.value, new_digest.hex(), self.instance, self._p],
            )
        )
        if reply[0] == b"role":
            return Refused.OTHER_ROLE
        if reply[0] != b"ok":
            return Refused.UNKNOWN
        _, previous, raw, held, all_records = reply
        return Claimed(
            _member(orjson.loads(raw), consultation),
            _text(previous),
            [_text(frame) for frame in held],
            _members(all_records, consultation),
        )

    def mark(self, member: Member) -> None:
        self._bus.submit(
            partial(
                self._mark_script,
                [self._room_key(member.consultation)],
                [member.id, self.instance, member.digest.hex(), repr(member.deadline)],
            )
        )

    def hold(self, member: Member, text: str, capacity: int) -> None:
        consultation = member.consultation
        self._bus.submit(
            partial(
                self._hold_script,
                [self._room_key(consultation), self._held_key(consultation, member.id)],
                [member.id, self.instance, text, capacity],
            )
        )

    def discard(self, member: Member) -> None:
        self._bus.submit(partial(self._remove, member, only_reconnecting=False))

    async def expire(self, member: Member) -> bool:
        return bool(await self._bus.call(partial(self._remove, member, only_reconnecting=True)))

    async def _remove(self, member: Member, redis: aioredis.Redis, *, only_reconnecting: bool) -> bool:
        """Out of Redis, if this instance still owns it; True if it did."""
        consultation = member.consultation
        reply = await self._remove_script(
            [
                self._room_key(consultation),
                self._resume_key(member.digest),
                self._held_key(consultation, member.id),
                self._owned_key(self.instance),
            ],
            [
                member.id,
                self.instance,
                member.digest.hex(),
                "1" if only_reconnecting else "0",
                f"{consultation} {member.id}",
            ],
        )
        return bool(reply[0] == b"ok")

    async def members(self, consultations: list[str]) -> list[list[Member]]:
        async def read(redis: aioredis.Redis) -> list[list[bytes]]:
            pipe = redis.pipeline(transaction=False)
            for consultation in consultations:
                pipe.hvals(self._room_key(consultation))
            return await pipe.execute()

        found = await self._bus.call(read)
        return [_members(raw, c) for c, raw in zip(consultations, found, strict=True)]

    # -- envelopes -------------------------------------------------------------------

    def send(self, instance: str, envelope: Envelope) -> None:
        self._bus.send(instance, _encode(envelope))

    def publish(self, envelope: Envelope) -> None:
        data = _encode(envelope)

        async def fan_out(redis: aioredis.Redis) -> None:
            records = await redis.hvals(self._room_key(envelope.consultation))
            for instance in {orjson.loads(r)["instance"] for r in records}:
                self._bus.send(instance, data)

        self._bus.submit(fan_out)

    def close(self, envelope: Envelope) -> None:
        data = _encode(envelope)
        consultation = envelope.consultation

        async def end(redis: aioredis.Redis) -> None:
            records = await self._close_script([self._room_key(consultation)], [self._p, consultation])
            for instance in {orjson.loads(r)["instance"] for r in records} | {self.instance}:
                self._bus.send(instance, data)

        self._bus.submit(end)

    def _on_message(self, data: bytes) -> None:
        if self._inbox is not None:
            self._inbox.receive(_decode(data))

    # -- instances that died ---------------------------------------------------------

    async def sweep(self) -> None:
        """Take over the participants of every instance whose liveness key has expired;
        one survivor per dead instance (``sweep:<instance>`` lock)."""
        redis = self._bus.redis
        for raw in await redis.smembers(f"{self._p}instances"):
            name = _text(raw)
            if name == self.instance or await redis.exists(f"{self._p}alive:{name}"):
                continue
            if not await redis.set(f"{self._p}sweep:{name}", self.instance, nx=True, ex=_SWEEP_LOCK_SECONDS):
                continue
            log.warning("signaling instance %s is gone; taking over its participants", name)
            await self._take_over_all(name)
            await redis.srem(f"{self._p}instances", name)

    async def _take_over_all(self, instance: str) -> None:
        for ref in await self._bus.redis.smembers(self._owned_key(instance)):
            await self._bus.call(partial(self._take_over, instance, _text(ref)))

    async def _take_over(self, dead: str, ref: str, redis: aioredis.Redis) -> None:
        consultation, pid = ref.split(" ", 1)
        deadline = time.time() + self._grace
        reply = await self._take_over_script(
            [self._room_key(consultation)], [pid, dead, self.instance, repr(deadline), self._p, ref]
        )
        if reply[0] != b"ok" or self._inbox is None:
            return
        _, before, raw, all_records = reply
        member = _member(orjson.loads(raw), consultation)
        if member.deadline is None:
            member = replace(member, deadline=deadline)
        self._inbox.adopt(member, Presence(_text(before)), _members(all_records, consultation))
