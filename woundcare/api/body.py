"""Reading JSON request bodies into typed values, with clear errors that echo nothing."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .errors import api_error

MAX_JSON_BYTES = 64 * 1024


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise api_error(413, "too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise api_error(413, "too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise api_error(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise api_error(400, "bad_json", "body must be a JSON object")
    return data


def text_field(data: dict[str, Any], name: str, *, max_length: int = 200, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise api_error(400, "bad_request", f"'{name}' is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise api_error(400, "bad_request", f"'{name}' must be text of 1-{max_length} characters")
    return value.strip()
