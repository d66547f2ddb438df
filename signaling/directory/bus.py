"""The Redis transport of :class:`signaling.directory.redis.RedisDirectory`: how one
instance reaches Redis and the other instances.

- **One FIFO of Redis work per instance.** Relays never await: they append a publish (or
  a held-frame push) to this instance's queue, and one worker task runs the queue in
  order, pipelining runs of publishes. What this instance decided in a given order reaches
  Redis, and every other instance, in that order.
- **One channel per instance**, ``<prefix>:i:<instance>``. A frame is published once to
  each instance that hosts a recipient, with the recipients' ids; that instance's
  subscriber hands it to the directory, which hands it to its rooms.
- **Liveness.** ``<prefix>:alive:<instance>`` is refreshed every third of its TTL; the
  instance is listed in ``<prefix>:instances``. Each tick also runs the sweeper, which
  takes over the participants of instances whose key has expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[["aioredis.Redis"], Awaitable[Any]]

_PIPELINE: Final = 256
"""Most publishes sent in one round trip."""
_FLUSH_SECONDS: Final = 2.0
"""How long a stopping instance waits for its queued Redis work."""
_STOP_SECONDS: Final = 2.0
"""How long a stopping instance waits for its tasks to end."""


def _cancelled() -> bool:
    """redis-py may turn a cancellation inside a command into a connection error; a loop
    that catches those must not swallow its own cancellation."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RedisBus:
    """The Redis connection of one instance: ordered work queue, subscription, liveness."""

    def __init__(self, url: str, instance: str, *, prefix: str = "wc", ttl_seconds: float = 5.0) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.instance = instance
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.redis: aioredis.Redis = aioredis.from_url(url)
        self._jobs: deque[tuple[str, Any, Any]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._pubsub: Any = None
        self._on_message: Callable[[bytes], None] = lambda data: None
        self._on_tick: Callable[[], Awaitable[None]] | None = None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def channel(self, instance: str) -> str:
        return self.key("i", instance)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, on_message: Callable[[bytes], None], on_tick: Callable[[], Awaitable[None]]) -> None:
        """Connect, subscribe to this instance's channel, announce it, start the tasks."""
        self._on_message = on_message
        self._on_tick = on_tick
        await self.redis.ping()
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel(self.instance))
        await self.beat()
        self._tasks = [
            asyncio.create_task(self._work(), name="signaling-bus-work"),
            asyncio.create_task(self._listen(), name="signaling-bus-listen"),
            asyncio.create_task(self._tick(), name="signaling-bus-tick"),
        ]

    async def stop(self) -> None:
        """Run what is queued (briefly), stop the tasks, and let the others sweep at once."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), _FLUSH_SECONDS)
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=_STOP_SECONDS)
            if stuck:
                log.warning("signaling bus: %d tasks did not stop", len(stuck))
        self._tasks = []
        for job in self._jobs:
            if job[0] == "run" and job[2] is not None and not job[2].done():
                job[2].cancel()
        self._jobs.clear()
        with suppress(RedisError, OSError):
            # Gone now, not after the TTL: the survivors take over this instance's participants.
            await self.redis.delete(self.key("alive", self.instance))
        if self._pubsub is not None:
            with suppress(RedisError, OSError):
                await self._pubsub.aclose()
        await self.redis.aclose()

    async def beat(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key("alive", self.instance), b"1", px=int(self.ttl_seconds * 1000))
            pipe.sadd(self.key("instances"), self.instance)
            await pipe.execute()

    async def flush(self) -> None:
        """Until the queue is empty and the worker idle."""
        while self._jobs or not self._idle.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    # -- the ordered queue -----------------------------------------------------------

    def send(self, instance: str, data: bytes) -> None:
        """Publish ``data`` to ``instance``'s channel, after everything queued before."""
        self._push(("pub", self.channel(instance), data))

    def submit(self, work: Work) -> None:
        """Run ``work(redis)`` after everything queued before; errors are logged."""
        self._push(("run", work, None))

    async def call(self, work: Work) -> Any:
        """Run ``work(redis)`` in queue order and return its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._push(("run", work, future))
        return await future

    def _push(self, job: tuple[str, Any, Any]) -> None:
        self._jobs.append(job)
        self._idle.clear()
        self._wake.set()

    async def _work(self) -> None:
        jobs = self._jobs
        while True:
            if not jobs:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            kind, first, second = jobs.popleft()
            if kind == "pub":
                pipe = self.redis.pipeline(transaction=False)
                pipe.publish(first, second)
                while jobs and jobs[0][0] == "pub" and len(pipe) < _PIPELINE:
                    _, channel, data = jobs.popleft()
                    pipe.publish(channel, data)
                try:
                    await pipe.execute()
                except (RedisError, OSError):
                    if self._stopping or _cancelled():
                        raise asyncio.CancelledError from None
                    # At most once, as on one instance: the frames are lost, the room goes on.
                    log.exception("signaling bus: %d publishes lost", len(pipe))
                finally:
                    await pipe.reset()
                continue
            future: asyncio.Future[Any] | None = second
            try:
                result = await first(self.redis)
            except asyncio.CancelledError:
                if future is not None and not future.done():
                    future.cancel()
                raise
            except Exception as exc:
                if self._stopping or _cancelled():
                    if future is not None and not future.done():
                        future.cancel()
                    raise asyncio.CancelledError from None
                if future is None:
                    log.exception("signaling bus: queued work failed")
                elif not future.done():
                    future.set_exception(exc)
            else:
                if future is not None and not future.done():
                    future.set_result(result)

    # -- subscription and liveness ---------------------------------------------------

    async def _listen(self) -> None:
        while not self._stopping:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        self._on_message(message["data"])
                    except Exception:
                        log.exception("signaling bus: message handling failed")
            except (RedisError, OSError):
                if self._stopping or _cancelled():
                    raise asyncio.CancelledError from None
                log.warning("signaling bus: subscription lost; reconnecting", exc_info=True)
                await asyncio.sleep(0.5)

    async def _tick(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.ttl_seconds / 3)
            try:
                await self.beat()
                if self._on_tick is not None:
                    await self._on_tick()
            except Exception:
                if self._stopping or _cancelled():
                    raise asyncio.CancelledError from None
                log.warning("signaling bus: heartbeat or sweep failed", exc_info=True)
