"""The audit chain's wire format: how an entry is encoded and hashed, how a checkpoint is signed.

Plain functions over plain values, so the format is testable (and re-implementable by an
auditor) without a database.

Entry hash (version 1)::

    hash  = SHA-256(prev_hash || entry)
    prev_hash = the previous entry's hash; 32 zero bytes (GENESIS) for seq 1
    entry = b"woundcare.audit.entry.v1\\x00"
            || u64 seq                     big-endian
            || i64 at                      microseconds since 1970-01-01T00:00:00Z, big-endian
            || field(actor) || field(role) || int_field(region_id) || field(action)
            || field(resource) || field(outcome) || field(address)
    field(None)       = 0x00
    field(text)       = 0x01 || u32 length of the UTF-8 bytes || UTF-8 bytes
    int_field(None)   = 0x00
    int_field(n)      = 0x01 || i64 n

Every part has a fixed size or a length prefix, in a fixed order, so two different entries
never encode to the same bytes (no ambiguity such as ``"ab"+"c"`` = ``"a"+"bc"``), and None is
distinct from the empty string.

Checkpoint signature::

    key       = HMAC-SHA256(server secret, b"woundcare.audit.checkpoint-key.v1")
                (``woundcare.crypto.kdf.derive_key(secret, Purpose.AUDIT_CHECKPOINT)``)
    signature = HMAC-SHA256(key, b"woundcare.audit.checkpoint.v1\\x00"
                                 || u64 seq || i64 signed_at microseconds || hash (32 bytes))

HMAC rather than Ed25519: the server secret already exists outside the database (a 0600 file
or an environment variable) on every instance, and the only verifier is the server operator,
who holds it too. The key is derived for this one purpose, so a checkpoint MAC can never be
confused with another use of the secret (invitation tokens, TOTP sealing). Someone who can
write the database but does not hold the secret cannot forge a checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..crypto.kdf import Purpose, derive_key

HASH_SIZE = 32
GENESIS = bytes(HASH_SIZE)
"""``prev_hash`` of the first entry."""

_ENTRY_DOMAIN = b"woundcare.audit.entry.v1\x00"
_CHECKPOINT_DOMAIN = b"woundcare.audit.checkpoint.v1\x00"
_KEY_ID_DOMAIN = b"woundcare.audit.checkpoint-key-id.v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NONE = b"\x00"
_SEQ_AT = struct.Struct(">Qq")
_LENGTH = struct.Struct(">BI")
_INT = struct.Struct(">Bq")


def microseconds(at: datetime) -> int:
    """``at`` as whole microseconds since the Unix epoch (exact: no float on the way)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: audit times are UTC-aware")
    return (at - _EPOCH) // _MICROSECOND


def _text(value: str | None) -> bytes:
    if value is None:
        return _NONE
    data = value.encode()
    return _LENGTH.pack(1, len(data)) + data


def encode_entry(
    seq: int,
    at: datetime,
    *,
    actor: str | None,
    role: str | None,
    region_id: int | None,
    action: str,
    resource: str | None,
    outcome: str,
    address: str | None,
) -> bytes:
    """The canonical bytes of one entry (see the module docstring)."""
    if seq < 1:
        raise ValueError(f"'seq' must be at least 1 (got {seq})")
    return b"".join(
        (
            _ENTRY_DOMAIN,
            _SEQ_AT.pack(seq, microseconds(at)),
            _text(actor),
            _text(role),
            _NONE if region_id is None else _INT.pack(1, region_id),
            _text(action),
            _text(resource),
            _text(outcome),
            _text(address),
        )
    )


def link(prev_hash: bytes, encoded: bytes) -> bytes:
    """The entry's hash: SHA-256 of the previous hash and the entry's canonical bytes."""
    if len(prev_hash) != HASH_SIZE:
        raise ValueError(f"'prev_hash' must be {HASH_SIZE} bytes (got {len(prev_hash)})")
    return hashlib.sha256(prev_hash + encoded).digest()


def derive_checkpoint_key(server_secret: bytes) -> bytes:
    """The checkpoint key, derived from the server secret for this purpose only."""
    return derive_key(server_secret, Purpose.AUDIT_CHECKPOINT)


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    seq: int
    hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CheckpointSigner:
    """Signs and checks checkpoints. ``keys[0]`` signs; all of them verify (for a secret
    rotation: ``[new, old]`` until the old checkpoints no longer matter). ``repr`` shows ids only."""

    keys: Sequence[bytes]
    _by_id: dict[str, bytes] = field(init=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("no checkpoint key given")
        object.__setattr__(self, "_by_id", {_key_id(k): k for k in self.keys})

    @classmethod
    def from_secrets(cls, *server_secrets: bytes) -> CheckpointSigner:
        """From the server secret(s): ``CheckpointSigner.from_secrets(settings.signing_key())``."""
        return cls([derive_checkpoint_key(secret) for secret in server_secrets])

    @property
    def key_id(self) -> str:
        return _key_id(self.keys[0])

    def __repr__(self) -> str:
        return f"CheckpointSigner(key_ids={list(self._by_id)!r})"

    def sign(self, seq: int, hash_: bytes, signed_at: datetime) -> SignedCheckpoint:
        key = self.keys[0]
        return SignedCheckpoint(seq, hash_, signed_at, _key_id(key), _mac(key, seq, hash_, signed_at))

    def check(self, seq: int, hash_: bytes, signed_at: datetime, key_id: str, signature: bytes) -> str | None:
        """None if the signature is good, else why not (a fixed phrase, no secret material)."""
        key = self._by_id.get(key_id)
        if key is None:
            return f"signed with an unknown key ({key_id})"
        if not hmac.compare_digest(_mac(key, seq, hash_, signed_at), signature):
            return "signature does not match"
        return None


def _key_id(key: bytes) -> str:
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:16]


def _mac(key: bytes, seq: int, hash_: bytes, signed_at: datetime) -> bytes:
    message = _CHECKPOINT_DOMAIN + _SEQ_AT.pack(seq, microseconds(signed_at)) + hash_
    return hmac.new(key, message, hashlib.sha256).digest()
