"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec 1.0.0, "symmetric").

::

    secret             whsec_<base64 of 32 random bytes>; the key is the decoded part
    signed content     {webhook-id}.{webhook-timestamp}.{body}
    webhook-signature  v1,<base64 of HMAC-SHA256(key, signed content)>  (space-separated list)

A receiver checks the timestamp against its clock (:data:`TOLERANCE_SECONDS` either way, the
spec's replay window) and compares signatures in constant time; :func:`verify` does both, for
our tests and as the reference for docs/webhooks.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from .errors import CryptoError

PREFIX = "whsec_"
SECRET_BYTES = 32
"""Within the spec's 24 to 64."""
VERSION = "v1"
TOLERANCE_SECONDS = 300
"""How far a receiver lets ``webhook-timestamp`` be from its own clock (the spec's 5 minutes)."""


class SignatureError(CryptoError, ValueError):
    """A delivery, or a secret, that does not verify; the message names the rule, never the values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(PREFIX):
        raise SignatureError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error:
        raise SignatureError("a webhook secret is base64 after whsec_") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of one attempt."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def verify(secret: str, msg_id: str, timestamp: str, signature: str, body: bytes, now: float) -> None:
    """Raise :class:`SignatureError` unless one of ``signature``'s entries signs this delivery
    and ``timestamp`` is within :data:`TOLERANCE_SECONDS` of ``now``."""
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is whole seconds") from None
    if abs(now - sent) > TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, sent, body).encode()
    if not any(hmac.compare_digest(entry.encode(), expected) for entry in signature.split()):
        raise SignatureError("no webhook-signature entry matches")
