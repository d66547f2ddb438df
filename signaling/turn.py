"""Time-limited TURN credentials (the "TURN REST API" scheme coturn's
``use-auth-secret`` accepts): username ``<expiry>:<user>``, password
``base64(HMAC-SHA1(secret, username))``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: int


def turn_credential(secret: bytes, user: str, ttl_seconds: int, now: float | None = None) -> TurnCredential:
    """Credentials for ``user`` valid for ``ttl_seconds``; ``user`` must not identify a patient."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if ":" in user:
        raise ValueError("user must not contain ':'")
    expires = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expires}:{user}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode(), expires)


def ice_servers(
    stun_urls: list[str],
    turn_urls: list[str],
    secret: bytes | None,
    user: str,
    ttl_seconds: int,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """An RTCConfiguration ``iceServers`` list (W3C field names)."""
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and secret:
        cred = turn_credential(secret, user, ttl_seconds, now)
        servers.append({"urls": list(turn_urls), "username": cred.username, "credential": cred.credential})
    return servers
