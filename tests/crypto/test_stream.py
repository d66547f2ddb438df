"""Chunked stream sealing: round trips, and every way a stream can be tampered with."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from woundcare.crypto import Binding, RecordIntegrityError
from woundcare.crypto.stream import (
    MAX_CHUNK, StreamSealer, chunk_aad, open_cut_short, open_range, open_stream, plaintext_size,
)

BINDING = Binding(region_id=3, kind="recording_video", record_id="rec-1")


def sealed_stream(chunks: list[bytes], binding: Binding = BINDING) -> tuple[bytes, bytes]:
    """A whole stream of ``chunks`` (the last one final) and its key."""
    sealer = StreamSealer(binding)
    parts = [sealer.header()]
    parts += [sealer.seal(chunk, final=i == len(chunks) - 1) for i, chunk in enumerate(chunks)]
    return b"".join(parts), sealer.key


def frames_of(stream: bytes) -> list[bytes]:
    """The framed chunks (length field included), found where the documented layout puts them."""
    frames, at = [], 1
    while at < len(stream):
        (size,) = struct.unpack(">I", stream[at : at + 4])
        frames.append(stream[at : at + 4 + size])
        at += 4 + size
    return frames


def opened(key: bytes, stream: bytes, binding: Binding = BINDING) -> bytes:
    return b"".join(open_stream(key, binding, io.BytesIO(stream).read))


CHUNKS = [os.urandom(1000), b"second", os.urandom(70_000), b""]


def test_round_trip_and_layout() -> None:
    stream, key = sealed_stream(CHUNKS)
    assert opened(key, stream) == b"".join(CHUNKS)
    assert stream[0] == 1
    frames = frames_of(stream)
    assert [len(f) for f in frames] == [4 + len(c) + 16 for c in CHUNKS]
    # Each chunk is plain AES-GCM under the stream key, its index the nonce.
    for index, (frame, chunk) in enumerate(zip(frames, CHUNKS, strict=True)):
        aad = chunk_aad(BINDING, index, final=index == len(CHUNKS) - 1)
        assert AESGCM(key).decrypt(index.to_bytes(12, "big"), frame[4:], aad) == chunk


def test_reads_in_small_pieces() -> None:
    stream, key = sealed_stream(CHUNKS)
    source = io.BytesIO(stream)
    assert b"".join(open_stream(key, BINDING, lambda n: source.read(min(n, 7)))) == b"".join(CHUNKS)


def test_every_stream_has_its_own_key() -> None:
    keys = {StreamSealer(BINDING).key for _ in range(100)}
    assert len(keys) == 100


def test_a_finished_stream_takes_no_more_chunks() -> None:
    sealer = StreamSealer(BINDING)
    sealer.seal(b"a", final=True)
    with pytest.raises(RuntimeError):
        sealer.seal(b"b")
    with pytest.raises(ValueError):
        StreamSealer(BINDING).seal(bytes(MAX_CHUNK + 1))


def test_flipped_bit_anywhere_fails() -> None:
    stream, key = sealed_stream([b"abc", b"defg", b"h"])
    for position in range(len(stream)):
        for bit in (0, 3, 7):
            damaged = bytearray(stream)
            damaged[position] ^= 1 << bit
            with pytest.raises(RecordIntegrityError):
                opened(key, bytes(damaged))


def test_truncated_at_any_length_fails() -> None:
    stream, key = sealed_stream(CHUNKS[:3])
    for cut in range(len(stream)):
        with pytest.raises(RecordIntegrityError):
            opened(key, stream[:cut])


@pytest.mark.parametrize("order", [[1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 3, 2], [3, 1, 2, 0]])
def test_reordered_chunks_fail(order: list[int]) -> None:
    stream, key = sealed_stream([b"one", b"two", b"three", b"four"])
    frames = frames_of(stream)
    with pytest.raises(RecordIntegrityError):
        opened(key, stream[:1] + b"".join(frames[i] for i in order))


def test_dropped_or_repeated_chunk_fails() -> None:
    stream, key = sealed_stream([b"one", b"two", b"three"])
    frames = frames_of(stream)
    for changed in ([frames[0], frames[2]], [frames[0], frames[1], frames[1], frames[2]],
                    [*frames, frames[2]], frames[:2]):
        with pytest.raises(RecordIntegrityError):
            opened(key, stream[:1] + b"".join(changed))


def test_a_chunk_from_another_stream_fails() -> None:
    stream, key = sealed_stream([b"one", b"two"])
    other, _ = sealed_stream([b"uno", b"dos"])
    with pytest.raises(RecordIntegrityError):
        opened(key, stream[:1] + frames_of(stream)[0] + frames_of(other)[1])


@pytest.mark.parametrize(
    "elsewhere",
    [replace(BINDING, region_id=4), replace(BINDING, record_id="rec-2"), replace(BINDING, kind="snapshot_image"),
     replace(BINDING, schema=2)],
    ids=["region", "record", "kind", "schema"],
)
def test_shown_for_another_binding_fails(elsewhere: Binding) -> None:
    stream, key = sealed_stream(CHUNKS)
    with pytest.raises(RecordIntegrityError) as raised:
        opened(key, stream, elsewhere)
    assert raised.value.region_id == elsewhere.region_id and raised.value.record_id == elsewhere.record_id


def test_wrong_key_fails() -> None:
    stream, _ = sealed_stream(CHUNKS)
    with pytest.raises(RecordIntegrityError):
        opened(os.urandom(32), stream)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_a_key_of_the_wrong_size_is_refused_by_every_opener(size: int) -> None:
    stream, _ = sealed_stream(CHUNKS)
    key = os.urandom(size)
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        opened(key, stream)
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        list(open_cut_short(key, BINDING, io.BytesIO(stream).read))
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        list(open_range(key, BINDING, io.BytesIO(stream), 0, 10))


def test_malformed_streams_fail_before_reading_far() -> None:
    _, key = sealed_stream([b"x"])
    for bad in (b"", b"\x02", b"\x01", b"\x01\x00\x00\x00\x05abcde", b"\x01\xff\xff\xff\xff"):
        with pytest.raises(RecordIntegrityError):
            opened(key, bad)


def test_key_is_not_in_repr() -> None:
    sealer = StreamSealer(BINDING)
    assert sealer.key.hex() not in repr(sealer) and "**********" in repr(sealer)


@pytest.mark.parametrize("length", [0, 1, 99, 100, 101, 350, 400])
def test_any_range_opens_from_the_chunks_that_hold_it(length: int) -> None:
    """Full chunks of 100 bytes but the last (as the sealed sink writes them), even an empty last one."""
    plain = os.urandom(length)
    pieces = [plain[i : i + 100] for i in range(0, length, 100)]
    stream, key = sealed_stream(pieces + [b""] if length % 100 == 0 else pieces)
    assert plaintext_size(len(stream), BINDING, 100) == length
    for start in range(0, length, 37):
        for stop in (start + 1, min(start + 150, length), length):
            got = b"".join(open_range(key, BINDING, io.BytesIO(stream), start, stop, 100))
            assert got == plain[start:stop]
    with pytest.raises(ValueError):
        list(open_range(key, BINDING, io.BytesIO(stream), 0, length + 1, 100))


def test_a_range_over_an_altered_moved_or_cut_chunk_fails() -> None:
    plain = os.urandom(450)
    stream, key = sealed_stream([plain[i : i + 100] for i in range(0, 450, 100)])
    frames = frames_of(stream)
    flipped = bytearray(stream)
    flipped[1 + 2 * 120 + 10] ^= 1
    swapped = stream[:1] + frames[0] + frames[2] + frames[1] + b"".join(frames[3:])
    cut = stream[:1] + b"".join(frames[:4])  # the fourth chunk was not sealed as the last
    for changed, start in ((bytes(flipped), 200), (swapped, 100), (cut, 350)):
        with pytest.raises(RecordIntegrityError):
            list(open_range(key, BINDING, io.BytesIO(changed), start, start + 10, 100))
    with pytest.raises(RecordIntegrityError):
        list(open_range(key, replace(BINDING, record_id="rec-2"), io.BytesIO(stream), 0, 10, 100))
    assert b"".join(open_range(key, BINDING, io.BytesIO(bytes(flipped)), 0, 200, 100)) == plain[:200]


def cut_short_stream(chunks: list[bytes]) -> tuple[bytes, bytes]:
    """What a writer killed before its final chunk left: the header and ``chunks``, none final."""
    sealer = StreamSealer(BINDING)
    return sealer.header() + b"".join(sealer.seal(chunk) for chunk in chunks), sealer.key


def salvaged(key: bytes, stream: bytes) -> list[bytes]:
    return list(open_cut_short(key, BINDING, io.BytesIO(stream).read))


def test_a_stream_cut_short_opens_up_to_its_last_whole_chunk() -> None:
    chunks = [os.urandom(1000), b"second", os.urandom(70_000)]
    stream, key = cut_short_stream(chunks)
    with pytest.raises(RecordIntegrityError):
        opened(key, stream)  # the ordinary reader refuses a stream without its end
    assert salvaged(key, stream) == chunks
    ends = [1 + sum(len(f) for f in frames_of(stream)[:n]) for n in range(4)]
    for cut in range(1, len(stream) + 1):
        # Cut anywhere (inside a length field or a chunk, the bytes a kill lost): the whole chunks before it.
        assert salvaged(key, stream[:cut]) == chunks[: sum(1 for end in ends[1:] if end <= cut)]


def test_a_finished_stream_opens_whole_as_cut_short() -> None:
    stream, key = sealed_stream(CHUNKS)
    assert salvaged(key, stream) == CHUNKS


def test_an_altered_moved_or_foreign_chunk_of_a_cut_short_stream_still_fails() -> None:
    stream, key = cut_short_stream([b"one", b"two", b"three"])
    frames = frames_of(stream)
    at = 1
    for frame in frames:
        for position in range(at + 4, at + len(frame)):  # the sealed bytes, not the length field
            damaged = bytearray(stream)
            damaged[position] ^= 0x04
            with pytest.raises(RecordIntegrityError):
                salvaged(key, bytes(damaged))
        at += len(frame)
    for changed in ([frames[1], frames[0]], [frames[0], frames[2]]):
        with pytest.raises(RecordIntegrityError):
            salvaged(key, stream[:1] + b"".join(changed))
    with pytest.raises(RecordIntegrityError):
        list(open_cut_short(key, replace(BINDING, record_id="rec-2"), io.BytesIO(stream).read))
