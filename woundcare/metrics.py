"""Prometheus metrics at ``/metrics``: one registry per app (several apps share a process in
tests), fed by the HTTP middleware and by signaling's room events. Labels are codes and
roles, never ids, so no label can carry patient data."""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from collections.abc import Iterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from signaling.handler import ROOMS, SOCKETS, STATS
from signaling.stats import Stats
from signaling.protocol import Role
from signaling.sink import EventKind, EventSink, RoomEvent

from .appkeys import SERVICES
from .webhooks.deliverer import DeliveryMetrics

log = logging.getLogger(__name__)


class _SignalingCollector(Collector):
    """Signaling's own counters (``signaling.stats``), read at scrape time."""

    def __init__(self) -> None:
        self.stats: Stats | None = None

    def collect(self) -> Iterator[Metric]:
        if self.stats is None:
            return
        relayed = CounterMetricFamily("woundcare_messages_relayed", "Signaling frames relayed")
        relayed.add_metric([], self.stats.relayed)
        yield relayed
        errors = CounterMetricFamily("woundcare_signaling_errors", "Signaling error frames by code", labels=["code"])
        for code, count in sorted(self.stats.errors.items()):
            errors.add_metric([code], count)
        yield errors


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.signaling = _SignalingCollector()
        r.register(self.signaling)
        self.sockets = Gauge("woundcare_ws_sockets", "Open signaling WebSockets", registry=r)
        self.rooms = Gauge("woundcare_rooms", "Consultation rooms with someone in them", registry=r)
        self.room_events = Counter(
            "woundcare_room_events", "Joins, drops, rejoins, leaves and refusals", ["kind", "role"], registry=r
        )
        self._room_event_children: dict[tuple[EventKind, Role | None], Counter] = {}
        self.requests = Counter(
            "woundcare_http_requests", "API requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "woundcare_http_request_seconds", "API request latency", ["route"], registry=r
        )
        self.upload_bytes = Histogram(
            "woundcare_upload_bytes",
            "Snapshot upload sizes",
            buckets=(64e3, 256e3, 1e6, 2e6, 4e6, 8e6, 16e6, 32e6),
            registry=r,
        )
        self.upload_seconds = Histogram(
            "woundcare_upload_seconds", "Snapshot upload latency (check, seal, store)", registry=r
        )
        self.join_to_media = Histogram(
            "woundcare_join_to_media_seconds",
            "From a viewer's join to its first decoded frame, as the clients report it",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
            registry=r,
        )
        self.webhooks = DeliveryMetrics(r)
        self.webhook_pending = Gauge(
            "woundcare_webhook_pending", "Webhook events and deliveries not yet delivered nor failed", registry=r
        )
        self.webhook_oldest = Gauge(
            "woundcare_webhook_oldest_pending_seconds", "Age of the oldest event still to be delivered", registry=r
        )

    def room_event(self, event: RoomEvent) -> None:
        key = (event.kind, event.role)
        child = self._room_event_children.get(key)
        if child is None:
            # ``labels`` takes a lock and builds its key from strings on every call: a join's
            # or a leave's events look their child up here instead.
            child = self._room_event_children[key] = self.room_events.labels(
                event.kind.value, event.role.value if event.role else "none"
            )
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


class MeteredSink:
    """Counts room events on their way to the real sink."""

    def __init__(self, inner: EventSink, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def emit(self, event: RoomEvent) -> None:
        self._metrics.room_event(event)
        self._inner.emit(event)

    async def stored(self) -> None:
        await self._inner.stored()


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    metrics = request.config_dict[METRICS]
    # The route template, not the path: a path holds ids.
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.requests.labels(route, str(status)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)


def metrics_handler(token: str | None) -> Handler:
    """``/metrics`` for a scraper that sends ``Authorization: Bearer <token>``; for anyone else,
    and for everyone while no token is set, it does not exist (404): traffic, room and error
    counts are for monitoring, not for the network."""
    expected = f"Bearer {token}".encode() if token else None

    async def scrape(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if expected is None or not hmac.compare_digest(given, expected):
            raise web.HTTPNotFound()
        await _read_backlog(request)
        return _render(request)

    return scrape


async def _read_backlog(request: web.Request) -> None:
    """The webhook outbox is shared by every instance: its backlog is read from the database.
    A scrape while the database is down still answers (the gauges keep their last values):
    that is when monitoring is needed most."""
    metrics = request.config_dict[METRICS]
    try:
        backlog = await request.config_dict[SERVICES].webhooks.backlog()
    except Exception:
        log.warning("webhook backlog unreadable for /metrics", exc_info=True)
        return
    metrics.webhook_pending.set(backlog.pending)
    metrics.webhook_oldest.set((datetime.now(UTC) - backlog.oldest).total_seconds() if backlog.oldest else 0.0)


def _render(request: web.Request) -> web.Response:
    """Prometheus text format."""
    app = request.config_dict
    metrics = app[METRICS]
    # Gauges are read at scrape time rather than tracked on every change.
    metrics.sockets.set(len(app[SOCKETS]))
    metrics.rooms.set(len(app[ROOMS]))
    metrics.signaling.stats = app[STATS]
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
