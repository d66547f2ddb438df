"""The application factory: wires signaling, the API and the resources they need."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

import signaling.handler
from signaling.limits import Limits

from .api import ice
from .api.errors import error_middleware
from .appkeys import DATABASE, INVITATIONS, SESSION_LOG, SETTINGS
from .auth.invitations import Invitations
from .auth.join import JoinAdmission
from .config import Settings
from .db.database import Database
from .demo import seed_demo
from .records.session_log import SessionLog


async def _resources(app: web.Application) -> AsyncIterator[None]:
    db = app[DATABASE]
    await db.start()
    if app[SETTINGS].demo:
        await seed_demo(db)
    await app[SESSION_LOG].start()
    yield
    await app[SESSION_LOG].stop()
    await db.stop()


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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(middlewares=[error_middleware])
    db = Database(settings.db_url)
    invitations = Invitations(settings.signing_key(), settings.invitation_ttl_seconds)
    session_log = SessionLog(db)
    app[SETTINGS] = settings
    app[DATABASE] = db
    app[INVITATIONS] = invitations
    app[SESSION_LOG] = session_log
    app.cleanup_ctx.append(_resources)
    signaling.handler.setup(
        app,
        admission=JoinAdmission(invitations, db),
        sink=session_log,
        limits=limits_from(settings),
    )
    app.add_routes(ice.routes)
    return app
