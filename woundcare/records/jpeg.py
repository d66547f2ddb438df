"""A JPEG's metadata removed at the marker level: the picture's bytes are kept as they came.

A JPEG is a sequence of segments, each a marker (``FF xx``) and, for most, a 2-byte length
and a payload; after each SOS (start of scan) header comes entropy-coded data, in which a data
byte ``FF`` is followed by a stuffed ``00``, ``FF D0``-``FF D7`` are restart markers, and any
other marker ends the scan. Rewriting only the segment list keeps the quantisation and Huffman
tables, the frame and scan headers and the entropy-coded data byte for byte, so the stored
image decodes to the very pixels the nurse's camera captured (a re-encode would not).

Kept: APP0 JFIF (without its embedded thumbnail), APP2 ICC_PROFILE (every chunk; the colour
profile is clinical colour, see ``woundcare.records.images``; the chunks must be one profile:
numbered 1 to N once each, all saying N, at most :data:`MAX_ICC_BYTES` in all, or the JPEG
is refused as malformed, since chunks a viewer would not join could carry anything), APP14
Adobe of its standard length (it says how the colours were transformed, so decoders need it),
and the segments that describe the picture, by an allow-list (tables, frame and scan headers,
restart interval).
Dropped: APP1 (EXIF with GPS and serials, XMP), APP13 (IPTC, Photoshop), COM (free text),
every other APPn, any other segment (a DNL, an unknown marker: a decoder skips them, so they
could carry anything), and anything after the first EOI (an MPO's further pictures, trailing
garbage). The EXIF orientation survives as a new, minimal APP1 EXIF
that holds only that tag, so viewers still show the picture upright.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence

import numpy as np

from ..errors import WoundcareError

SOI = b"\xff\xd8"
_EOI = 0xD9
_SOS = 0xDA
_APP0, _APP2, _APP14 = 0xE0, 0xE2, 0xEE
_PICTURE = frozenset({
    0xDB,  # DQT: quantisation tables
    0xC4,  # DHT: Huffman tables
    0xCC,  # DAC: arithmetic-coding conditioning
    0xDD,  # DRI: restart interval
    *range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0),  # SOFn
})
"""The segments that describe the picture, kept by an allow-list: anything else could carry
text a decoder skips (a DNL, an unknown marker) and so would pass the decode check."""
_ADOBE_LENGTH = 12
"""``Adobe``, version, two flag words and the colour transform: a longer APP14 carries more."""
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
"""TEM and RST0-7: markers without a length."""

_GOES_ON = np.zeros(256, dtype=bool)
_GOES_ON[[0x00, *range(0xD0, 0xD8), 0xFF]] = True
"""The bytes after an ``FF`` in entropy-coded data that do not make it a marker: a stuffed
zero, a restart marker, or another ``FF`` (a run of fill bytes; its last ``FF`` is the
marker's)."""
_WINDOW = 1024 * 1024
"""Bytes of entropy-coded data searched at once, so that a scan's end is found without
reading to the photo's end (a progressive JPEG has several scans)."""

_JFIF = b"JFIF\x00"
_ICC = b"ICC_PROFILE\x00"
_ADOBE = b"Adobe"
_JFIF_WITHOUT_THUMBNAIL = 14
"""Identifier, version, units, densities; then thumbnail width and height (set to 0)."""
_ICC_HEADER = len(_ICC) + 2
"""The identifier, then the chunk's sequence number (from 1) and the number of chunks."""
MAX_ICC_BYTES = 1024 * 1024
"""A colour profile's bytes in all chunks: a camera's is a few KB (Display P3 about 0.5 KB);
a printer's with large tables still fits."""


class NotJpeg(WoundcareError):
    """The bytes are not a complete, well-formed JPEG segment structure (``clean_image``
    answers it as a truncated image)."""


def strip_metadata(
    data: bytes | bytearray | memoryview, orientation: int = 1, *, keep_icc: bool = True
) -> bytearray:
    """``data`` without metadata, with ``orientation`` (EXIF 1-8) in a minimal EXIF segment
    when it is not 1; raises ``NotJpeg`` on a truncated or malformed structure."""
    view = memoryview(data)
    if bytes(view[:2]) != SOI:
        raise NotJpeg("no SOI")
    head: list[memoryview | bytes] = [SOI]
    kept: list[memoryview | bytes] = []
    icc: list[memoryview] = []
    position = 2
    while True:
        marker, position = _marker(view, position)
        if marker == _EOI:
            raise NotJpeg("EOI before any scan")
        if marker in _STANDALONE:
            kept.append(view[position - 2 : position])
            continue
        end = _segment_end(view, position)
        segment, payload = view[position - 2 : end], view[position + 2 : end]
        if marker == _SOS:
            scans_start = position - 2
            break
        if marker == _APP0:
            if bytes(payload[:5]) == _JFIF and len(payload) >= _JFIF_WITHOUT_THUMBNAIL and len(head) == 1:
                head.append(_jfif_without_thumbnail(payload))
        elif marker == _APP2:
            if bytes(payload[:12]) == _ICC:
                icc.append(payload)
                if keep_icc:
                    kept.append(segment)
        elif marker == _APP14:
            if bytes(payload[:5]) == _ADOBE and len(payload) == _ADOBE_LENGTH:
                kept.append(segment)
        elif marker in _PICTURE:
            kept.append(segment)
        position = end
    _check_icc_chunks(icc)
    if 2 <= orientation <= 8:
        head.append(orientation_exif(orientation))
    return joined((*head, *kept, *_scans(view, scans_start)))


_unfilled_bytearray = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)(
    ("PyByteArray_FromStringAndSize", ctypes.pythonapi)
)
"""A new bytearray of a size, its bytes not set (the C API's, given no source): only for one
that :func:`joined` overwrites whole."""


def joined(pieces: Sequence[memoryview | bytes]) -> bytearray:
    """The pieces in one buffer, made and filled with the GIL released.

    A 5 MB buffer's first writes cost some 1,300 page faults, 2-5 ms here: ``bytearray(n)``
    zero-fills it, and a slice assignment or ``b"".join`` copies into it, each holding the
    GIL throughout, and the event loop's thread waited that long for it (issue 20). So the
    buffer is allocated without being filled and the pieces are copied by ``memmove``
    through ctypes, which releases the GIL for each call; the faults are taken there."""
    size = sum(len(piece) for piece in pieces)
    out: bytearray = _unfilled_bytearray(None, size)
    if not size:
        return out
    target = ctypes.addressof(ctypes.c_char.from_buffer(out))
    for piece in pieces:
        if len(piece):
            # numpy gives the address of any buffer, read-only ones (bytes) too; ``pieces``
            # keeps each alive for the call.
            ctypes.memmove(target, np.frombuffer(piece, dtype=np.uint8).ctypes.data, len(piece))
            target += len(piece)
    return out


def orientation_exif(orientation: int) -> bytes:
    """An APP1 EXIF segment holding only the Orientation tag (0x0112): big-endian TIFF, one
    IFD of one SHORT entry, no next IFD."""
    tiff = b"MM\x00\x2a" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1, orientation, 0, 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _check_icc_chunks(chunks: list[memoryview]) -> None:
    """``NotJpeg`` unless the ICC_PROFILE payloads are one profile's chunks: each numbered
    1..N once (in any order), all with the same N, at most :data:`MAX_ICC_BYTES` of profile."""
    if not chunks:
        return
    count = chunks[0][len(_ICC) + 1] if len(chunks[0]) >= _ICC_HEADER else 0
    numbers = {chunk[len(_ICC)] for chunk in chunks if len(chunk) >= _ICC_HEADER and chunk[len(_ICC) + 1] == count}
    if count == 0 or len(chunks) != count or numbers != set(range(1, count + 1)):
        raise NotJpeg("ICC profile chunks out of sequence")
    if sum(len(chunk) - _ICC_HEADER for chunk in chunks) > MAX_ICC_BYTES:
        raise NotJpeg("ICC profile too large")


def _jfif_without_thumbnail(payload: memoryview) -> bytes:
    body = bytes(payload[: _JFIF_WITHOUT_THUMBNAIL - 2]) + b"\x00\x00"
    return b"\xff\xe0" + struct.pack(">H", len(body) + 2) + body


def _marker(view: memoryview, position: int) -> tuple[int, int]:
    """The marker at ``position`` (after any fill bytes) and the position after it."""
    if position >= len(view) or view[position] != 0xFF:
        raise NotJpeg("expected a marker")
    while position < len(view) and view[position] == 0xFF:
        position += 1
    if position >= len(view) or view[position] == 0x00:
        raise NotJpeg("truncated marker")
    return view[position], position + 1


def _segment_end(view: memoryview, position: int) -> int:
    if position + 2 > len(view):
        raise NotJpeg("truncated segment length")
    length = (view[position] << 8) | view[position + 1]
    end = position + length
    if length < 2 or end > len(view):
        raise NotJpeg("truncated segment")
    return end


def _scans(view: memoryview, position: int) -> list[memoryview]:
    """From the first SOS to the end of the EOI marker: every scan and the segments between
    scans (a progressive JPEG's further tables), without the metadata segments among them."""
    pieces: list[memoryview] = []
    while True:
        start = position
        marker, position = _marker(view, position)
        if marker == _EOI:
            pieces.append(view[start:position])
            return pieces
        if marker not in _STANDALONE:
            position = _segment_end(view, position)
        if marker == _SOS:
            position = _scan_end(view, position)
        elif marker not in _PICTURE and marker not in _STANDALONE:
            continue  # metadata or a segment a decoder skips, between scans
        pieces.append(view[start:position])


def _scan_end(view: memoryview, position: int) -> int:
    """Where the entropy-coded data starting at ``position`` ends (the next real marker).

    Searched with numpy, whose comparisons release the GIL: a regular expression held it for
    the whole search (some 2 ms per 5 MB photo, in stretches the event loop's thread waited
    for); what is left under the GIL is one look-up per ``FF`` found (about 1 byte in 250)."""
    while position < len(view):
        # Windows overlap by a byte, so a marker across a window's end is found in the next.
        end = min(len(view), position + _WINDOW)
        window = np.frombuffer(view[position:end], dtype=np.uint8)
        fills = np.flatnonzero(window[:-1] == 0xFF)
        ends = fills[~_GOES_ON[window[fills + 1]]]
        if ends.size:
            return position + int(ends[0])
        position = end - 1 if end < len(view) else end
    raise NotJpeg("scan without an end")
