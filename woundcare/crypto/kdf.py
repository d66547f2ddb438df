"""Keys derived from the server secret: one key per purpose, never the secret itself.

::

    key = HMAC-SHA256(server secret, purpose label)

This is HKDF-Extract (RFC 5869 §2.2) with the server secret as the salt and the purpose label
as the input, or equally a one-block PRF-based KDF (NIST SP 800-108): the secret is random
(generated, or the operator's), so HMAC keyed with it gives each label its own independent
32-byte key. The construction is kept exactly as the first build wrote it four times, so TOTP
secrets in the database, invitation tokens in people's hands, login cookies in browsers and
audit checkpoints signed so far all keep opening and verifying.

Every label lives in :class:`Purpose`, so no two uses of the secret can share a key by
accident; a new use adds a member.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

KEY_SIZE = 32


class Purpose(bytes, enum.Enum):
    """The one label each use of the server secret derives its key with."""

    TOTP = b"woundcare totp v1"
    """Seals users' TOTP secrets in the database (:mod:`woundcare.auth.totp`)."""
    OIDC_FLOW = b"woundcare oidc flow v1"
    """Seals an OIDC login attempt into its cookie (:mod:`woundcare.auth.oidc`)."""
    INVITATION = b"woundcare invitation v1"
    """Signs invitation tokens (:mod:`woundcare.auth.invitations`)."""
    AUDIT_CHECKPOINT = b"woundcare.audit.checkpoint-key.v1"
    """Signs audit-chain checkpoints (:mod:`woundcare.audit.chain`)."""
    JOURNAL_IDS = b"woundcare journal document ids v1"
    """Keys the ids of a journal document (:mod:`woundcare.journal.document`), so they cannot
    be computed from the consultation id that the pseudonymous research export carries."""
    WEBHOOK_SECRET = b"woundcare webhook secret v1"
    """Seals webhook endpoints' signing secrets in the database (:mod:`woundcare.records.webhooks`)."""


def derive_key(server_secret: bytes, purpose: Purpose) -> bytes:
    """The 32-byte key for ``purpose``, derived from ``server_secret`` (see the module docstring)."""
    if not server_secret:
        raise ValueError("the server secret must not be empty")
    if not isinstance(purpose, Purpose):
        # A bare label would bypass the registry that keeps purposes apart.
        raise TypeError("'purpose' must be a Purpose")
    return hmac.new(server_secret, purpose.value, hashlib.sha256).digest()
