"""The API's gate: who is asking (:mod:`woundcare.auth.authenticate`), may they
(:func:`woundcare.auth.policy.authorize`), and the audit of it; nothing else.

Every ``/api/`` route declares its :class:`Action` with :func:`requires` (or :func:`public`);
the guard asks whether the caller may take it in some region, and the route asks again for
the resource it names (:func:`woundcare.api.visible.load_visible`). A route without a
declaration answers 500, so a route added without a rule cannot go
unnoticed (the policy matrix test also walks every route). Cookie sessions must send the
CSRF token on state changes; bearer tokens (devices, invitations) are not sent by browsers
on their own, so they need none.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Final, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from ..appkeys import BOUND_TOKENS, services
from ..audit.log import AuditEntry, Outcome
from ..auth.authenticate import Authenticator
from ..auth.bound_tokens import ProofRequest
from ..auth.dpop import ACCEPTED_ALGORITHMS
from ..auth.errors import AuthenticationError
from ..auth.guests import COOKIE as GUEST_COOKIE
from ..auth.policy import Action, Denied, authorize, regions_for, role_in
from ..auth.sessions import COOKIE, CSRF_HEADER, OpenSession
from ..auth.subject import Subject
from ..crypto import KeyShreddedError, RecordIntegrityError
from ..errors import WoundcareError
from .errors import api_error, http_error
from .forwarded import client_address

log = logging.getLogger(__name__)

SUBJECT = web.RequestKey("subject", Subject)
SESSION = web.RequestKey("login_session", OpenSession)
AUDIT_RESOURCE = web.RequestKey("audit_resource", str)
AUDIT_REGION = web.RequestKey("audit_region", int)
AUDITED = web.RequestKey("audited", bool)

_RULE: Final = "__woundcare_action__"
_PUBLIC: Final = "public"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_UNAUDITED: Final = frozenset({Action.SESSION_READ, Action.RECORDING_UPLOAD})
"""Actions whose successes are not audited: a page's session check, and the pieces of a
recording (one a second; its start and end are audited). Their refusals are."""

H = TypeVar("H", bound=Callable[..., object])


def requires(action: Action) -> Callable[[H], H]:
    """Declare the action a route performs; the guard checks it before the handler runs."""

    def mark(handler: H) -> H:
        setattr(handler, _RULE, action)
        return handler

    return mark


def public(handler: H) -> H:
    """A route anyone may call (login)."""
    setattr(handler, _RULE, _PUBLIC)
    return handler


def rule_of(handler: object) -> Action | str | None:
    return getattr(handler, _RULE, None)


def subject(request: web.Request) -> Subject:
    found = request.get(SUBJECT)
    if found is None:
        raise api_error(401, "unauthorized", "log in first")
    return found


def audit_target(request: web.Request, resource: str, region_id: int | None = None) -> None:
    """Name what the request touched (pseudonymous ids only) for its audit entry."""
    request[AUDIT_RESOURCE] = resource
    if region_id is not None:
        request[AUDIT_REGION] = region_id


def audit_entry(request: web.Request, action: Action, resource: str, region_id: int) -> AuditEntry:
    """The entry the guard writes when ``action`` succeeds, for a handler that commits it
    itself in the transaction of the record it audits (then :func:`audited`)."""
    return _entry(request, action, Outcome.OK, request.get(SUBJECT), None, resource, region_id)


def audited(request: web.Request, resource: str, region_id: int) -> None:
    """The handler has committed its :func:`audit_entry`: the guard writes no second one (a
    failure after this is still audited as one)."""
    audit_target(request, resource, region_id)
    request[AUDITED] = True


def authenticator(request: web.Request) -> Authenticator:
    found = services(request)
    return Authenticator(
        found.accounts, found.invitations, found.sessions, found.devices, found.guests,
        request.config_dict.get(BOUND_TOKENS),
    )


def proof_request(request: web.Request) -> ProofRequest:
    """What a DPoP proof must name: the URL as the program addressed it (the public URL,
    behind a proxy too), without the query."""
    url = services(request).settings.base_url.rstrip("/") + request.rel_url.raw_path
    return ProofRequest(request.method, url, tuple(request.headers.getall("DPoP", ())))


def from_this_site(request: web.Request) -> bool:
    """False when the browser says another site's page sent the request: an ``Origin`` not
    ours, or ``Sec-Fetch-Site`` other than same-origin. Programs send neither and pass."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in (services(request).settings.base_url, f"{request.scheme}://{request.host}"):
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


def _csrf_ok(request: web.Request, open_session: OpenSession) -> bool:
    given = request.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(given.encode(), open_session.csrf_token.encode()) and from_this_site(request)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    rule = rule_of(request.match_info.handler)
    if rule is None:
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception
        log.error("route %s has no authorization rule", request.match_info.route.resource)
        raise api_error(500, "no_rule", "this route has no authorization rule")
    if rule == _PUBLIC:
        return await handler(request)
    assert isinstance(rule, Action)
    try:
        found = await authenticator(request).authenticate(
            request.headers.get("Authorization", ""), request.cookies.get(COOKIE), request.cookies.get(GUEST_COOKIE),
            proof_request(request),
        )
    except AuthenticationError as exc:
        raise await _refused_token(request, rule, exc) from None
    if found is None:
        await _audit(request, rule, Outcome.DENIED, None)
        raise api_error(401, "unauthorized", "log in first")
    who, open_session = found.subject, found.session
    request[SUBJECT] = who
    if open_session is not None:
        request[SESSION] = open_session
        if request.method not in _SAFE_METHODS and not _csrf_ok(request, open_session):
            await _audit(request, rule, Outcome.DENIED, who, "csrf")
            raise api_error(403, "csrf_failed", "missing or wrong CSRF token")
    try:
        authorize(who, rule)
    except Denied:
        await _audit(request, rule, Outcome.DENIED, who)
        raise api_error(403, "forbidden", "not allowed") from None
    try:
        response = await handler(request)
    except RecordIntegrityError as exc:
        # Tampering or corruption is for the operators too, not only the audit trail; the
        # action and the request id (in the log record) say where, without patient data.
        log.error("a stored record failed its integrity check (action %s)", rule.value)
        await _audit(request, rule, Outcome.INTEGRITY, who)
        raise http_error(exc) from None
    except KeyShreddedError as exc:
        await _audit(request, rule, Outcome.FAILED, who, "shredded")
        raise http_error(exc) from None
    except WoundcareError as exc:
        # A domain error a handler lets rise is answered by error_middleware; audit it here,
        # as the answer it maps to, so no refusal goes unaudited.
        error = http_error(exc)
        await _audit_refusal(request, rule, who, error.status)
        raise error from None
    except web.HTTPException as exc:
        await _audit_refusal(request, rule, who, exc.status)
        raise
    if rule not in _UNAUDITED and not request.get(AUDITED, False):
        await _audit(request, rule, Outcome.OK, who)
    return response


async def _refused_token(request: web.Request, rule: Action, exc: AuthenticationError) -> web.HTTPException:
    """The answer to a refused token (a device's or invitation's bearer token unknown, revoked,
    forged or expired; a program's DPoP-bound token replayed without its proof, a proof for
    another request or key): audited as a security event by its fixed reason, never the
    token, and challenged as RFC 6750 §3 or RFC 9449 §7.1 says.

    Each refusal counts against the client's address as a wrong password does
    (:meth:`Login.take_try`, its own count): past the limit the answer is ``429 throttled``,
    unaudited, so a flood of bad tokens stops before the audit log as a flood of wrong
    passwords does, and never becomes one chain write each."""
    await services(request).login.take_try("token", client_address(request))
    family = "dpop" if exc.scheme == "DPoP" else "token"
    audit_target(request, f"{family}:{exc.reason}")
    await _audit(request, rule, Outcome.DENIED, None, family)
    error = http_error(exc)
    if exc.scheme == "DPoP":
        error.headers["WWW-Authenticate"] = f'DPoP error="invalid_token", algs="{" ".join(ACCEPTED_ALGORITHMS)}"'
    else:
        error.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return error


async def _audit_refusal(request: web.Request, rule: Action, who: Subject | None, status: int) -> None:
    if rule not in _UNAUDITED or status in (403, 404):
        await _audit(request, rule, Outcome.DENIED if status in (403, 404) else Outcome.FAILED, who)


def _role(who: Subject | None, action: Action, region_id: int | None) -> str | None:
    """The role the subject acted in: in the resource's region if known, else any that allows it."""
    if who is None:
        return None
    regions = [region_id] if region_id is not None else regions_for(who, action)
    role = next((r for r in (role_in(who, region, action) for region in regions) if r is not None), None)
    return role.value if role is not None else None


async def _audit(
    request: web.Request, action: Action, outcome: Outcome, who: Subject | None, detail: str | None = None
) -> None:
    await services(request).audit.record(
        _entry(request, action, outcome, who, detail, request.get(AUDIT_RESOURCE), request.get(AUDIT_REGION))
    )


def _entry(
    request: web.Request,
    action: Action,
    outcome: Outcome,
    who: Subject | None,
    detail: str | None,
    resource: str | None,
    region_id: int | None,
) -> AuditEntry:
    return AuditEntry(
        action.value if detail is None else f"{action.value}.{detail}",
        outcome,
        actor=who.ref if who else None,
        role=_role(who, action, region_id),
        region_id=region_id,
        resource=resource,
        address=client_address(request),
    )
