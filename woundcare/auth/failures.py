"""Where login attempts are counted between tries: in this process, or in Redis.

With several server instances behind one load balancer, an attacker's tries land on all of
them; counts kept in one process's memory would let each instance grant its own budget.
With Redis configured every instance sees the same counts. An existing account's attempt
count and lock live in the database (``users.failed_logins``, ``users.locked_until``);
these are the short-lived parts:

- the attempts per address in a sliding window, each taken *before* its password is
  checked (a ticket, given back when the attempt does not end in a failure), so a burst of
  parallel tries cannot all pass a count read before any of them was added;
- an account's wait (the growing pause after repeated failures), taken by one attempt at a
  time with set-if-absent, so parallel tries cannot all see it free;
- the attempt count of names that have no account, kept like an account's so that the
  throttle answers the same whether a name exists or not (no rows are created for them).

Every operation is atomic on its own: one Redis command or ``MULTI`` block, or a stretch of
code without an ``await`` in the memory ledger.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict, deque
from typing import Protocol, TypeVar

import redis.asyncio as aioredis

_V = TypeVar("_V")

NAME_WINDOW = 86400.0
"""How long attempts on a name without an account are remembered (an account's count is
kept until it logs in; a day is long enough that nobody can tell the two apart by waiting)."""


class FailureLedger(Protocol):
    async def take_address(self, address: str, window: float, limit: int) -> str | None:
        """Count an attempt from ``address``: a ticket to give back if it does not end in a
        failure, or ``None`` (nothing counted) when ``limit`` are counted in ``window`` seconds."""

    async def give_back_address(self, address: str, ticket: str) -> None: ...

    async def count_name(self, name: str) -> tuple[int, float]:
        """Count an attempt on a name without an account: its attempts, and the seconds until
        they are forgotten."""

    async def keep_name(self, name: str, seconds: float) -> None:
        """Forget the name's attempts ``seconds`` from now (its lock, like an account's)."""

    async def take_wait(self, name: str, seconds: float) -> float:
        """Take the account's wait for ``seconds``: 0.0, or the seconds left of a wait another
        attempt holds."""

    async def set_wait(self, name: str, seconds: float) -> None:
        """The account's wait runs ``seconds`` from now (after a failure)."""

    async def forget(self, name: str) -> None: ...

    async def close(self) -> None: ...


class MemoryLedger:
    """One process's memory: right for a single instance (the default)."""

    MAX_NAMES = 100_000
    """Names (waits, and counts of names without an account) remembered at most; the least
    recently tried go first, so that a spray of made-up names cannot fill memory."""

    def __init__(self) -> None:
        self._waits: dict[str, float] = {}
        self._names: dict[str, tuple[int, float]] = {}
        self._addresses: defaultdict[str, deque[tuple[float, str]]] = defaultdict(deque)

    async def take_address(self, address: str, window: float, limit: int) -> str | None:
        now = time.time()
        attempts = self._addresses[address]
        while attempts and attempts[0][0] < now - window:
            attempts.popleft()
        if len(attempts) >= limit:
            return None
        ticket = secrets.token_hex(4)
        attempts.append((now, ticket))
        return ticket

    async def give_back_address(self, address: str, ticket: str) -> None:
        attempts = self._addresses.get(address)
        if attempts is None:
            return
        for entry in attempts:
            if entry[1] == ticket:
                attempts.remove(entry)
                break
        if not attempts:
            del self._addresses[address]

    async def count_name(self, name: str) -> tuple[int, float]:
        now = time.time()
        count, until = self._names.get(name, (0, 0.0))
        if until <= now:
            count, until = 0, now + NAME_WINDOW
        self._remember(self._names, name, (count + 1, until))
        return count + 1, until - now

    async def keep_name(self, name: str, seconds: float) -> None:
        if name in self._names:
            self._names[name] = (self._names[name][0], time.time() + seconds)

    async def take_wait(self, name: str, seconds: float) -> float:
        now = time.time()
        until = self._waits.get(name, 0.0)
        if until > now:
            return until - now
        self._remember(self._waits, name, now + seconds)
        return 0.0

    async def set_wait(self, name: str, seconds: float) -> None:
        self._remember(self._waits, name, time.time() + seconds)

    async def forget(self, name: str) -> None:
        self._waits.pop(name, None)

    async def close(self) -> None:
        return None

    def _remember(self, entries: dict[str, _V], name: str, value: _V) -> None:
        entries.pop(name, None)  # to the end of the insertion order
        entries[name] = value
        if len(entries) > self.MAX_NAMES:
            del entries[next(iter(entries))]


class RedisLedger:
    """Shared by every instance: a sorted set per address, keys per name, all expiring."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._p = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisLedger:
        return cls(aioredis.from_url(url), prefix)

    def _address_key(self, address: str) -> str:
        return f"{self._p}:login:addr:{address}"

    def _name_key(self, kind: str, name: str) -> str:
        # A digest keeps whatever was typed as a username out of the key space.
        return f"{self._p}:login:{kind}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"

    async def take_address(self, address: str, window: float, limit: int) -> str | None:
        key = self._address_key(address)
        now = time.time()
        ticket = f"{now:.6f}:{secrets.token_hex(4)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, 0, now - window)
            pipe.zadd(key, {ticket: now})
            pipe.zcard(key)
            pipe.expire(key, int(window) + 1)
            _, _, count, _ = await pipe.execute()
        if int(count) > limit:
            await self._redis.zrem(key, ticket)
            return None
        return ticket

    async def give_back_address(self, address: str, ticket: str) -> None:
        await self._redis.zrem(self._address_key(address), ticket)

    async def count_name(self, name: str) -> tuple[int, float]:
        key = self._name_key("name", name)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=int(NAME_WINDOW), nx=True)
            pipe.incr(key)
            pipe.pttl(key)
            _, count, left = await pipe.execute()
        return int(count), max(int(left), 0) / 1000

    async def keep_name(self, name: str, seconds: float) -> None:
        await self._redis.pexpire(self._name_key("name", name), max(1, int(seconds * 1000)))

    async def take_wait(self, name: str, seconds: float) -> float:
        key = self._name_key("wait", name)
        if await self._redis.set(key, 1, px=max(1, int(seconds * 1000)), nx=True):
            return 0.0
        # The holder's wait may end between the two commands: then it is (nearly) free.
        return max(int(await self._redis.pttl(key)), 1) / 1000

    async def set_wait(self, name: str, seconds: float) -> None:
        await self._redis.set(self._name_key("wait", name), 1, px=max(1, int(seconds * 1000)))

    async def forget(self, name: str) -> None:
        await self._redis.delete(self._name_key("wait", name))

    async def close(self) -> None:
        await self._redis.aclose()
