"""One attempt: POST an event's body, signed per Standard Webhooks, to one endpoint.

Redirects are not followed: an endpoint is the URL an admin configured, and a 3xx from it
is an answer that is not a 2xx (a failed attempt), not a pointer to somewhere else to send
a signed event to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from ..crypto.webhook_signature import sign

USER_AGENT = "woundcare-webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    status: int | None
    """The HTTP status answered; None if there was no answer."""
    error: str | None
    """None when delivered (a 2xx); else ``http_<status>``, ``timeout`` or ``connection``."""


async def send(
    http: aiohttp.ClientSession, url: str, secret: str, msg_id: str, body: bytes, timeout: float
) -> Attempt:
    """POST ``body`` with the three ``webhook-*`` headers; the signature is made for this
    attempt's timestamp, the ``webhook-id`` is the event's on every attempt."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    try:
        async with http.post(
            url, data=body, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            status = response.status
    except TimeoutError:
        return Attempt(None, "timeout")
    except aiohttp.ClientError:
        return Attempt(None, "connection")
    return Attempt(status, None if 200 <= status < 300 else f"http_{status}")
