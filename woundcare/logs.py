"""Logging: one JSON object per line, with the request id of the request being served.

Messages hold codes and pseudonymous ids only; the request id lets an operator follow one
request across lines (and, through ``X-Request-Id``, across nginx and instances).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_VALID_ID = re.compile(r"[A-Za-z0-9_.-]{8,64}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the proxy's ``X-Request-Id`` when it is well-formed, else make one; echo it back."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _VALID_ID.fullmatch(given) else secrets.token_hex(8)
    token = REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    finally:
        REQUEST_ID.reset(token)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response
