"""``/api/oidc``: single sign-on through the hospitals' OpenID Connect provider (HelseID).

``GET /api/oidc/login`` sends the browser to the provider with a fresh login attempt sealed in
the ``wc_oidc`` cookie; ``GET /api/oidc/callback`` takes it back, verifies the ID token, finds
the local user whose ``oidc_subject`` equals the configured claim (or, per deployment, whose
``hpr_number`` equals the HPR claim), stores the HPR number on it and opens the same browser
session as password login. Users are never created here. A login below the deployment's
minimum security level is refused (``oidc_security_level``). Every outcome of the callback is
audited as ``login.oidc``; refusals carry a fixed reason (``oidc:<reason>``), never a claim.

Both are pages a browser navigates to (the login page's link, the provider's redirect), so a
refusal is no JSON body for a person to read: the browser goes back to the login page with
the refusal's code (``/?login_error=<code>``, one of :data:`LOGIN_ERRORS`), which the page
shows in its language; the provider's own words never travel on. Both routes answer ``404 oidc_disabled``
when OIDC is not configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Final

from aiohttp import hdrs, web

from ..appkeys import BOUND_TOKENS, services
from ..audit.log import AuditEntry, Outcome
from ..auth.bound_tokens import BoundTokens
from ..auth.oidc import (
    FLOW_TTL_SECONDS,
    Flow,
    FlowError,
    FlowSealer,
    Identity,
    OidcClient,
    OidcConfig,
    OidcError,
    SecurityLevelTooLow,
    load_client_key,
)
from ..auth.subject import Subject
from ..config import Settings
from ..db.models import User
from ..errors import WoundcareError
from .errors import api_error
from .forwarded import client_address
from .guard import public
from .session import start_browser_session

routes = web.RouteTableDef()

OIDC = web.AppKey("oidc", OidcClient)
OIDC_FLOWS = web.AppKey("oidc_flows", FlowSealer)

CALLBACK_PATH: Final = "/api/oidc/callback"
FLOW_COOKIE: Final = "wc_oidc"
"""The sealed login attempt. ``SameSite=Lax``: it must come back on the provider's top-level
redirect to the callback, which ``Strict`` would drop; it is sent to the callback path only."""
AUDIT_ACTION: Final = "login.oidc"
LOGIN_PAGE: Final = "/"
ERROR_PARAM: Final = "login_error"
_NO_STORE: Final = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


class NoAccount(WoundcareError):
    code = "unknown_user"
    status = 403
    message = "no active woundcare account is linked to this identity"


class HprNumberTaken(WoundcareError):
    """Two accounts cannot be one professional: an administrator must sort out which."""

    code = "hpr_number_taken"
    status = 409
    message = "this HPR number belongs to another woundcare account"


LOGIN_ERRORS: Final = frozenset(
    {"oidc_state", "oidc_failed", "oidc_provider_error", "oidc_invalid_token", "oidc_security_level",
     NoAccount.code, HprNumberTaken.code}
)
"""The codes a refused login sends the browser back to the login page with (the page has a
message for each: ``web/js/login.js``)."""


def config_from(settings: Settings) -> OidcConfig | None:
    """The OIDC client configuration, or None when ``oidc_issuer`` is not set."""
    if not settings.oidc_issuer:
        return None
    if not settings.oidc_client_id:
        raise ValueError("oidc_issuer needs oidc_client_id")
    client_key = None
    if settings.oidc_client_key_file is not None and settings.oidc_client_auth != "client_secret_basic":
        client_key = load_client_key(settings.oidc_client_key_file.read_bytes())
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    return OidcConfig(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        redirect_uri=settings.base_url.rstrip("/") + CALLBACK_PATH,
        client_secret=secret,
        client_key=client_key,
        subject_claim=settings.oidc_subject_claim,
        scopes=tuple(settings.oidc_scopes),
        timeout_seconds=settings.oidc_timeout_seconds,
        par=settings.oidc_par,
        dpop=settings.oidc_dpop,
        userinfo=settings.oidc_userinfo,
        hpr_claim=settings.oidc_hpr_claim,
        security_level_claim=settings.oidc_security_level_claim,
        min_security_level=settings.oidc_min_security_level,
    )


def setup(app: web.Application, settings: Settings, secret: bytes) -> None:
    """Give ``app`` an OIDC client when OIDC is configured (the routes are always there)."""
    config = config_from(settings)
    if config is None:
        return
    client = OidcClient(config)
    app[OIDC] = client
    app[OIDC_FLOWS] = FlowSealer(secret)
    if settings.oidc_api_audience:
        app[BOUND_TOKENS] = BoundTokens(client, settings.oidc_api_audience)

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        await client.start()
        yield
        await client.close()

    app.cleanup_ctx.append(http_client)


def _client(request: web.Request) -> OidcClient:
    client = request.config_dict.get(OIDC)
    if client is None:
        raise api_error(404, "oidc_disabled", "single sign-on is not configured")
    return client


@routes.get("/api/oidc/login")
@public
async def login(request: web.Request) -> web.Response:
    client = _client(request)
    flow = Flow.new()
    try:
        location = await client.authorization_url(flow)
    except OidcError as exc:
        # The provider unreachable, or (PAR) refusing our pushed request.
        await _audit(request, Outcome.FAILED, exc.reason)
        return _back_to_login(exc)
    response = web.Response(status=302, headers={hdrs.LOCATION: location, **_NO_STORE})
    response.set_cookie(
        FLOW_COOKIE,
        request.config_dict[OIDC_FLOWS].seal(flow),
        httponly=True,
        secure=services(request).settings.cookie_secure,
        samesite="Lax",
        path=CALLBACK_PATH,
        max_age=FLOW_TTL_SECONDS,
    )
    return response


@routes.get("/api/oidc/callback")
@public
async def callback(request: web.Request) -> web.Response:
    client = _client(request)
    try:
        user = await _user_behind(request, client, await _finish(request, client))
    except (OidcError, NoAccount, HprNumberTaken) as exc:
        response = _back_to_login(exc)  # audited where it was refused
    else:
        await _audit(request, Outcome.OK, None, actor=Subject.user_ref(user.id))
        response = await start_browser_session(request, user, "oidc", redirect_to=LOGIN_PAGE)
        response.headers.update(_NO_STORE)
    # A login attempt is used once, whatever came of it.
    response.headers.add(hdrs.SET_COOKIE, _forget_flow())
    return response


async def _finish(request: web.Request, client: OidcClient) -> Identity:
    query = request.query
    try:
        flow = request.config_dict[OIDC_FLOWS].open(request.cookies.get(FLOW_COOKIE), query.get("state"))
    except FlowError as exc:
        await _audit(request, Outcome.FAILED, exc.reason)
        raise
    params = {name: query[name] for name in ("code", "error", "iss") if name in query}
    try:
        return await client.finish(flow, params)
    except OidcError as exc:
        # Refused at the provider, an unverifiable token, the provider unreachable, or (denied
        # by our own rule) a security level below the deployment's minimum.
        outcome = Outcome.DENIED if isinstance(exc, SecurityLevelTooLow) else Outcome.FAILED
        await _audit(request, outcome, exc.reason)
        raise


async def _user_behind(request: web.Request, client: OidcClient, identity: Identity) -> User:
    """The active local user linked to ``identity`` (by subject or by HPR number, as the
    deployment says), with the HPR number the provider sent stored on it; no user is ever
    created here."""
    accounts = services(request).accounts
    if services(request).settings.oidc_link_by == "hpr_number":
        user = await accounts.user_by_hpr_number(identity.hpr_number) if identity.hpr_number else None
    else:
        user = await accounts.user_by_oidc_subject(identity.subject)
    if user is None or not user.active:
        reason = "unknown_user" if user is None else "user_inactive"
        await _audit(request, Outcome.DENIED, reason, actor=Subject.user_ref(user.id) if user else None)
        raise NoAccount()
    if identity.hpr_number is not None and identity.hpr_number != user.hpr_number:
        if not await accounts.set_hpr_number(user.id, identity.hpr_number):
            await _audit(request, Outcome.DENIED, "hpr_number_taken", actor=Subject.user_ref(user.id))
            raise HprNumberTaken()
    return user


def _back_to_login(refusal: WoundcareError) -> web.Response:
    """The browser sent back to the login page, which says why by the refusal's code alone."""
    code = refusal.code if refusal.code in LOGIN_ERRORS else "oidc_failed"
    return web.Response(status=303, headers={hdrs.LOCATION: f"{LOGIN_PAGE}?{ERROR_PARAM}={code}", **_NO_STORE})


def _forget_flow() -> str:
    cookie: SimpleCookie = SimpleCookie()
    cookie[FLOW_COOKIE] = ""
    morsel = cookie[FLOW_COOKIE]
    morsel["path"] = CALLBACK_PATH
    morsel["max-age"] = 0
    morsel["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    return morsel.OutputString()


async def _audit(request: web.Request, outcome: Outcome, reason: str | None, *, actor: str | None = None) -> None:
    await services(request).audit.record(
        AuditEntry(
            AUDIT_ACTION,
            outcome,
            actor=actor,
            resource=f"oidc:{reason}" if reason else None,
            address=client_address(request),
        )
    )
