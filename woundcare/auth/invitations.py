"""Signed, expiring invitations: one consultation, one role, one holder.

Format: ``wc1.<base64url(claims JSON)>.<base64url(HMAC-SHA256)>``. The claims name staff
and a consultation id, never a patient. The HMAC key is derived from the server secret
for this purpose only, so the same secret can sign other things without confusion.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

from signaling.protocol import Role

from ..crypto.kdf import Purpose, derive_key
from .errors import AuthenticationError

TOKEN_PREFIX = "wc1."


class InvitationError(AuthenticationError):
    """An invitation token is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Invitation:
    consultation: str
    role: Role
    subject: str
    """Non-identifying id of the holder: a :attr:`~woundcare.auth.subject.Subject.ref`."""
    display_name: str
    region: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Invitations:
    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        self._key = derive_key(secret, Purpose.INVITATION)
        self._ttl = ttl_seconds

    def issue(
        self,
        consultation: str,
        role: Role,
        subject: str,
        display_name: str,
        region: str,
        ttl_seconds: int | None = None,
        now: float | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "c": consultation,
            "r": role.value,
            "s": subject,
            "n": display_name,
            "g": region,
            "iat": issued,
            "exp": issued + (ttl_seconds if ttl_seconds is not None else self._ttl),
        }
        body = TOKEN_PREFIX + _b64(orjson.dumps(claims))
        return f"{body}.{_b64(self._sign(body))}"

    def verify(self, token: str, now: float | None = None) -> Invitation:
        if not token.startswith(TOKEN_PREFIX) or token.count(".") != 2:
            raise InvitationError("token_invalid", "token is malformed", reason="malformed")
        body, _, signature = token.rpartition(".")
        try:
            given = _unb64(signature)
        except ValueError:
            raise InvitationError("token_invalid", "token is malformed", reason="malformed") from None
        if not hmac.compare_digest(given, self._sign(body)):
            raise InvitationError("token_invalid", "token signature does not match", reason="bad_signature")
        try:
            claims = orjson.loads(_unb64(body[len(TOKEN_PREFIX) :]))
            invitation = Invitation(
                consultation=str(claims["c"]),
                role=Role(claims["r"]),
                subject=str(claims["s"]),
                display_name=str(claims["n"]),
                region=str(claims["g"]),
                expires_at=int(claims["exp"]),
            )
        except (ValueError, KeyError, TypeError):
            raise InvitationError("token_invalid", "token claims are malformed", reason="malformed") from None
        if invitation.expires_at <= (now if now is not None else time.time()):
            raise InvitationError("token_expired", "token has expired", reason="expired")
        return invitation

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()
