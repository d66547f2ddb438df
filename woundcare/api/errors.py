"""JSON errors for the API: ``{"error": {"code": ..., "message": ...}}``.

Messages are written for the client and never echo input, so no patient data or
secret can leak through an error. :func:`http_error` is the one translation of a
:class:`~woundcare.errors.WoundcareError` into an answer; a handler lets domain errors rise,
and :func:`error_middleware` translates what reaches it.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import WoundcareError

log = logging.getLogger(__name__)


def api_error(status: int, code: str, message: str, **details: str) -> web.HTTPException:
    """``details`` go into the error object beside the code: ids that help the client on (such
    as the live consultation a refused start names), never input echoed back."""
    exc_class: type[web.HTTPException] = web.HTTPException
    for cls in (
        web.HTTPBadRequest,
        web.HTTPUnauthorized,
        web.HTTPForbidden,
        web.HTTPNotFound,
        web.HTTPConflict,
        web.HTTPRequestEntityTooLarge,
        web.HTTPUnsupportedMediaType,
        web.HTTPTooManyRequests,
        web.HTTPGone,
        web.HTTPUnprocessableEntity,
        web.HTTPInternalServerError,
    ):
        if cls.status_code == status:
            exc_class = cls
            break
    text = orjson.dumps({"error": {"code": code, "message": message, **details}}).decode()
    exc: web.HTTPException
    if exc_class is web.HTTPRequestEntityTooLarge:
        # Its constructor wants the sizes only for a default text; ours replaces that text.
        exc = web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text, content_type="application/json")
    else:
        exc = exc_class(text=text, content_type="application/json")
    if exc_class is web.HTTPException:
        exc.set_status(status)
    return exc


def http_error(exc: WoundcareError) -> web.HTTPException:
    """The answer to ``exc``: its status, code and message; ``500 internal`` for a fault the
    client cannot act on (no message), whose code and text stay in the server's log."""
    if exc.message is None:
        return api_error(500, "internal", "internal server error")
    error = api_error(exc.status, exc.code, exc.message, **exc.details)
    error.headers.update(exc.headers)
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or not request.path.startswith("/api/"):
            raise
        code = exc.reason.lower().replace(" ", "_")
        raise api_error(exc.status, code, exc.reason) from None
    except WoundcareError as exc:
        if exc.message is None:
            log.exception("unhandled error in %s %s", request.method, request.match_info.route.resource)
        raise http_error(exc) from None
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.match_info.route.resource)
        raise api_error(500, "internal", "internal server error") from None
