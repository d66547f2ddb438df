"""Where failed logins are remembered between tries: in this process, or in Redis.

With several server instances behind one load balancer, an attacker's tries land on all of
them; counts kept in one process's memory would let each instance grant its own budget.
With Redis configured every instance sees the same counts. The failure count and the lock
themselves live in the database (``users.failed_logins``, ``users.locked_until``); these
are the short-lived parts: the time of an account's last failure (for the growing wait)
and the failures per address in a sliding window.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from typing import Protocol

import redis.asyncio as aioredis


class FailureLedger(Protocol):
    async def address_failures(self, address: str, window: float) -> int:
        """Failures from ``address`` in the last ``window`` seconds."""

    async def add_address_failure(self, address: str, window: float) -> None: ...

    async def last_failure(self, user: int) -> float | None:
        """Wall-clock time of the account's last failure, if remembered."""

    async def set_last_failure(self, user: int, at: float, keep: float) -> None:
        """Remember it for ``keep`` seconds (long enough for the longest wait)."""

    async def forget(self, user: int) -> None: ...

    async def close(self) -> None: ...


class MemoryLedger:
    """One process's memory: right for a single instance (the default)."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._addresses: defaultdict[str, deque[float]] = defaultdict(deque)

    async def address_failures(self, address: str, window: float) -> int:
        failures = self._addresses.get(address)
        if failures is None:
            return 0
        horizon = time.time() - window
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._addresses[address]
        return len(failures)

    async def add_address_failure(self, address: str, window: float) -> None:
        self._addresses[address].append(time.time())

    async def last_failure(self, user: int) -> float | None:
        return self._last.get(user)

    async def set_last_failure(self, user: int, at: float, keep: float) -> None:
        self._last[user] = at

    async def forget(self, user: int) -> None:
        self._last.pop(user, None)

    async def close(self) -> None:
        return None


class RedisLedger:
    """Shared by every instance: a sorted set per address, a key per account, both expiring."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._p = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisLedger:
        return cls(aioredis.from_url(url), prefix)

    def _address_key(self, address: str) -> str:
        return f"{self._p}:login:addr:{address}"

    def _user_key(self, user: int) -> str:
        return f"{self._p}:login:last:{user}"

    async def address_failures(self, address: str, window: float) -> int:
        key = self._address_key(address)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, 0, time.time() - window)
            pipe.zcard(key)
            _, count = await pipe.execute()
        return int(count)

    async def add_address_failure(self, address: str, window: float) -> None:
        key = self._address_key(address)
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            # A random member: two failures in the same microsecond must both count.
            pipe.zadd(key, {f"{now:.6f}:{secrets.token_hex(4)}": now})
            pipe.expire(key, int(window) + 1)
            await pipe.execute()

    async def last_failure(self, user: int) -> float | None:
        value = await self._redis.get(self._user_key(user))
        return float(value) if value is not None else None

    async def set_last_failure(self, user: int, at: float, keep: float) -> None:
        await self._redis.set(self._user_key(user), repr(at), ex=max(1, int(keep) + 1))

    async def forget(self, user: int) -> None:
        await self._redis.delete(self._user_key(user))

    async def close(self) -> None:
        await self._redis.aclose()
