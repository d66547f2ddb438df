"""The deliverer: sends the outbox's events to the webhook endpoints, at least once.

One task per process, started in the app's ``cleanup_ctx`` (:meth:`Deliverer.running`). Each
pass fans new events out (one delivery per endpoint that wants it) and claims the deliveries
that are due, in a write of the database's one writer
(:meth:`woundcare.records.webhooks.Webhooks.deliver`), sends them at once, then sleeps until
an event is committed in this process (:meth:`woundcare.records.events.Events.wait`), the
next retry is due, or the poll interval ends, whichever is first; the poll finds events
other processes committed, and deliveries they left. A pass woken by a commit of this
process claims only if its fan-out made deliveries or one is known to be due: a call
starting, where no endpoint wants its event, costs the fan-out alone. Several instances
share the work on PostgreSQL (each delivery is claimed by one of them), and a restarted one
finds what was left: everything lives in the database.

A failed attempt (no 2xx within the timeout) is tried again after
``base * 2 ** (attempt - 1)`` seconds, capped, times a random factor in [0.5, 1] so that
retries of a receiver's outage do not all come back at once; after the last attempt the
delivery is marked failed. Every attempt of a delivery carries the event's ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..config import Settings
from ..records.events import Events
from ..records.webhooks import Due, Webhooks
from .sender import USER_AGENT, send

log = logging.getLogger(__name__)

BATCH = 50
"""Deliveries claimed, and sent together, per pass."""
FAN_OUT_BATCH = 500
"""Events fanned out per pass. Nothing is sent while they are, and a pass costs about 2 ms of
CPU beside its events (in-process, 500 events fanned out 50 a pass: about 85 µs each; 500 in
one pass: about 48), so a burst of calls starting (every region's after a restart) takes few
passes, and fewer of its events wait for the next poll."""
LEASE_MARGIN = timedelta(seconds=5)
"""A claimed delivery is not due again before its timeout and this have passed."""
IDLE_FLOOR = 0.05
"""Shortest sleep between passes, when a due delivery is held by another instance."""
TASK_NAME = "webhook-deliverer"
"""The deliverer's task; its passes are writes of the database's writer, which runs them."""
PRUNE_EVERY = timedelta(hours=1)
"""How often finished deliveries older than ``webhook_keep_days`` are deleted."""
GATHER_SECONDS = 0.1
"""How long a commit's wake-up waits for more before the pass: a burst of commits (every
region's calls starting again after a restart) shares a pass, where each would otherwise pay
its own pass (1,000 joins each starting a call, alternated runs: 1.17 -> 0.97 ms of CPU per
join with the Core fan-out, when a pass was three transactions; webhook events go out up to
100 ms later)."""


class DeliveryMetrics:
    """The deliverer's figures in /metrics (``woundcare.metrics.Metrics`` registers them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "woundcare_webhook_attempts", "Webhook delivery attempts by result (delivered, http_503, timeout…)",
            ["result"], registry=registry,
        )
        self.deliveries = Counter(
            "woundcare_webhook_deliveries", "Webhook deliveries finished, by outcome (delivered, failed)",
            ["outcome"], registry=registry,
        )
        self.latency = Histogram(
            "woundcare_webhook_delivery_seconds", "From the event to its delivery's 2xx",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600, 14400), registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Retry:
    """The retry schedule."""

    base_seconds: float
    cap_seconds: float
    max_attempts: int

    def after(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (from 1); None: no more."""
        if attempt >= self.max_attempts:
            return None
        delay = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)


class Deliverer:
    def __init__(self, webhooks: Webhooks, events: Events, settings: Settings, metrics: DeliveryMetrics) -> None:
        self._webhooks = webhooks
        self._events = events
        self._metrics = metrics
        self._timeout = settings.webhook_timeout_seconds
        self._poll = settings.webhook_poll_seconds
        self._poll_interval = timedelta(seconds=self._poll)
        self._looked = datetime.min.replace(tzinfo=UTC)
        """When a pass last claimed what was due and read when the next is (at first: never)."""
        self._next_due: datetime | None = None
        """When the next delivery is due, as that pass read it (None: none was waiting)."""
        self._keep = timedelta(days=settings.webhook_keep_days)
        self._pruned: datetime | None = None
        self._retry = Retry(
            settings.webhook_retry_base_seconds, settings.webhook_retry_cap_seconds, settings.webhook_max_attempts
        )

    async def running(self, _app: object) -> AsyncIterator[None]:
        """For ``cleanup_ctx``: deliver from start-up (what a stopped process left first) to shutdown."""
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as http:
            task = asyncio.create_task(self.run(http), name=TASK_NAME)
            yield
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def run(self, http: aiohttp.ClientSession) -> None:
        woken = False
        while True:
            try:
                sleep = await self.deliver_due(http, woken=woken)
            except Exception:
                log.exception("webhook delivery pass failed")
                sleep = self._poll
            woken = await self._events.wait(sleep)
            if woken:
                await asyncio.sleep(GATHER_SECONDS)

    async def deliver_due(self, http: aiohttp.ClientSession, *, woken: bool = False) -> float:
        """One pass; returns how long to sleep before the next one. ``woken``: by a commit of
        this process, whose events are all the pass may find if no delivery is due (a call
        starting, where most sites have no endpoint): it claims only what its fan-out made,
        unless a delivery is known to be due or the poll's look is (which finds other
        instances' work)."""
        now = datetime.now(UTC)
        if self._pruned is None or now - self._pruned >= PRUNE_EVERY:
            await self._webhooks.prune(now - self._keep)
            self._pruned = now
        look = (
            not woken
            or now - self._looked >= self._poll_interval
            or (self._next_due is not None and self._next_due <= now)
        )
        done = await self._webhooks.deliver(
            now, FAN_OUT_BATCH, BATCH, timedelta(seconds=self._timeout) + LEASE_MARGIN, look=look
        )
        if done.looked:
            self._looked, self._next_due = now, done.next_due
        if done.due:
            # A task group, not gather: cancelled (at shutdown), it waits for every attempt to
            # end, where gather returned at the first and left the others settling through
            # connections the database's stop then closed under them (the loop hung at close).
            async with asyncio.TaskGroup() as attempts:
                for d in done.due:
                    attempts.create_task(self._attempt(http, d))
            return 0.0
        now = datetime.now(UTC)
        until_look = max(0.0, (self._looked + self._poll_interval - now).total_seconds())
        if self._next_due is None:
            return until_look
        return min(until_look, max(IDLE_FLOOR, (self._next_due - now).total_seconds()))

    async def _attempt(self, http: aiohttp.ClientSession, due: Due) -> None:
        result = await send(http, due.url, due.secret, due.event_id, due.body, self._timeout)
        now = datetime.now(UTC)
        self._metrics.attempts.labels(result.error or "delivered").inc()
        if result.error is None:
            await self._webhooks.settle(due.delivery_id, now, result.status, None, None)
            self._metrics.deliveries.labels("delivered").inc()
            self._metrics.latency.observe((now - due.occurred_at).total_seconds())
            return
        wait = self._retry.after(due.attempt)
        retry_at = None if wait is None else now + timedelta(seconds=wait)
        await self._webhooks.settle(due.delivery_id, now, result.status, result.error, retry_at)
        # Ids and codes only: the URL may hold a token of the receiver's, the body is not logged.
        if retry_at is None:
            self._metrics.deliveries.labels("failed").inc()
            log.warning(
                "webhook %s to endpoint %d failed for good after %d attempts: %s",
                due.event_id, due.endpoint_id, due.attempt, result.error,
            )
        else:
            log.info(
                "webhook %s to endpoint %d: attempt %d %s, next in %.1f s",
                due.event_id, due.endpoint_id, due.attempt, result.error, wait,
            )
