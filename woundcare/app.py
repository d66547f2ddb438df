"""The application factory: wires signaling, the API and the resources they need."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import suppress
from functools import partial

from aiohttp import web, web_response
from aiohttp.typedefs import Handler, Middleware

import signaling.handler
from signaling.limits import Limits

from .api import (
    assessments,
    consents,
    consultations,
    devices,
    fhir,
    guests,
    health,
    ice,
    journal,
    oidc,
    pages,
    patients,
    pilot,
    quality,
    recordings,
    regions,
    retention,
    session,
    snapshots,
)
from .api.errors import error_middleware
from .api.forwarded import PROXY_TRUST, ProxyTrust, client_address
from .api.guard import guard_middleware
from .api.health import DRAINING
from .appkeys import QUEUE, SERVICES
from .audit.log import AuditLog
from .auth.join import JoinAdmission
from .auth.revocation import RevocationWatch
from .config import Settings
from .demo import seed_demo
from .inflight import IN_FLIGHT, InFlight, in_flight_middleware
from .logs import request_id_middleware
from .metrics import METRICS, MeteredSink, Metrics, metrics_handler, metrics_middleware
from .records.queue import Queue
from .services import build_services
from .webhooks.deliverer import Deliverer


log = logging.getLogger(__name__)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    async with services:
        if services.settings.demo:
            await seed_demo(services)
        await services.snapshots.recover()
        await services.session_log.start()
        watch = RevocationWatch(
            services.database, app[signaling.handler.ROOMS], services.settings.revocation_poll_seconds
        )
        tasks = [
            asyncio.create_task(watch.run(), name="revocation-watch"),
            asyncio.create_task(_checkpoints(services.audit), name="audit-checkpoints"),
        ]
        yield
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await services.session_log.stop()


CHECKPOINT_SECONDS = 300.0
"""A signed audit checkpoint at least this often: entries after the last one are the only
ones a database editor could drop unseen."""


async def _checkpoints(audit: AuditLog) -> None:
    while True:
        await asyncio.sleep(CHECKPOINT_SECONDS)
        try:
            await audit.checkpoint()
        except Exception:
            log.exception("audit checkpoint failed")


async def _set(event: asyncio.Event) -> None:
    """Unready from the moment shutdown begins, so the load balancer stops sending joins."""
    event.set()


SIGNALING_PATH = "/ws"


def _not_for_signaling(middleware: Middleware) -> Middleware:
    """``middleware`` for every request but a signaling socket's. A middleware that only
    passes the socket on still waits in a suspended coroutine for as long as the socket
    lives, some 300 bytes each; this one hands the socket's handler back without a frame."""

    @web.middleware
    def skip(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.path == SIGNALING_PATH:
            return handler(request)
        return middleware(request, handler)

    return skip


SERVER_NAME = "woundcare"
"""The ``Server`` header: no Python or aiohttp version for a scanner to match."""


async def _hardened(request: web.Request, response: web.StreamResponse) -> None:
    """The API's defaults, set once here rather than per route: no caching (patient data, the
    login's CSRF token) and no content sniffing. A route that sets its own ``Cache-Control``
    keeps it."""
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_message_bytes=settings.max_message_bytes,
        heartbeat_seconds=settings.heartbeat_seconds,
        join_timeout_seconds=settings.join_timeout_seconds,
        rate_per_second=settings.rate_per_second,
        burst=settings.rate_burst,
        grace_seconds=settings.grace_seconds,
    )


def create_app(settings: Settings) -> web.Application:
    services = build_services(settings)
    # Uploads are streamed by their handler with their own cap; this bounds everything else.
    app = web.Application(
        # The request id too: a socket's upgrade answer is sent before it could be echoed, and
        # the id's context would be kept for the socket's life (about 0.4 KB each).
        middlewares=list(
            map(
                _not_for_signaling,
                (request_id_middleware, in_flight_middleware, metrics_middleware, error_middleware, guard_middleware),
            )
        ),
        client_max_size=settings.snapshot_max_bytes + 1024 * 1024,
    )
    app.on_response_prepare.append(_hardened)
    # aiohttp writes its default ``Server`` into every answer, also the 400s of its HTTP parser,
    # which come before any application code; naming the server there covers them all.
    web_response.SERVER_SOFTWARE = SERVER_NAME
    app[SERVICES] = services
    app[PROXY_TRUST] = ProxyTrust(settings.trusted_proxies, settings.proxy_header)
    metrics = app[METRICS] = Metrics()
    draining = app[DRAINING] = asyncio.Event()
    app[IN_FLIGHT] = InFlight()
    app.on_shutdown.append(lambda _: _set(draining))
    app.cleanup_ctx.append(_resources)
    signaling.handler.setup(
        app,
        path=SIGNALING_PATH,
        admission=JoinAdmission(services.invitations, services.database),
        sink=MeteredSink(services.session_log, metrics),
        limits=limits_from(settings),
        redis_url=settings.redis_url,
        instance=settings.instance_name,
        redis_prefix=settings.redis_prefix,
        instance_ttl_seconds=settings.instance_ttl_seconds,
        client_address=client_address,
    )
    # Recordings are finished at shutdown before the database closes.
    app.cleanup_ctx.append(services.recording_uploads.running)
    queue = app[QUEUE] = Queue(
        services.consultations,
        app[signaling.handler.ROOMS],
        services.session_log,
        services.audit,
        partial(consultations.close_consultation, app, message="the consultation was abandoned"),
        settings.abandon_seconds,
    )
    app.cleanup_ctx.append(queue.running)
    deliverer = Deliverer(services.webhooks, services.events, settings, metrics.webhooks)
    app.cleanup_ctx.append(deliverer.running)
    oidc.setup(app, settings, settings.signing_key())
    api = (
        session,
        oidc,
        regions,
        ice,
        patients,
        consultations,
        guests,
        consents,
        assessments,
        snapshots,
        recordings,
        quality,
        retention,
        fhir,
        journal,
        pilot,
        devices,
    )
    for module in api:
        app.add_routes(module.routes)
    app.add_routes(health.routes)
    token = settings.metrics_token
    app.router.add_get("/metrics", metrics_handler(token.get_secret_value() if token else None))
    pages.setup(app, settings.public_url)
    return app
