"""AES-256-GCM envelopes bound to the record they protect. Pure functions, no storage.

Envelope, version 1::

    offset     size      field
    0          1         version, 0x01
    1          1         n, length of the key id (1..255)
    2          n         key id, ASCII
    2+n        12        nonce, random, made by ``seal``
    14+n       len(p)+16 ciphertext of p, then the 16-byte GCM tag

Associated data (not stored, rebuilt on open) binds the ciphertext to its place: the
envelope version, the region, the schema, the kind, the record id and the key id. Each field is
written as a 4-byte big-endian length then its bytes, so no two bindings encode alike::

    lp(b"woundcare/record") lp(version) lp(region_id: int64) lp(schema: uint32)
    lp(kind: UTF-8) lp(record_id: UTF-8) lp(key_id: ASCII)

A changed bit anywhere in the envelope, or an envelope shown for another record, region, kind
or schema, raises :class:`RecordIntegrityError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import RecordIntegrityError

ENVELOPE_VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_AAD_LABEL = b"woundcare/record"
_MAX_KEY_ID = 255
_INT64 = struct.Struct(">q")
_UINT32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Binding:
    """The place a ciphertext belongs to; opening it anywhere else fails."""

    region_id: int
    """The pilot region whose key seals the record."""
    kind: str
    """What the record is, e.g. ``"patient_identity"`` or ``"snapshot"``."""
    record_id: str
    """The record's own id (a random public id, never identifying data)."""
    schema: int = 1
    """Version of the plaintext's layout, so an old layout cannot pass for a new one."""

    def __post_init__(self) -> None:
        _check_int("region_id", self.region_id, 2**63)
        _check_int("schema", self.schema, 2**32)
        for name in ("kind", "record_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"'{name}' must be a non-empty str (got {value!r})")


def aad(binding: Binding, key_id: str) -> bytes:
    """The associated data for ``binding`` sealed under ``key_id``."""
    fields = (
        _AAD_LABEL,
        bytes((ENVELOPE_VERSION,)),
        _INT64.pack(binding.region_id),
        _UINT32.pack(binding.schema),
        binding.kind.encode(),
        binding.record_id.encode(),
        key_id.encode("ascii"),
    )
    return b"".join(_UINT32.pack(len(field)) + field for field in fields)


def seal(key: bytes, key_id: str, binding: Binding, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key``, with a fresh random nonce, into an envelope bound
    to ``binding``."""
    header, nonce, cipher = _sealing(key, key_id)
    sealed = cipher.encrypt(nonce, plaintext, aad(binding, key_id))
    # One copy of the payload, to join it to the header.
    return b"".join((header, nonce, sealed))


def sealed_size(key_id: str, plaintext_size: int) -> int:
    """The size of the envelope :func:`seal` makes of ``plaintext_size`` bytes under ``key_id``."""
    return len(_header(key_id)) + NONCE_SIZE + plaintext_size + TAG_SIZE


def seal_into(key: bytes, key_id: str, binding: Binding, plaintext: bytes, out: memoryview) -> int:
    """Like :func:`seal`, but write the envelope to the start of ``out`` and return its size.

    For multi-megabyte payloads: the ciphertext is made in place, so the envelope is neither
    joined (a copy) nor freshly allocated (page faults on every new buffer). ``out`` must hold
    :func:`sealed_size` bytes.
    """
    header, nonce, cipher = _sealing(key, key_id)
    size = len(header) + NONCE_SIZE + len(plaintext) + TAG_SIZE
    if len(out) < size:
        raise ValueError(f"buffer too small for the envelope ({len(out)} < {size} bytes)")
    start = len(header) + NONCE_SIZE
    out[: len(header)] = header
    out[len(header) : start] = nonce
    cipher.encrypt_into(nonce, plaintext, aad(binding, key_id), out[start:size])
    return size


def open_with(key: bytes, binding: Binding, envelope: bytes) -> bytes:
    """Decrypt ``envelope`` with ``key``, the key named by :func:`key_id_of`.

    Raises :class:`RecordIntegrityError` if the envelope is malformed, was changed, was sealed
    for another binding, or ``key`` is not the key it was sealed with.
    """
    key_id, nonce, sealed = _parse(envelope, binding)
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad(binding, key_id))
    except InvalidTag:
        raise RecordIntegrityError.about("authentication failed", binding, key_id) from None


def key_id_of(envelope: bytes, binding: Binding | None = None) -> str:
    """The id of the key ``envelope`` was sealed with; ``binding`` only names it in errors."""
    return _parse(envelope, binding)[0]


def _check_int(name: str, value: object, bound: int) -> None:
    # bool is an int subclass; True as a region id is a bug, not region 1.
    if type(value) is not int or not 1 <= value < bound:
        raise ValueError(f"'{name}' must be an int in [1, {bound}) (got {value!r})")


def _sealing(key: bytes, key_id: str) -> tuple[bytes, bytes, AESGCM]:
    """The envelope's header, a fresh nonce and the cipher, for one seal."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes (got {len(key)})")
    # The nonce is drawn here, for every seal: a nonce reused under one key breaks GCM.
    return _header(key_id), os.urandom(NONCE_SIZE), AESGCM(key)


def _header(key_id: str) -> bytes:
    try:
        raw = key_id.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"key id must be ASCII (got {key_id!r})") from None
    if not 1 <= len(raw) <= _MAX_KEY_ID:
        raise ValueError(f"key id must be 1..{_MAX_KEY_ID} bytes (got {len(raw)})")
    return bytes((ENVELOPE_VERSION, len(raw))) + raw


def _parse(envelope: bytes, binding: Binding | None) -> tuple[str, bytes, memoryview]:
    # A memoryview slices the ciphertext out of a multi-megabyte envelope without copying it.
    view = memoryview(envelope)
    if len(view) < 2 or view[0] != ENVELOPE_VERSION:
        raise RecordIntegrityError.about("not a version 1 envelope", binding, None)
    if view[1] == 0:
        raise RecordIntegrityError.about("empty key id", binding, None)
    key_end = 2 + view[1]
    if len(view) < key_end + NONCE_SIZE + TAG_SIZE:
        raise RecordIntegrityError.about("envelope too short", binding, None)
    try:
        key_id = view[2:key_end].tobytes().decode("ascii")
    except UnicodeDecodeError:
        raise RecordIntegrityError.about("key id is not ASCII", binding, None) from None
    nonce = view[key_end : key_end + NONCE_SIZE].tobytes()
    return key_id, nonce, view[key_end + NONCE_SIZE :]
