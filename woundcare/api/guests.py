"""Guests of a call (docs/protocol.md §3.4): a specialist invites an interpreter, a relative
or the patient's GP by a one-time link, sees the consultation's guests and withdraws one; the
guest's page exchanges the link for a cookie and a join token as an observer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from signaling.handler import ROOMS
from signaling.protocol import CloseCode, ErrorCode, Role

from ..appkeys import services
from ..audit.log import AuditEntry, Outcome
from ..auth.guests import COOKIE, PAGE, new_cookie, new_link_code
from ..auth.policy import Action
from ..auth.tokens import token_hash
from ..db.models import OPEN_STATUSES, ConsultationKind
from ..records.guests import Guest, GuestRefused
from .body import GuestInvitationBody, GuestJoin, read_body
from .consultations import JOIN_TOKEN_SECONDS
from .errors import api_error, http_error
from .forwarded import client_address
from .guard import from_this_site, public, requires, subject
from .visible import CONSULTATION, load_visible

routes = web.RouteTableDef()

GUEST_LINK_TTL = timedelta(hours=2)
"""How long a link (and the guest's cookie) lasts; the consultation's end closes it sooner."""
JOIN_ACTION = "guest.join"
"""The audit's name for a guest's redemption or later join (a public route: no policy action)."""


@routes.post("/api/consultations/{id}/invitations")
@requires(Action.CONSULTATION_INVITE)
async def invite_guest(request: web.Request) -> web.Response:
    """A one-time link for a guest of the call; the code is in the link's fragment, shown once."""
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_INVITE)
    if view.status not in OPEN_STATUSES or view.kind is not ConsultationKind.VIDEO:
        raise api_error(409, "ended", "only an open video call takes guests")
    kind = (await read_body(request, GuestInvitationBody)).kind
    code = new_link_code()
    guest = await services(request).guests.invite(
        view.id, view.region_id, view.region, kind, subject(request).ref, GUEST_LINK_TTL, token_hash(code)
    )
    return web.json_response(guest.json() | {"link": f"{PAGE}#{code}"}, status=201)


@routes.get("/api/consultations/{id}/invitations")
@requires(Action.CONSULTATION_INVITE)
async def list_guests(request: web.Request) -> web.Response:
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_INVITE)
    guests = await services(request).guests.of(view.id, view.region_id, view.region)
    return web.json_response({"guests": [g.json() for g in guests]})


@routes.delete("/api/consultations/{id}/invitations/{invitation}")
@requires(Action.CONSULTATION_INVITE)
async def revoke_guest(request: web.Request) -> web.Response:
    """Withdraw a guest's link; a guest in the call is put out at once (other instances
    within their revocation poll, and every later join is refused)."""
    view = await load_visible(request, CONSULTATION, Action.CONSULTATION_INVITE)
    ref = await services(request).guests.revoke(view.id, request.match_info["invitation"])
    if ref is None:
        raise api_error(404, "not_found", "no such invitation")
    request.config_dict[ROOMS].evict({ref}, CloseCode.UNAUTHORIZED, ErrorCode.REVOKED, "guest link withdrawn")
    return web.Response(status=204)


@routes.post("/api/guest/join")
@public
async def guest_join(request: web.Request) -> web.Response:
    """A join token for the guest: with the link's ``code`` on the first visit (once only; the
    answer sets the guest cookie), with the cookie afterwards. Audited either way."""
    if not from_this_site(request):
        raise api_error(403, "cross_site", "requests from other sites are refused")
    code = (await read_body(request, GuestJoin)).code
    found = services(request).guests
    address = client_address(request)
    ticket = await services(request).login.take_try("guest", address)
    cookie = None
    try:
        if code is not None:
            cookie = new_cookie()
            guest = await found.redeem(token_hash(code), token_hash(cookie))
        else:
            held = request.cookies.get(COOKIE)
            if not held:
                await _audit(request, Outcome.DENIED, None, None, None)
                raise api_error(401, "unauthorized", "open the guest link first")
            guest = await found.holder(token_hash(held))
    except GuestRefused as exc:
        await _audit(request, Outcome.DENIED, None, exc.consultation, exc.region_id)
        raise http_error(exc) from None
    await services(request).login.give_back_try("guest", address, ticket)
    await _audit(request, Outcome.OK, guest, guest.consultation, guest.region_id)
    token = services(request).invitations.issue(
        guest.consultation, Role.OBSERVER, guest.subject, guest.kind.value, guest.region, JOIN_TOKEN_SECONDS
    )
    response = web.json_response(
        {"consultation": guest.consultation, "kind": guest.kind.value, "role": Role.OBSERVER.value, "token": token}
    )
    if cookie is not None:
        response.set_cookie(
            COOKIE,
            cookie,
            httponly=True,
            secure=services(request).settings.cookie_secure,
            samesite="Strict",
            path="/",
            max_age=max(1, int((guest.expires_at - datetime.now(UTC)).total_seconds())),
        )
    return response


async def _audit(
    request: web.Request, outcome: Outcome, guest: Guest | None, consultation: str | None, region_id: int | None
) -> None:
    await services(request).audit.record(
        AuditEntry(
            JOIN_ACTION,
            outcome,
            actor=guest.subject if guest is not None else None,
            region_id=region_id,
            resource=f"consultation:{consultation}" if consultation is not None else None,
            address=client_address(request),
        )
    )
