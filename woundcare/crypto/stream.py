"""Streams sealed chunk by chunk with AES-256-GCM, for media written as it is produced.

An :mod:`~woundcare.crypto.aead` envelope needs the whole plaintext at once; a consultation
recording is written for as long as the call lasts and must never touch the disk in the
clear. Here each chunk is sealed on its own as it fills, and can be opened on its own as the
stream is read back.

Layout, version 1::

    offset     size      field
    0          1         version, 0x01
    then for each chunk, in order:
    0          4         n, big-endian length of the sealed chunk (16 .. MAX_CHUNK + 16)
    4          n         ciphertext of the chunk, then the 16-byte GCM tag

The stream's last chunk is the one it ends after (it may be empty); every stream has one.

Keys and nonces: :class:`StreamSealer` draws a fresh random 256-bit key for every stream and
never takes one in, so no two streams share a key. The caller wraps that key with the region's
data key (``Keyring.seal``) and stores it beside the stream. Under a key used for one stream
only, the chunk index is a nonce that is never repeated: the sealer alone advances it.

Associated data (not stored, rebuilt on open) binds each chunk to its place, each field a
4-byte big-endian length then its bytes::

    lp(b"woundcare/stream") lp(version) lp(region_id: int64) lp(schema: uint32)
    lp(kind: UTF-8) lp(record_id: UTF-8) lp(index: uint64) lp(final: 0x00 or 0x01)

So a changed bit, chunks swapped or dropped, a stream cut short at a chunk boundary (its new
last chunk was sealed as not final), a chunk appended after the final one, and a stream shown
for another record, kind or region all raise :class:`RecordIntegrityError`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .aead import Binding
from .errors import RecordIntegrityError
from .sealing import KEY_SIZE, NONCE_SIZE, TAG_SIZE, cipher

STREAM_VERSION = 1
CHUNK_SIZE = 64 * 1024
"""Plaintext bytes per chunk that :class:`StreamSealer`'s callers aim for."""
MAX_CHUNK = 1024 * 1024
"""The largest chunk a stream may hold, so a reader never allocates more for a length field."""
_AAD_LABEL = b"woundcare/stream"
_LENGTH = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_UINT32 = struct.Struct(">I")
_UINT64 = struct.Struct(">Q")
_HEADER = bytes((STREAM_VERSION,))

Read = Callable[[int], bytes]
"""``file.read``: up to ``n`` bytes, fewer only at the end of the stream."""


def chunk_aad(binding: Binding, index: int, final: bool) -> bytes:
    """The associated data of chunk ``index`` of the stream for ``binding``."""
    fields = (
        _AAD_LABEL,
        _HEADER,
        _INT64.pack(binding.region_id),
        _UINT32.pack(binding.schema),
        binding.kind.encode(),
        binding.record_id.encode(),
        _UINT64.pack(index),
        b"\x01" if final else b"\x00",
    )
    return b"".join(_UINT32.pack(len(field)) + field for field in fields)


def _nonce(index: int) -> bytes:
    return index.to_bytes(NONCE_SIZE, "big")


class StreamSealer:
    """Seals one stream for ``binding``: the header, then chunk after chunk, the last one final.

    ``key`` is made here and belongs to this stream alone; seal it for storage, never reuse it.
    """

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self._key = os.urandom(KEY_SIZE)
        self._aead = cipher(self._key)
        self._index = 0
        self._finished = False

    def __repr__(self) -> str:
        return f"StreamSealer(binding={self.binding!r}, chunks={self._index}, key=**********)"

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def finished(self) -> bool:
        return self._finished

    @staticmethod
    def header() -> bytes:
        return _HEADER

    def seal(self, chunk: bytes, *, final: bool = False) -> bytes:
        """The next chunk, sealed and framed; after a ``final`` one the stream is closed."""
        if self._finished:
            raise RuntimeError("the stream is finished: its final chunk was sealed")
        if len(chunk) > MAX_CHUNK:
            raise ValueError(f"a chunk holds at most {MAX_CHUNK} bytes (got {len(chunk)})")
        index = self._index
        sealed = self._aead.encrypt(_nonce(index), chunk, chunk_aad(self.binding, index, final))
        self._index += 1
        self._finished = final
        return _LENGTH.pack(len(sealed)) + sealed


def _opened(key: bytes, binding: Binding, read: Read) -> AESGCM:
    """The cipher for a stream under ``key``, once its header has been read and found right."""
    aead = cipher(key)
    if _read_exactly(read, len(_HEADER), binding) != _HEADER:
        raise RecordIntegrityError.about("not a version 1 stream", binding, None)
    return aead


def open_stream(key: bytes, binding: Binding, read: Read) -> Iterator[bytes]:
    """The plaintext chunks of the stream ``read`` returns, each checked before it is yielded.

    Raises :class:`RecordIntegrityError` at the first chunk that does not open, and at the end
    if the stream was cut short. A chunk is known to be the last only once the next length
    field is found missing, so each chunk is yielded after the next one has been read.
    """
    aead = _opened(key, binding, read)
    pending = _next_sealed(read, binding)
    if pending is None:
        raise RecordIntegrityError.about("stream has no chunk", binding, None)
    index = 0
    while True:
        following = _next_sealed(read, binding)
        final = following is None
        try:
            yield aead.decrypt(_nonce(index), pending, chunk_aad(binding, index, final))
        except InvalidTag:
            reason = "stream cut short or chunk altered" if final else "chunk altered, moved or foreign"
            raise RecordIntegrityError.about(f"{reason} (chunk {index})", binding, None) from None
        if following is None:
            return
        pending = following
        index += 1


def open_cut_short(key: bytes, binding: Binding, read: Read) -> Iterator[bytes]:
    """The plaintext chunks of a stream whose writer may have died before its final chunk (a
    server killed mid-recording): as :func:`open_stream`, but a stream that ends without its
    final chunk, or inside a chunk (bytes the kill cut off), ends there instead of raising.
    A whole chunk that does not open still raises :class:`RecordIntegrityError`: a kill cuts
    a stream short, it does not alter one."""
    aead = _opened(key, binding, read)
    pending = _next_whole(read, binding)
    index = 0
    while pending is not None:
        following = _next_whole(read, binding)
        yield _open_either(aead, binding, index, pending, final_too=following is None)
        pending = following
        index += 1


def plaintext_size(sealed_size: int, binding: Binding, chunk_size: int = CHUNK_SIZE) -> int:
    """The plaintext bytes of a stream of ``sealed_size`` bytes whose chunks all hold
    ``chunk_size`` bytes but the last (as :class:`~woundcare.crypto.sealed_sink.SealedSink`
    writes them): known from the size alone, so a range can be answered without reading all."""
    return _layout(sealed_size, binding, chunk_size)[1]


def _layout(sealed_size: int, binding: Binding, chunk_size: int) -> tuple[int, int]:
    """(chunks, plaintext bytes) of a stream laid out as :func:`plaintext_size` says."""
    body, full = sealed_size - len(_HEADER), _LENGTH.size + chunk_size + TAG_SIZE
    if body < _LENGTH.size + TAG_SIZE:
        raise RecordIntegrityError.about("stream has no chunk", binding, None)
    chunks = (body - _LENGTH.size - TAG_SIZE) // full + 1
    return chunks, (chunks - 1) * chunk_size + body - (chunks - 1) * full - _LENGTH.size - TAG_SIZE


def open_range(
    key: bytes, binding: Binding, file: BinaryIO, start: int, stop: int, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """Plaintext bytes ``start`` to ``stop`` (exclusive) of a stream laid out as
    :func:`plaintext_size` says, opening only the chunks that hold them (a player seeking).

    Each chunk is checked as it is opened, bound to its index and, for the stream's last
    one, to being final; a chunk of another length than the layout's raises
    :class:`RecordIntegrityError` like any altered one.
    """
    file.seek(0, os.SEEK_END)
    chunks, size = _layout(file.tell(), binding, chunk_size)
    if not 0 <= start < stop <= size:
        raise ValueError("range outside the stream")
    aead = cipher(key)
    for index in range(start // chunk_size, (stop - 1) // chunk_size + 1):
        file.seek(len(_HEADER) + index * (_LENGTH.size + chunk_size + TAG_SIZE))
        sealed = _next_sealed(file.read, binding)
        final = index == chunks - 1
        try:
            plain = aead.decrypt(_nonce(index), sealed or b"", chunk_aad(binding, index, final))
        except InvalidTag:
            raise RecordIntegrityError.about(f"chunk altered, moved or foreign (chunk {index})", binding, None) from None
        if not final and len(plain) != chunk_size:
            raise RecordIntegrityError.about(f"chunk of the wrong length (chunk {index})", binding, None)
        offset = index * chunk_size
        yield plain[max(start - offset, 0) : stop - offset]


def _next_sealed(read: Read, binding: Binding) -> bytes | None:
    length = read(_LENGTH.size)
    if not length:
        return None
    if len(length) < _LENGTH.size:
        length += _read_exactly(read, _LENGTH.size - len(length), binding)
    (size,) = _LENGTH.unpack(length)
    if not TAG_SIZE <= size <= MAX_CHUNK + TAG_SIZE:
        raise RecordIntegrityError.about("chunk length out of range", binding, None)
    return _read_exactly(read, size, binding)


def _open_either(aead: AESGCM, binding: Binding, index: int, sealed: bytes, *, final_too: bool) -> bytes:
    """Chunk ``index`` opened as not final or, for the last whole chunk (``final_too``), as
    final: it is final only if the writer got to close the stream."""
    for final in (False, True) if final_too else (False,):
        with suppress(InvalidTag):
            return aead.decrypt(_nonce(index), sealed, chunk_aad(binding, index, final))
    raise RecordIntegrityError.about(f"chunk altered, moved or foreign (chunk {index})", binding, None)


def _next_whole(read: Read, binding: Binding) -> bytes | None:
    """The next sealed chunk, or None at the end of the stream or where it was cut off."""
    try:
        return _next_sealed(read, binding)
    except _EndsInside:
        return None


class _EndsInside(RecordIntegrityError):
    """The stream ends inside a chunk's length or bytes."""


def _read_exactly(read: Read, size: int, binding: Binding) -> bytes:
    data = read(size)
    while len(data) < size:
        more = read(size - len(data))
        if not more:
            raise _EndsInside.about("stream ends inside a chunk", binding, None)
        data += more
    return data
