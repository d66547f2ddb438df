from __future__ import annotations

import os
from dataclasses import replace

import pytest

from woundcare.crypto import Binding, RecordIntegrityError, aad, key_id_of, open_with, seal
from woundcare.crypto.aead import seal_into, sealed_size

KEY = bytes(range(32))
KEY_ID = "k1-test"
BINDING = Binding(region_id=7, kind="patient_identity", record_id="rec-abc")
SECRET = b"01019012345 Kari Nordmann"


def nonce_of(envelope: bytes) -> bytes:
    """The nonce, found where the documented format puts it."""
    start = 2 + envelope[1]
    return envelope[start : start + 12]


def test_round_trip() -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    assert SECRET not in envelope
    assert open_with(KEY, BINDING, envelope) == SECRET


def test_round_trip_empty_and_large() -> None:
    large = os.urandom(4 * 1024 * 1024)
    for plaintext in (b"", large):
        envelope = seal(KEY, KEY_ID, BINDING, plaintext)
        assert len(envelope) == 2 + len(KEY_ID) + 12 + len(plaintext) + 16
        assert open_with(KEY, BINDING, envelope) == plaintext


def test_seal_into_makes_an_envelope_in_place() -> None:
    large = os.urandom(4 * 1024 * 1024)
    buffer = bytearray(b"\xee" * (sealed_size(KEY_ID, len(large)) + 5))
    size = seal_into(KEY, KEY_ID, BINDING, large, memoryview(buffer))

    assert size == sealed_size(KEY_ID, len(large)) == len(seal(KEY, KEY_ID, BINDING, large))
    assert open_with(KEY, BINDING, bytes(buffer[:size])) == large
    assert buffer[size:] == b"\xee" * 5  # nothing written past the envelope
    # A fresh nonce each time, into the same buffer.
    first = nonce_of(bytes(buffer))
    seal_into(KEY, KEY_ID, BINDING, large, memoryview(buffer))
    assert nonce_of(bytes(buffer)) != first


def test_seal_into_a_short_buffer_fails_before_writing() -> None:
    buffer = bytearray(sealed_size(KEY_ID, len(SECRET)) - 1)
    with pytest.raises(ValueError, match="buffer too small"):
        seal_into(KEY, KEY_ID, BINDING, SECRET, memoryview(buffer))
    assert buffer == bytearray(len(buffer))


def test_envelope_layout() -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    assert envelope[0] == 1
    assert envelope[1] == len(KEY_ID)
    assert envelope[2 : 2 + len(KEY_ID)] == KEY_ID.encode()
    assert key_id_of(envelope) == KEY_ID


def test_flipped_bit_anywhere_fails() -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    for position in range(len(envelope)):
        for bit in range(8):
            damaged = bytearray(envelope)
            damaged[position] ^= 1 << bit
            with pytest.raises(RecordIntegrityError):
                open_with(KEY, BINDING, bytes(damaged))


@pytest.mark.parametrize("cut", [0, 1, 2, 10, -1, -16])
def test_truncated_fails(cut: int) -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    with pytest.raises(RecordIntegrityError):
        open_with(KEY, BINDING, envelope[:cut])


def test_appended_byte_fails() -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    with pytest.raises(RecordIntegrityError):
        open_with(KEY, BINDING, envelope + b"\0")


@pytest.mark.parametrize(
    "other",
    [
        replace(BINDING, region_id=8),
        replace(BINDING, kind="snapshot"),
        replace(BINDING, record_id="rec-abd"),
        replace(BINDING, schema=2),
    ],
    ids=["region", "kind", "record", "schema"],
)
def test_other_binding_fails(other: Binding) -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    with pytest.raises(RecordIntegrityError) as caught:
        open_with(KEY, other, envelope)
    assert (caught.value.region_id, caught.value.kind, caught.value.record_id) == (
        other.region_id,
        other.kind,
        other.record_id,
    )
    assert caught.value.key_id == KEY_ID


def test_wrong_key_fails() -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    with pytest.raises(RecordIntegrityError):
        open_with(bytes(32), BINDING, envelope)


def test_error_never_shows_plaintext() -> None:
    envelope = seal(KEY, KEY_ID, BINDING, SECRET)
    with pytest.raises(RecordIntegrityError) as caught:
        open_with(KEY, replace(BINDING, record_id="rec-other"), envelope)
    assert "rec-other" in str(caught.value)
    assert "Nordmann" not in str(caught.value)
    assert KEY.hex() not in str(caught.value)


def test_nonces_unique() -> None:
    nonces = {nonce_of(seal(KEY, KEY_ID, BINDING, b"x")) for _ in range(10_000)}
    assert len(nonces) == 10_000


def test_aad_is_unambiguous() -> None:
    # Without length prefixes these pairs would encode the same bytes.
    assert aad(Binding(1, "ab", "c"), "k") != aad(Binding(1, "a", "bc"), "k")
    assert aad(Binding(1, "a", "b"), "ck") != aad(Binding(1, "a", "bc"), "k")
    assert aad(BINDING, KEY_ID) == aad(replace(BINDING), KEY_ID)


@pytest.mark.parametrize(
    "fields",
    [
        {"region_id": 0, "kind": "k", "record_id": "r"},
        {"region_id": True, "kind": "k", "record_id": "r"},
        {"region_id": "1", "kind": "k", "record_id": "r"},
        {"region_id": 1, "kind": "", "record_id": "r"},
        {"region_id": 1, "kind": "k", "record_id": ""},
        {"region_id": 1, "kind": "k", "record_id": "r", "schema": 0},
        {"region_id": 1, "kind": "k", "record_id": "r", "schema": 2**32},
    ],
)
def test_binding_checks_itself(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Binding(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "key_id"),
    [(bytes(16), KEY_ID), (KEY, ""), (KEY, "x" * 256), (KEY, "nøkkel")],
    ids=["aes128-key", "empty-id", "long-id", "non-ascii-id"],
)
def test_seal_rejects_bad_key_or_id(key: bytes, key_id: str) -> None:
    with pytest.raises(ValueError):
        seal(key, key_id, BINDING, SECRET)


@pytest.mark.parametrize("envelope", [b"", b"\x02\x01k" + bytes(28), b"\x01\x00" + bytes(28)])
def test_key_id_of_malformed(envelope: bytes) -> None:
    with pytest.raises(RecordIntegrityError):
        key_id_of(envelope)
