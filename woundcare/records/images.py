"""Wound photos as uploaded: checked, stripped of metadata, re-encoded, with a thumbnail.

A phone photo carries GPS coordinates, timestamps, device serials and free text (EXIF, XMP,
JPEG comments, PNG text chunks). None of it belongs in a health record, so nothing of the
upload's container survives: only the pixels are kept, turned upright by their EXIF
orientation, and re-encoded in the upload's own format.

The ICC colour profile is the one exception. Wound-bed colour is clinical information (red
granulation, yellow slough, black necrosis) and phones shoot in Display P3, so dropping the
profile would shift the colours a specialist judges. A profile holds colorimetry, not
patient or place data. It is kept only if LittleCMS parses it, so a malformed blob never
reaches a viewer's colour engine.

Every refusal is an ``ImageRejected`` with a stable ``code`` and a fixed message: neither
echoes the upload. Errors are raised ``from None`` because the decoder's own messages may
quote bytes of the upload.

``clean_image`` is synchronous and CPU-bound; call it in the image threads, holding its pixels
in their budget (``woundcare.records.imagework``).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import WoundcareError


class MediaType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    WEBP = "image/webp"


class RejectCode(StrEnum):
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    TRUNCATED = "truncated"
    DECOMPRESSION_BOMB = "decompression_bomb"


_MESSAGES: dict[RejectCode, str] = {
    RejectCode.TOO_LARGE: "The file is too large.",
    RejectCode.NOT_AN_IMAGE: "The file is not an image.",
    RejectCode.UNSUPPORTED_FORMAT: "Only JPEG, PNG and WebP images are accepted.",
    RejectCode.TOO_MANY_PIXELS: "The image has too many pixels; please send a smaller one.",
    RejectCode.TOO_SMALL: "The image is too small to be useful.",
    RejectCode.TRUNCATED: "The image is incomplete or damaged; please send it again.",
    RejectCode.DECOMPRESSION_BOMB: "The image declares an implausible size and was refused.",
}


_STATUS: dict[RejectCode, int] = {
    RejectCode.TOO_LARGE: 413,
    RejectCode.NOT_AN_IMAGE: 415,
    RejectCode.UNSUPPORTED_FORMAT: 415,
}
"""Every other reason answers 422: a well-formed upload whose picture is refused."""


class ImageRejected(WoundcareError):
    """An upload that is not an acceptable wound photo."""

    def __init__(self, code: RejectCode) -> None:
        self.code = code
        """Stable, machine-readable reason."""
        self.status = _STATUS.get(code, 422)
        self.message = _MESSAGES[code]
        """Fixed text for a person; never quotes the upload."""
        super().__init__(f"{code}: {self.message}")


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    """The picture re-encoded without metadata, upright, in the upload's format."""
    media_type: MediaType
    width: int
    height: int
    thumbnail: bytes
    """JPEG, longest side at most ``thumb_side``."""
    thumb_width: int
    thumb_height: int


# MPO is how Pillow names a JPEG with extra pictures appended (the depth and HDR gain maps of
# many phones); the first picture is a plain JPEG and only it is kept.
_FORMATS: dict[str, MediaType] = {
    "JPEG": MediaType.JPEG,
    "MPO": MediaType.JPEG,
    "PNG": MediaType.PNG,
    "WEBP": MediaType.WEBP,
}

# What Pillow's parsers and decoders raise on malformed input. Anything else is a bug here.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)

# Clinicians zoom into wound edges: 92 keeps them sharp, and 4:4:4 (no chroma subsampling)
# keeps colour edges, for about 15% more bytes and 15 ms on a 12 MP photo.
_JPEG_QUALITY = 92
_JPEG_SUBSAMPLING_444 = 0
_WEBP_QUALITY = 92
# libwebp's effort (0-6; Pillow's default is 4): at 2 a 12 MP photo encodes in half the time
# (0.8 s against 1.6 s) at about the same size.
_WEBP_METHOD = 2
_THUMB_QUALITY = 85
_THUMB_BACKGROUND = (255, 255, 255)


def clean_image(
    data: bytes,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    min_side: int = 16,
    thumb_side: int = 320,
    hold_pixels: Callable[[int], AbstractContextManager[None]] | None = None,
) -> CleanImage:
    """Check an uploaded photo and return it re-encoded without metadata, plus a thumbnail.

    The format comes from the decoded bytes, never a file name or a client's content type.
    Sizes are checked from the header before any pixel is decoded.

    Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``, shared by the process) refuses
    images above twice its limit as ``decompression_bomb``; ``max_pixels`` applies per call
    and refuses the rest as ``too_many_pixels``. A ``max_pixels`` above Pillow's limit
    therefore needs that limit raised too.

    ``hold_pixels(n)``, if given, is held around the decode and re-encode of the picture's
    ``n`` pixels: a pixel budget (``woundcare.records.imagework``) makes them wait there.
    """
    if len(data) > max_bytes:
        raise ImageRejected(RejectCode.TOO_LARGE)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide switch: with it on, Pillow pads truncated files with grey and a
        # half-missing wound photo would pass as whole. Refuse to run rather than flip it back
        # under other code.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")

    image = _open(data)
    media_type = _FORMATS.get(image.format or "")
    if media_type is None:
        raise ImageRejected(RejectCode.UNSUPPORTED_FORMAT)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(RejectCode.TOO_MANY_PIXELS)
    if min(width, height) < min_side:
        raise ImageRejected(RejectCode.TOO_SMALL)

    with hold_pixels(width * height) if hold_pixels is not None else nullcontext():
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except _DECODE_ERRORS:
            raise ImageRejected(RejectCode.TRUNCATED) from None
        width, height = image.size  # upright
        encoded = _encode(image, media_type, lossless_webp=_webp_is_lossless(data))
        thumb = _thumbnail(image, thumb_side)
        del image  # the decoded pixels, before the budget is returned
    thumb_bytes = io.BytesIO()
    thumb.save(thumb_bytes, "JPEG", quality=_THUMB_QUALITY, optimize=True)
    return CleanImage(
        data=encoded,
        media_type=media_type,
        width=width,
        height=height,
        thumbnail=thumb_bytes.getvalue(),
        thumb_width=thumb.width,
        thumb_height=thumb.height,
    )


def _open(data: bytes) -> Image.Image:
    """Parse the header only; no pixel is decoded here."""
    try:
        return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives as an exception only where the process escalates warnings.
        raise ImageRejected(RejectCode.DECOMPRESSION_BOMB) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        # Pillow parses some formats whole on open (WebP), so a cut-off upload can fail here.
        code = RejectCode.TRUNCATED if _has_supported_signature(data) else RejectCode.NOT_AN_IMAGE
        raise ImageRejected(code) from None


def _has_supported_signature(data: bytes) -> bool:
    return data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


def _encode(image: Image.Image, media_type: MediaType, *, lossless_webp: bool) -> bytes:
    icc_profile = _checked_icc(image.info.get("icc_profile"))
    transparency = image.info.get("transparency")
    # Pillow's encoders copy some fields from ``info`` (a JPEG's comment, a PNG's profile);
    # emptying it leaves only what is passed below.
    image.info = {}
    out = io.BytesIO()
    if media_type is MediaType.JPEG:
        image.save(
            out,
            "JPEG",
            quality=_JPEG_QUALITY,
            subsampling=_JPEG_SUBSAMPLING_444,
            icc_profile=icc_profile,
        )
    elif media_type is MediaType.PNG:
        extra = {} if transparency is None else {"transparency": transparency}
        image.save(out, "PNG", icc_profile=icc_profile, **extra)
    else:
        image.save(
            out,
            "WEBP",
            lossless=lossless_webp,
            quality=_WEBP_QUALITY,
            method=_WEBP_METHOD,
            icc_profile=icc_profile,
        )
    return out.getvalue()


def _checked_icc(profile: bytes | None) -> bytes | None:
    if not profile:
        return None
    try:
        ImageCms.ImageCmsProfile(io.BytesIO(profile))
    except (OSError, ValueError, ImageCms.PyCMSError):
        return None
    return profile


def _webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP's picture is VP8L (lossless) rather than VP8, so it stays lossless."""
    if data[8:12] != b"WEBP":
        return False
    position = 12
    while position + 8 <= len(data):
        fourcc = data[position : position + 4]
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        position += 8 + size + (size & 1)
    return False


def _thumbnail(image: Image.Image, side: int) -> Image.Image:
    # Resized from the pixels already decoded for the full picture: measured faster than a
    # second, draft-mode JPEG decode (12 ms against 34 ms on 12 MP).
    scale = min(1.0, side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if image.has_transparency_data:
        # JPEG has no alpha: lay the picture on white rather than let hidden colours show.
        rgba = image.convert("RGBA").resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        flat = Image.new("RGB", size, _THUMB_BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
