from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

from woundcare.records.images import (
    CleanImage,
    ImageRejected,
    MediaType,
    RejectCode,
    clean_image,
)
from woundcare.records.jpeg import strip_metadata

MARKER = "WOUNDCARE-PLANTED-7f3a"


def picture(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    """A smooth gradient: compresses like a photo, and pixels can be compared."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def bilevel_png(width: int, height: int, *, rows: int) -> bytes:
    """A 1-bit greyscale PNG declaring ``width``x``height`` whose IDAT holds ``rows`` blank rows.

    Blank rows deflate about 1000:1, so a real 100-megapixel PNG is a few kilobytes, and a
    bomb declaring billions of pixels needs only a few bytes of data.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed pixels
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(rows)) + deflate.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def decoded(clean: CleanImage) -> Image.Image:
    image = Image.open(io.BytesIO(clean.data))
    image.load()
    return image


def rejected(data: bytes, **limits: int) -> RejectCode:
    with pytest.raises(ImageRejected) as caught:
        clean_image(data, **limits)
    return caught.value.code


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if any pixel data is decoded."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    yield


@pytest.mark.parametrize(
    ("fmt", "media_type", "params"),
    [
        ("JPEG", MediaType.JPEG, {"quality": 90}),
        ("PNG", MediaType.PNG, {}),
        ("WEBP", MediaType.WEBP, {"quality": 90}),
    ],
)
def test_round_trip_keeps_format_and_size(
    fmt: str, media_type: MediaType, params: dict[str, object]
) -> None:
    clean = clean_image(encode(picture(640, 480), fmt, **params))

    assert clean.media_type == media_type
    assert (clean.width, clean.height) == (640, 480)
    out = decoded(clean)
    assert out.format == fmt
    assert out.size == (640, 480)
    thumb = Image.open(io.BytesIO(clean.thumbnail))
    assert thumb.format == "JPEG"
    assert thumb.size == (clean.thumb_width, clean.thumb_height) == (320, 240)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_upload_in_pieces_is_the_upload_whole_and_its_pieces_are_let_go(fmt: str) -> None:
    data = encode(picture(640, 480), fmt)
    pieces = [data[start : start + 1000] for start in range(0, len(data), 1000)]
    assert clean_image(pieces) == clean_image(data)
    assert pieces == []  # freed in the image thread, not where the upload's handler ends
    with pytest.raises(ImageRejected) as refused:
        clean_image([data[:1000], data[1000:]], max_bytes=len(data) - 1)
    assert refused.value.code is RejectCode.TOO_LARGE


def damaged_jpeg() -> bytes:
    """A JPEG whose segments are whole but whose Huffman table is not: the marker walk passes
    it, only the decode refuses it."""
    data = bytearray(encode(picture(640, 480), "JPEG"))
    counts = data.index(b"\xff\xc4") + 5  # marker, length, class and id; then 16 counts
    data[counts : counts + 16] = bytes([255] * 16)
    return bytes(data)


def test_a_jpeg_whose_segments_pass_is_still_refused_by_its_decode() -> None:
    data = damaged_jpeg()
    assert strip_metadata(data)  # the structure is whole
    with pytest.raises(ImageRejected) as refused:
        clean_image(data)
    assert refused.value.code is RejectCode.TRUNCATED


def test_png_stays_lossless_with_alpha() -> None:
    source = picture(100, 80, "RGBA")
    source.putalpha(Image.linear_gradient("L").resize((100, 80)))

    out = decoded(clean_image(encode(source, "PNG")))

    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), np.asarray(source))


def test_palette_png_keeps_its_transparent_colour() -> None:
    source = picture(40, 40).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)

    out = decoded(clean_image(encode(source, "PNG", transparency=3)))

    assert out.mode == "P"
    assert out.info["transparency"] == 3
    assert np.array_equal(np.asarray(out), np.asarray(source))


def test_lossless_webp_stays_lossless() -> None:
    source = picture(64, 48)

    clean = clean_image(encode(source, "WEBP", lossless=True))

    assert clean.data[12:16] == b"VP8L"
    assert np.array_equal(np.asarray(decoded(clean)), np.asarray(source))


def test_multi_picture_jpeg_becomes_plain_jpeg() -> None:
    """Phones append depth and gain maps (MPO); only the photo itself is kept."""
    data = encode(picture(64, 48), "MPO", save_all=True, append_images=[picture(32, 24)])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    clean = clean_image(data)

    assert clean.media_type == MediaType.JPEG
    out = decoded(clean)
    assert out.format == "JPEG"
    assert out.size == (64, 48)
    assert getattr(out, "n_frames", 1) == 1


def planted_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = MARKER
    exif[ExifTags.Base.Make] = "WoundCam"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (59.0, 54.0, 48.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (10.0, 45.0, 36.0)
    return exif


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"comment": MARKER, "xmp": f"<x:xmpmeta>{MARKER}</x:xmpmeta>".encode()}),
        ("PNG", {}),
        ("WEBP", {"xmp": f"<x:xmpmeta>{MARKER}</x:xmpmeta>".encode()}),
    ],
)
def test_metadata_is_removed(fmt: str, params: dict[str, object]) -> None:
    data = encode(picture(), fmt, exif=planted_exif(), **params)
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the GPS really was planted
    assert MARKER.encode() in data

    clean = clean_image(data)

    out = decoded(clean)
    assert len(out.getexif()) == 0
    assert not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment"} & out.info.keys()
    for blob in (clean.data, clean.thumbnail):
        assert MARKER.encode() not in blob
        assert b"Exif\x00\x00" not in blob
        assert b"eXIf" not in blob
        assert b"WoundCam" not in blob


def test_a_jpeg_decode_yields_the_cpu_between_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block Pillow decodes is a point where a thread that woke meanwhile (the event
    loop's) gets the CPU, rather than at the kernel's next tick (issue 20)."""
    rng = np.random.default_rng(3)
    photo = encode(Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)), "JPEG", quality=95)
    real = os.sched_yield
    yields = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(real()))
    clean_image([photo[:1000], photo[1000:]])
    assert len(yields) >= len(photo) // (64 * 1024)


def test_jpeg_orientation_is_the_only_exif_left_and_the_pixels_stay() -> None:
    # Left half red, right half blue; orientation 6 asks viewers to turn it 90 degrees
    # clockwise, which puts the red half on top.
    source = Image.new("RGB", (80, 40), (255, 0, 0))
    source.paste((0, 0, 255), (40, 0, 80, 40))
    data = encode(source, "JPEG", quality=95, exif=planted_exif(orientation=6))

    clean = clean_image(data)

    assert (clean.width, clean.height) == (40, 80)
    stored = decoded(clean)
    assert dict(stored.getexif()) == {ExifTags.Base.Orientation: 6}
    assert np.array_equal(np.asarray(stored), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    pixels = ImageOps.exif_transpose(stored).convert("RGB")
    top, bottom = pixels.getpixel((20, 10)), pixels.getpixel((20, 70))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    assert (clean.thumb_width, clean.thumb_height) == (40, 80)


def corners(width: int, height: int) -> Image.Image:
    """Grey, with a red top-left and a blue top-right corner: every turn and mirror of it differs."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, width // 4, height // 4))
    image.paste((0, 0, 255), (width - width // 4, 0, width, height // 4))
    return image


def colour_at(image: Image.Image, x: float, y: float) -> str:
    r, g, b = image.convert("RGB").getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))  # type: ignore[misc]
    return "red" if r > 200 and b < 60 else "blue" if b > 200 and r < 60 else "grey"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_thumbnail_is_upright_for_every_orientation(orientation: int) -> None:
    upright = corners(1600, 1200)
    # What a camera stores: the sensor's picture, and the orientation that turns it upright.
    undo = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
            7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    sensor = upright if undo is None else upright.transpose(undo)
    data = encode(sensor, "JPEG", quality=90, exif=planted_exif(orientation))
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (1600, 1200)  # the set-up is right

    clean = clean_image(data)

    thumb = Image.open(io.BytesIO(clean.thumbnail))
    assert (clean.width, clean.height, thumb.size) == (1600, 1200, (320, 240))
    assert [colour_at(thumb, 0.05, 0.05), colour_at(thumb, 0.95, 0.05), colour_at(thumb, 0.05, 0.95)] == [
        "red", "blue", "grey"]
    stored = decoded(clean)
    assert dict(stored.getexif()) == ({} if orientation == 1 else {ExifTags.Base.Orientation: orientation})
    assert np.array_equal(np.asarray(stored), np.asarray(Image.open(io.BytesIO(data))))


def test_usable_icc_profile_is_kept_and_garbage_dropped() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    kept = decoded(clean_image(encode(picture(), "JPEG", icc_profile=srgb)))
    dropped = decoded(clean_image(encode(picture(), "JPEG", icc_profile=MARKER.encode() * 8)))

    assert kept.info.get("icc_profile") == srgb
    assert "icc_profile" not in dropped.info


def test_thumbnail_is_never_larger_than_the_picture() -> None:
    clean = clean_image(encode(picture(100, 50), "PNG"))

    assert (clean.thumb_width, clean.thumb_height) == (100, 50)


def test_thumbnail_of_tall_transparent_png_is_flattened_on_white() -> None:
    source = Image.new("RGBA", (200, 1000), (0, 0, 0, 0))

    clean = clean_image(encode(source, "PNG"))

    thumb = Image.open(io.BytesIO(clean.thumbnail))
    assert thumb.size == (64, 320)
    assert thumb.convert("RGB").getpixel((32, 160)) == (255, 255, 255)


def test_text_file_named_jpg_is_not_an_image() -> None:
    # Only bytes reach clean_image: a ".jpg" name or an image/jpeg content type counts for nothing.
    assert rejected(b"Patient notes: wound 3 cm, sloughy base.\n" * 20) == "not_an_image"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_unsupported(fmt: str) -> None:
    assert rejected(encode(picture(), fmt)) == "unsupported_format"


def test_too_many_bytes_refused_before_parsing() -> None:
    data = encode(picture(), "PNG")

    assert rejected(data, max_bytes=len(data) - 1) == "too_large"
    assert rejected(b"x" * 101, max_bytes=100) == "too_large"


def test_too_small() -> None:
    assert rejected(encode(picture(15, 400), "PNG")) == "too_small"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_100_megapixels_refused_from_the_header(no_pixel_decoding: None) -> None:
    data = bilevel_png(10_000, 10_000, rows=10_000)
    assert len(data) < 64 * 1024  # a valid, complete PNG

    assert rejected(data) == "too_many_pixels"


def test_100_megapixels_where_the_process_escalates_pillows_warning() -> None:
    data = bilevel_png(10_000, 10_000, rows=1)

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert rejected(data) == "decompression_bomb"


def test_decompression_bomb_refused_without_allocating(no_pixel_decoding: None) -> None:
    """A few hundred bytes declaring 2.5 gigapixels: Pillow's guard (default limit) trips."""
    data = bilevel_png(50_000, 50_000, rows=1)
    assert len(data) < 1024

    assert rejected(data) == "decompression_bomb"


def test_decompression_bomb_refused_even_with_pillows_guard_off(
    monkeypatch: pytest.MonkeyPatch, no_pixel_decoding: None
) -> None:
    """Other code may disable Pillow's process-wide limit; ``max_pixels`` still holds."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    assert rejected(bilevel_png(50_000, 50_000, rows=1)) == "too_many_pixels"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_upload(fmt: str) -> None:
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    data = encode(noisy, fmt)

    assert rejected(data[: len(data) // 2]) == "truncated"


def test_truncated_images_setting_must_stay_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)

    with pytest.raises(RuntimeError):
        clean_image(encode(picture(), "PNG"))


def test_rejection_does_not_echo_the_upload() -> None:
    with pytest.raises(ImageRejected) as caught:
        clean_image(MARKER.encode() * 10)

    error = caught.value
    assert MARKER not in str(error)
    assert MARKER not in error.message
    assert error.__cause__ is None and error.__suppress_context__


def seeds() -> list[bytes]:
    small = picture(20, 20)
    return [
        encode(small, "JPEG"),
        encode(small, "PNG"),
        encode(small, "WEBP"),
        encode(small, "WEBP", lossless=True),
        encode(small, "GIF"),
    ]


def test_arbitrary_bytes_only_ever_raise_image_rejected() -> None:
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    # Random bytes rarely get past the signature check, so damaged real files are mixed in.
    damaged = st.tuples(
        st.sampled_from(seeds()),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
        st.integers(1, 10_000),
    ).map(lambda t: damage(*t))

    @settings(max_examples=100, deadline=None)
    @given(st.one_of(st.binary(max_size=2048), damaged))
    def check(data: bytes) -> None:
        with contextlib.suppress(ImageRejected):
            clean_image(data, min_side=1)

    check()


def damage(data: bytes, edits: list[tuple[int, int]], keep: int) -> bytes:
    damaged = bytearray(data[:keep])
    for position, value in edits:
        if damaged:
            damaged[position % len(damaged)] = value
    return bytes(damaged)
