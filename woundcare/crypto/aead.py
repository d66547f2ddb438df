"""AES-256-GCM envelopes bound to the record they protect. Pure functions, no storage.

Envelope, version 1: a header, then a :mod:`~woundcare.crypto.sealing` sealed value::

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

import struct
from dataclasses import dataclass

from . import sealing
from .errors import RecordIntegrityError, SealError
from .sealing import OVERHEAD, Bytes

ENVELOPE_VERSION = 1
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
    # One copy of the payload, to join it to the header.
    return _header(key_id) + sealing.seal(key, plaintext, aad(binding, key_id))


def sealed_size(key_id: str, plaintext_size: int) -> int:
    """The size of the envelope :func:`seal` makes of ``plaintext_size`` bytes under ``key_id``."""
    return len(_header(key_id)) + OVERHEAD + plaintext_size


def seal_into(key: bytes, key_id: str, binding: Binding, plaintext: Bytes, out: memoryview) -> int:
    """Like :func:`seal`, but write the envelope to the start of ``out`` and return its size.

    For multi-megabyte payloads: the ciphertext is made in place, so the envelope is neither
    joined (a copy) nor freshly allocated (page faults on every new buffer). ``out`` must hold
    :func:`sealed_size` bytes.
    """
    header = _header(key_id)
    size = len(header) + OVERHEAD + len(plaintext)
    if len(out) < size:
        raise ValueError(f"buffer too small for the envelope ({len(out)} < {size} bytes)")
    out[: len(header)] = header
    return len(header) + sealing.seal_into(key, plaintext, aad(binding, key_id), out[len(header) :])


def open_with(key: bytes, binding: Binding, envelope: bytes) -> bytes:
    """Decrypt ``envelope`` with ``key``, the key named by :func:`key_id_of`.

    Raises :class:`RecordIntegrityError` if the envelope is malformed, was changed, was sealed
    for another binding, or ``key`` is not the key it was sealed with.
    """
    key_id, sealed = _parse(envelope, binding)
    try:
        return sealing.unseal(key, sealed, aad(binding, key_id))
    except SealError as exc:
        raise RecordIntegrityError.about(exc.reason, binding, key_id) from None


def key_id_of(envelope: bytes, binding: Binding | None = None) -> str:
    """The id of the key ``envelope`` was sealed with; ``binding`` only names it in errors."""
    return _parse(envelope, binding)[0]


def _check_int(name: str, value: object, bound: int) -> None:
    # bool is an int subclass; True as a region id is a bug, not region 1.
    if type(value) is not int or not 1 <= value < bound:
        raise ValueError(f"'{name}' must be an int in [1, {bound}) (got {value!r})")


def _header(key_id: str) -> bytes:
    try:
        raw = key_id.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"key id must be ASCII (got {key_id!r})") from None
    if not 1 <= len(raw) <= _MAX_KEY_ID:
        raise ValueError(f"key id must be 1..{_MAX_KEY_ID} bytes (got {len(raw)})")
    return bytes((ENVELOPE_VERSION, len(raw))) + raw


def _parse(envelope: bytes, binding: Binding | None) -> tuple[str, memoryview]:
    # A memoryview slices the ciphertext out of a multi-megabyte envelope without copying it.
    view = memoryview(envelope)
    if len(view) < 2 or view[0] != ENVELOPE_VERSION:
        raise RecordIntegrityError.about("not a version 1 envelope", binding, None)
    if view[1] == 0:
        raise RecordIntegrityError.about("empty key id", binding, None)
    key_end = 2 + view[1]
    if len(view) < key_end + OVERHEAD:
        raise RecordIntegrityError.about("envelope too short", binding, None)
    try:
        key_id = view[2:key_end].tobytes().decode("ascii")
    except UnicodeDecodeError:
        raise RecordIntegrityError.about("key id is not ASCII", binding, None) from None
    return key_id, view[key_end:]
