"""The application factory: wires signaling, the API and the resources they need."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import suppress
from datetime import timedelta
from functools import partial
from pathlib import Path

from aiohttp import web, web_response
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy import make_url

import signaling.handler
from signaling.limits import Limits

from .api import (
    assessments,
    consents,
    consultations,
    devices,
    fhir,
    health,
    ice,
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
from .appkeys import (
    ACCESS_LOG,
    ACCOUNTS,
    ASSESSMENTS,
    AUDIT,
    CONSENTS,
    CONSULTATIONS,
    DATABASE,
    DEVICES,
    INVITATIONS,
    KEYRING,
    LOGIN,
    PATIENTS,
    QUALITY,
    QUEUE,
    RECORDERS,
    RECORDINGS,
    RETENTION,
    SESSION_LOG,
    SESSIONS,
    SETTINGS,
    SNAPSHOTS,
)
from .audit.chain import CheckpointSigner
from .audit.log import AuditLog
from .auth.devices import Devices
from .auth.invitations import Invitations
from .auth.join import JoinAdmission
from .auth.failures import MemoryLedger, RedisLedger
from .auth.login import Login, LoginPolicy
from .auth.revocation import RevocationWatch
from .auth.sessions import Sessions
from .auth.totp import TotpBox
from .config import Settings
from .crypto import Keyring, MasterKey
from .db.database import Database
from .demo import seed_demo
from .inflight import IN_FLIGHT, InFlight, in_flight_middleware
from .logs import request_id_middleware
from .metrics import METRICS, MeteredSink, Metrics, metrics_handler, metrics_middleware
from .recording.recorder import Recorders
from .records.access_log import AccessLog
from .records.accounts import Accounts
from .records.assessments import Assessments
from .records.consents import Consents
from .records.consultations import Consultations
from .records.imagework import ImageWork
from .records.patients import Patients
from .records.quality import Quality
from .records.queue import Queue
from .records.recordings import Recordings
from .records.retention import Retention
from .records.session_log import SessionLog
from .records.snapshots import Snapshots
from .storage.blobs import BlobStore
from .storage.intents import Intents
from .storage.private import private_dir, private_file


log = logging.getLogger(__name__)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    db = app[DATABASE]
    await db.start()
    if app[SETTINGS].demo:
        await seed_demo(db, app[PATIENTS])
    await app[SNAPSHOTS].recover()
    await app[RECORDINGS].recover()
    await app[SESSION_LOG].start()
    watch = RevocationWatch(db, app[signaling.handler.ROOMS], app[SETTINGS].revocation_poll_seconds)
    tasks = [
        asyncio.create_task(watch.run(), name="revocation-watch"),
        asyncio.create_task(_checkpoints(app[AUDIT]), name="audit-checkpoints"),
    ]
    yield
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    await app[SESSION_LOG].stop()
    await app[LOGIN].close()
    await db.stop()
    app[IMAGE_WORK].close()


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


IMAGE_WORK = web.AppKey("image_work", ImageWork)


SERVER_NAME = "woundcare"
"""The ``Server`` header: no Python or aiohttp version for a scanner to match."""


async def _hardened(request: web.Request, response: web.StreamResponse) -> None:
    """The API's defaults, set once here rather than per route: no caching (patient data, the
    login's CSRF token) and no content sniffing. A route that sets its own ``Cache-Control``
    keeps it."""
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def _private_data(settings: Settings) -> None:
    """The data folder 0700 and a SQLite database 0600 before SQLite opens it (its WAL and
    shared-memory files take the database file's mode), whatever the umask."""
    private_dir(settings.data_dir)
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path, "-wal", "-shm", "-journal")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_message_bytes=settings.max_message_bytes,
        heartbeat_seconds=settings.heartbeat_seconds,
        join_timeout_seconds=settings.join_timeout_seconds,
        rate_per_second=settings.rate_per_second,
        burst=settings.rate_burst,
        grace_seconds=settings.grace_seconds,
    )


def master_keys(settings: Settings) -> list[MasterKey]:
    if settings.master_key is not None:
        current = MasterKey.from_env_value(settings.master_key.get_secret_value())
    else:
        current = MasterKey.from_file(settings.master_key_file or settings.data_dir / "master.key", create=True)
    return [current, *(MasterKey.from_env_value(k.get_secret_value()) for k in settings.old_master_keys)]


def create_app(settings: Settings) -> web.Application:
    _private_data(settings)
    # Uploads are streamed by their handler with their own cap; this bounds everything else.
    app = web.Application(
        middlewares=[
            request_id_middleware,
            *map(_not_for_signaling, (in_flight_middleware, metrics_middleware, error_middleware, guard_middleware)),
        ],
        client_max_size=settings.snapshot_max_bytes + 1024 * 1024,
    )
    app.on_response_prepare.append(_hardened)
    # aiohttp writes its default ``Server`` into every answer, also the 400s of its HTTP parser,
    # which come before any application code; naming the server there covers them all.
    web_response.SERVER_SOFTWARE = SERVER_NAME
    db = Database(settings.db_url, migrate=settings.auto_migrate)
    secret = settings.signing_key()
    invitations = Invitations(secret, settings.invitation_ttl_seconds)
    session_log = SessionLog(db)
    audit = AuditLog(db, CheckpointSigner.from_secrets(secret))
    keyring = Keyring(db.sessions, master_keys(settings))
    app[SETTINGS] = settings
    app[PROXY_TRUST] = ProxyTrust(settings.trusted_proxies, settings.proxy_header)
    metrics = app[METRICS] = Metrics()
    draining = app[DRAINING] = asyncio.Event()
    app[IN_FLIGHT] = InFlight()
    app.on_shutdown.append(lambda _: _set(draining))
    app[DATABASE] = db
    app[INVITATIONS] = invitations
    app[SESSION_LOG] = session_log
    app[AUDIT] = audit
    app[KEYRING] = keyring
    app[ACCOUNTS] = Accounts(db)
    app[SESSIONS] = Sessions(
        db, timedelta(minutes=settings.session_idle_minutes), timedelta(hours=settings.session_max_hours)
    )
    app[DEVICES] = Devices(db)
    app[LOGIN] = Login(
        db,
        audit,
        TotpBox(secret),
        LoginPolicy(
            throttle_after=settings.login_throttle_after,
            throttle_base_seconds=settings.login_throttle_base_seconds,
            lock_after=settings.login_lock_after,
            lock_minutes=settings.login_lock_minutes,
            address_limit=settings.address_failure_limit,
        ),
        RedisLedger.from_url(settings.redis_url, settings.redis_prefix) if settings.redis_url else MemoryLedger(),
    )
    app[PATIENTS] = Patients(db, keyring)
    app[CONSULTATIONS] = Consultations(db)
    app[CONSENTS] = Consents(db)
    app[ACCESS_LOG] = AccessLog(db)
    app[QUALITY] = Quality(db)
    app[ASSESSMENTS] = Assessments(db, keyring)
    blobs = BlobStore(settings.blob_dir)
    app[IMAGE_WORK] = ImageWork(settings.image_workers, settings.image_pixel_budget, settings.image_wait_seconds)
    recording_blobs = BlobStore(settings.recording_dir)
    app[RETENTION] = Retention(db, blobs, recording_blobs)
    app[RECORDINGS] = Recordings(db, keyring, recording_blobs, settings.instance_name)
    recorders = app[RECORDERS] = Recorders.for_server(settings, app[RECORDINGS], invitations, audit)
    app[SNAPSHOTS] = Snapshots(
        db,
        keyring,
        blobs,
        Intents(settings.intent_dir, settings.instance_name),
        max_bytes=settings.snapshot_max_bytes,
        max_pixels=settings.snapshot_max_pixels,
        images=app[IMAGE_WORK],
    )
    app.cleanup_ctx.append(_resources)
    signaling.handler.setup(
        app,
        path=SIGNALING_PATH,
        admission=JoinAdmission(invitations, db),
        sink=MeteredSink(session_log, metrics),
        limits=limits_from(settings),
        redis_url=settings.redis_url,
        instance=settings.instance_name,
        redis_prefix=settings.redis_prefix,
        instance_ttl_seconds=settings.instance_ttl_seconds,
        client_address=client_address,
    )
    # After signaling's own: recorders leave their rooms before a cluster's bus stops.
    app.cleanup_ctx.append(recorders.running)
    queue = app[QUEUE] = Queue(
        app[CONSULTATIONS],
        app[signaling.handler.ROOMS],
        session_log,
        audit,
        partial(consultations.close_consultation, app, message="the consultation was abandoned"),
        settings.abandon_seconds,
    )
    app.cleanup_ctx.append(queue.running)
    oidc.setup(app, settings, secret)
    api = (
        session,
        oidc,
        regions,
        ice,
        patients,
        consultations,
        consents,
        assessments,
        snapshots,
        recordings,
        quality,
        retention,
        fhir,
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
