"""A JPEG's metadata removed at the marker level: the same pixels, none of the metadata."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from tests.records.test_images import MARKER, planted_exif
from woundcare.records import jpeg
from woundcare.records.images import ImageRejected, RejectCode, clean_image
from woundcare.records.jpeg import NotJpeg, strip_metadata


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def noisy(width: int = 256, height: int = 192) -> Image.Image:
    """Noise: its entropy-coded data holds many stuffed ``FF 00`` bytes."""
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8))


def camera_jpeg(**params: object) -> bytes:
    out = io.BytesIO()
    big_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + bytes(70_000)
    noisy().save(out, "JPEG", quality=95, exif=planted_exif(), comment=MARKER,
                 xmp=f"<x:xmpmeta>{MARKER}</x:xmpmeta>".encode(), icc_profile=big_icc, **params)
    data = out.getvalue()
    # An IPTC block, a second comment and a vendor APP after the first segments, and trailing
    # bytes after EOI (as some phones write).
    extra = segment(0xED, b"Photoshop 3.0\x00" + MARKER.encode()) + segment(0xFE, MARKER.encode())
    extra += segment(0xE9, MARKER.encode())
    return data[:2] + extra + data[2:] + b"\x00\x00" + MARKER.encode()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize(
    "params",
    [{}, {"progressive": True}, {"restart_marker_blocks": 3}, {"progressive": True, "restart_marker_rows": 1}],
    ids=["baseline", "progressive", "restart-markers", "progressive-restarts"],
)
def test_metadata_goes_and_pixels_stay(params: dict[str, object]) -> None:
    data = camera_jpeg(**params)
    assert data.count(MARKER.encode()) >= 5

    stripped = strip_metadata(data)

    assert MARKER.encode() not in stripped and b"Exif" not in stripped and b"Photoshop" not in stripped
    assert stripped.endswith(b"\xff\xd9")
    assert np.array_equal(pixels(stripped), pixels(data))
    kept = Image.open(io.BytesIO(stripped))
    assert kept.info["icc_profile"] == Image.open(io.BytesIO(data)).info["icc_profile"]  # every chunk
    assert not kept.getexif() and "comment" not in kept.info and "xmp" not in kept.info
    assert len(stripped) < len(data)


def test_segments_a_decoder_skips_go_too() -> None:
    """An allow-list, not a deny-list: a DNL segment (which libjpeg skips) and an APP14 Adobe
    longer than its standard 12 bytes could carry any text past the decode check."""
    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 1)
    data = camera_jpeg()
    sof = data.index(b"\xff\xc0")
    planted = data[:sof] + segment(0xDC, MARKER.encode()) + segment(0xEE, adobe + MARKER.encode()) + data[sof:]
    assert np.array_equal(pixels(planted), pixels(data))  # a decoder skips them

    stripped = strip_metadata(planted)

    assert MARKER.encode() not in stripped and b"\xff\xdc" not in stripped and b"Adobe" not in stripped
    assert np.array_equal(pixels(stripped), pixels(data))
    standard = data[:sof] + segment(0xEE, adobe) + data[sof:]
    assert segment(0xEE, adobe) in strip_metadata(standard)  # the colour transform is kept


def test_orientation_is_written_alone() -> None:
    stripped = strip_metadata(camera_jpeg(), orientation=8, keep_icc=False)

    kept = Image.open(io.BytesIO(stripped))
    assert dict(kept.getexif()) == {ExifTags.Base.Orientation: 8}
    assert "icc_profile" not in kept.info


@pytest.mark.parametrize("cut", [0.3, 0.999])
def test_truncated_structure_is_refused(cut: float) -> None:
    data = camera_jpeg()
    with pytest.raises(NotJpeg):
        strip_metadata(data[: int(len(data) * cut)])


@pytest.mark.parametrize("window", [2, 3, 7, 4096])
def test_small_search_windows_find_the_same_scan_ends(window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = camera_jpeg(progressive=True, restart_marker_rows=1)
    whole = strip_metadata(data)
    monkeypatch.setattr(jpeg, "_WINDOW", window)

    assert strip_metadata(data) == whole


MARKER_AFTER_FF = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""What ends entropy-coded data, as JPEG (ITU T.81 B.1.1.5) says: ``FF`` then anything but a
stuffed zero, a restart marker or a fill byte."""


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("window", [2, 5, 4096])
def test_scan_end_is_the_first_marker_after_ff(seed: int, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jpeg, "_WINDOW", window)
    rng = np.random.default_rng(seed)
    # Mostly FF and the bytes that follow it in a scan, so that every case comes up: runs of
    # fill bytes, stuffed zeros, restart markers, a marker across a window's end, none at all.
    data = rng.choice(np.array([0xFF, 0x00, 0xD0, 0xD7, 0xD8, 0xD9, 0x01, 0x7A], dtype=np.uint8),
                      size=int(rng.integers(1, 20_000)), p=[0.4, 0.35, 0.1, 0.1, 0.0001, 0.0001, 0.0001, 0.0497])
    view = memoryview(data.tobytes() + b"\xff\xd9")
    start = int(rng.integers(0, len(view) - 2))
    found = MARKER_AFTER_FF.search(view, start)
    assert found is not None

    assert jpeg._scan_end(view, start) == found.start()
    # Cut after the marker's FF: no marker is left.
    with pytest.raises(NotJpeg):
        jpeg._scan_end(view[: found.start() + 1], start)


@pytest.mark.parametrize("sizes", [[], [0], [5, 0, 3], [1 << 20, 7, 300_000]])
def test_joined_is_the_pieces_in_order(sizes: list[int]) -> None:
    rng = np.random.default_rng(len(sizes))
    pieces = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]
    # bytes and read-only views of them, as an upload's pieces and a JPEG's segments come
    mixed = [memoryview(piece)[1:] if n % 2 else piece for n, piece in enumerate(pieces)]

    assert jpeg.joined(mixed) == b"".join(mixed)


def with_icc_chunks(*chunks: tuple[int, int, bytes]) -> bytes:
    """A JPEG with APP2 ICC_PROFILE segments of (sequence number, count, profile bytes)."""
    out = io.BytesIO()
    noisy(64, 48).save(out, "JPEG", quality=90)
    data = out.getvalue()
    icc = b"".join(segment(0xE2, b"ICC_PROFILE\x00" + bytes((n, count)) + body) for n, count, body in chunks)
    return data[:2] + icc + data[2:]


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(
    "chunks",
    [
        [(1, 1, SRGB)],
        [(1, 2, SRGB[:300]), (2, 2, SRGB[300:])],
        [(2, 2, SRGB[300:]), (1, 2, SRGB[:300])],  # any order: a reader joins them by number
    ],
    ids=["one", "two", "two out of order"],
)
def test_a_whole_icc_profile_is_kept_chunk_for_chunk(chunks: list[tuple[int, int, bytes]]) -> None:
    data = with_icc_chunks(*chunks)
    stripped = strip_metadata(data)
    assert all(segment(0xE2, b"ICC_PROFILE\x00" + bytes((n, c)) + body) in stripped for n, c, body in chunks)
    assert Image.open(io.BytesIO(stripped)).info["icc_profile"] == SRGB
    assert np.array_equal(pixels(stripped), pixels(data))


BAD_ICC = {
    "numbered twice": [(1, 2, SRGB[:300]), (1, 2, SRGB[300:])],
    "a chunk missing": [(1, 2, SRGB[:300])],
    "one too many": [(1, 2, SRGB[:300]), (2, 2, SRGB[300:]), (3, 2, MARKER.encode())],
    "counts differ": [(1, 2, SRGB[:300]), (2, 3, SRGB[300:])],
    "numbered from 0": [(0, 2, SRGB[:300]), (1, 2, SRGB[300:])],
    "count 0": [(1, 0, SRGB)],
    "no count": [],
    "too large": [(n, 20, bytes(60_000)) for n in range(1, 21)],
}


@pytest.mark.parametrize("chunks", BAD_ICC.values(), ids=BAD_ICC.keys())
def test_malformed_icc_chunks_are_refused(chunks: list[tuple[int, int, bytes]]) -> None:
    if chunks:
        data = with_icc_chunks(*chunks)
    else:  # the identifier and nothing after it: no sequence number, no count
        out = io.BytesIO()
        noisy(64, 48).save(out, "JPEG", quality=90)
        data = out.getvalue()[:2] + segment(0xE2, b"ICC_PROFILE\x00") + out.getvalue()[2:]
    for keep_icc in (True, False):
        with pytest.raises(NotJpeg):
            strip_metadata(data, keep_icc=keep_icc)
    # Through the intake: the upload's existing refusal for a damaged JPEG, nothing re-encoded.
    with pytest.raises(ImageRejected) as refused:
        clean_image(data)
    assert refused.value.code == RejectCode.TRUNCATED


def test_icc_chunks_up_to_the_bound_are_kept() -> None:
    body = bytes(jpeg.MAX_ICC_BYTES // 20)
    stripped = strip_metadata(with_icc_chunks(*[(n, 20, body) for n in range(1, 21)]))
    assert stripped.count(b"ICC_PROFILE") == 20
