"""``/api/session``: log in with a password (and TOTP), see who you are, log out."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import services
from ..audit.log import AuditEntry, Outcome
from ..auth.authenticate import subject_of
from ..auth.login import LoginError
from ..auth.policy import Action
from ..auth.sessions import COOKIE
from ..auth.subject import Subject
from ..db.models import User
from .body import Login, read_body
from .errors import api_error, http_error
from .forwarded import client_address
from .guard import SESSION, from_this_site, public, requires, subject
from .regions import regions_of

routes = web.RouteTableDef()


def _me(who: Subject, csrf_token: str | None, regions: list[dict[str, object]]) -> dict[str, object]:
    return {
        "user": {"id": who.ref, "name": who.display_name},
        "regions": regions,
        "csrfToken": csrf_token,
        "device": who.device_id is not None,
    }


@routes.post("/api/session")
@public
async def login(request: web.Request) -> web.Response:
    # Login CSRF: another site's form or fetch must not log the browser in as someone else.
    if not from_this_site(request):
        await services(request).audit.record(
            AuditEntry("login.cross_site", Outcome.DENIED, address=client_address(request))
        )
        raise api_error(403, "cross_site", "log in from this site's own pages")
    if request.content_type != "application/json":
        raise api_error(415, "json_required", "the login must be sent as application/json")
    body = await read_body(request, Login)
    try:
        user = await services(request).login.password(body.username, body.password, body.totp, client_address(request))
    except LoginError as exc:
        raise http_error(exc) from None
    method = "password+totp" if user.totp_secret_sealed is not None else "password"
    return await start_browser_session(request, user, method)


async def start_browser_session(
    request: web.Request, user: User, method: str, *, redirect_to: str | None = None
) -> web.Response:
    """Open a browser session for ``user`` and answer with its cookie: the caller as JSON
    (password login), or a 302 to ``redirect_to`` (the OIDC callback, a top-level navigation)."""
    token, open_session = await services(request).sessions.create(user.id, method)
    if redirect_to is None:
        who = await subject_of(services(request).accounts, user, session_id=open_session.id)
        response = web.json_response(_me(who, open_session.csrf_token, await regions_of(request, who)))
    else:
        response = web.Response(status=302, headers={"Location": redirect_to, "Cache-Control": "no-store"})
    settings = services(request).settings
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="Strict",
        path="/",
        max_age=settings.session_max_hours * 3600,
    )
    return response


@routes.get("/api/session")
@requires(Action.SESSION_READ)
async def whoami(request: web.Request) -> web.Response:
    who = subject(request)
    open_session = request.get(SESSION)
    return web.json_response(
        _me(who, open_session.csrf_token if open_session else None, await regions_of(request, who))
    )


@routes.delete("/api/session")
@requires(Action.SESSION_READ)
async def logout(request: web.Request) -> web.Response:
    open_session = request.get(SESSION)
    if open_session is None:
        raise api_error(400, "no_session", "this request is not a browser session")
    await services(request).sessions.revoke(open_session.id)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response
