"""Errors raised by ``woundcare.crypto``.

They carry only what helps an auditor find the record: region, kind, record id and key id.
Never plaintext, never key material.

Exception hierarchy::

    CryptoError
    ├── RecordIntegrityError   the envelope does not open for this record: bad tag, wrong
    │                          region/kind/record/schema, unknown or foreign key id, malformed
    ├── SealError              a sealed value (a TOTP secret, a login cookie) does not open
    ├── SignatureError         a webhook's Standard Webhooks signature or secret does not verify
    │                          (woundcare.crypto.webhook_signature; our tests, as a receiver)
    ├── KeyShreddedError       the data key was destroyed (its region was shredded)
    └── MasterKeyError         a master key is missing or malformed, or does not unwrap a stored key
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import WoundcareError

if TYPE_CHECKING:
    from .aead import Binding


class CryptoError(WoundcareError):
    """Base class of every error raised by ``woundcare.crypto``."""


class SealError(CryptoError):
    """A sealed value does not open: too short, changed, or sealed for another place or key.

    ``reason`` is a fixed phrase; what the value held is never part of it.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RecordIntegrityError(CryptoError):
    """An envelope failed to open for the record it was presented as.

    Tampering, a mix-up between records, regions or kinds, and a foreign or unknown key all
    end here, so callers have one error to audit.
    """

    code = "integrity_error"
    message = "a stored record failed its integrity check"

    def __init__(
        self,
        reason: str,
        *,
        region_id: int | None = None,
        kind: str | None = None,
        record_id: str | None = None,
        key_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.region_id = region_id
        self.kind = kind
        self.record_id = record_id
        self.key_id = key_id
        super().__init__(
            f"{reason} (region={region_id} kind={kind} record={record_id} key={key_id})"
        )

    @classmethod
    def about(
        cls, reason: str, binding: Binding | None, key_id: str | None
    ) -> RecordIntegrityError:
        """The error for the record ``binding`` names, if it is known."""
        if binding is None:
            return cls(reason, key_id=key_id)
        return cls(
            reason,
            region_id=binding.region_id,
            kind=binding.kind,
            record_id=binding.record_id,
            key_id=key_id,
        )


class KeyShreddedError(CryptoError):
    """The data key was destroyed; what it sealed is gone for good."""

    code = "shredded"
    status = 410
    message = "this record's region key has been destroyed"

    def __init__(self, region_id: int, key_id: str | None = None) -> None:
        self.region_id = region_id
        self.key_id = key_id
        super().__init__(f"key destroyed (region={region_id} key={key_id})")


class MasterKeyError(CryptoError):
    """A master key is missing or malformed, or does not unwrap a stored data key."""

    def __init__(
        self, reason: str, *, master_key_id: str | None = None, key_id: str | None = None
    ) -> None:
        self.reason = reason
        self.master_key_id = master_key_id
        self.key_id = key_id
        super().__init__(f"{reason} (master key={master_key_id} key={key_id})")
