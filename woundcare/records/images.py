"""Wound photos as uploaded: checked, stripped of metadata, with a thumbnail.

A phone photo carries GPS coordinates, timestamps, device serials and free text (EXIF, XMP,
JPEG comments, PNG text chunks). None of it belongs in a health record.

A JPEG (what cameras and phones send) is kept as it came, pixel for pixel: its metadata
segments are removed at the marker level (``woundcare.records.jpeg``) and its entropy-coded
data is not touched, because for wound assessment the pixels the nurse captured are the
evidence (a re-encode stored a copy at 40.8 dB PSNR, 8 % larger). Its EXIF orientation
survives in a minimal EXIF segment of that one tag. It is checked by a decode at reduced scale
(``draft``), which still reads every byte of the entropy-coded data, and that decode makes the
thumbnail.

PNG and WebP keep a re-encode of their pixels, turned upright by their EXIF orientation, in
their own format, so nothing of the upload's container survives.

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
import os
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import WoundcareError
from .jpeg import NotJpeg, joined, strip_metadata


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
    data: bytes | bytearray
    """The picture without metadata in the upload's format: a JPEG's own bytes (its
    orientation kept as EXIF), a PNG or WebP re-encoded upright."""
    media_type: MediaType
    width: int
    """Upright, as shown."""
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

_WEBP_QUALITY = 92
# libwebp's effort (0-6; Pillow's default is 4): at 2 a 12 MP photo encodes in half the time
# (0.8 s against 1.6 s) at about the same size.
_WEBP_METHOD = 2
_THUMB_QUALITY = 85
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""What turns a picture of each EXIF orientation upright (as ``ImageOps.exif_transpose``)."""
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
_THUMB_BACKGROUND = (255, 255, 255)


ImageData = bytes | bytearray | memoryview | list[bytes]
"""An upload's bytes, whole or in the pieces they arrived in (:func:`clean_image` joins them)."""


def clean_image(
    data: ImageData,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    min_side: int = 16,
    thumb_side: int = 320,
    hold_pixels: Callable[[int], AbstractContextManager[None]] | None = None,
) -> CleanImage:
    """Check an uploaded photo and return it without metadata (see the module docstring),
    plus a thumbnail.

    The format comes from the decoded bytes, never a file name or a client's content type.
    Sizes are checked from the header before any pixel is decoded.

    Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``, shared by the process) refuses
    images above twice its limit as ``decompression_bomb``; ``max_pixels`` applies per call
    and refuses the rest as ``too_many_pixels``. A ``max_pixels`` above Pillow's limit
    therefore needs that limit raised too.

    ``hold_pixels(n)``, if given, is held around the decode (and re-encode) of the ``n``
    pixels decoded: a pixel budget (``woundcare.records.imagework``) makes them wait there.

    ``data`` in pieces (an upload's body as it arrived) is joined here, a piece at a time, in
    the image thread: on the event loop's thread the copy and the page faults of a fresh
    buffer had cost some 3 ms per 5 MB photo (issue 20). The list is emptied once joined, so
    that the pieces are freed here too, not where the upload's handler lets go of them.
    """
    if isinstance(data, list):
        if sum(map(len, data)) > max_bytes:
            raise ImageRejected(RejectCode.TOO_LARGE)
        pieces, data = data, data[0] if len(data) == 1 else joined(data)
        pieces.clear()
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

    hold = hold_pixels if hold_pixels is not None else _no_budget
    if media_type is MediaType.JPEG:
        return _clean_jpeg(data, image, thumb_side, hold)
    with hold(width * height):
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except _DECODE_ERRORS:
            raise ImageRejected(RejectCode.TRUNCATED) from None
        width, height = image.size  # upright
        encoded = _encode(image, media_type, lossless_webp=_webp_is_lossless(data))
        thumb = _thumbnail(image, thumb_side)
        del image  # the decoded pixels, before the budget is returned
    return CleanImage(encoded, media_type, width, height, *_thumbnail_jpeg(thumb))


def _clean_jpeg(
    data: bytes | bytearray | memoryview,
    header: Image.Image,
    thumb_side: int,
    hold: Callable[[int], AbstractContextManager[None]],
) -> CleanImage:
    """The JPEG's own bytes without metadata, checked by a reduced-scale decode of exactly
    those bytes, and the thumbnail from that decode."""
    width, height = header.size
    try:
        orientation = header.getexif().get(_ORIENTATION, 1)
    except _DECODE_ERRORS:
        orientation = 1  # an unreadable EXIF block says nothing usable; it is dropped anyway
    if orientation not in _TRANSPOSE and orientation != 1:
        orientation = 1
    keep_icc = _checked_icc(header.info.get("icc_profile")) is not None
    try:
        stripped = strip_metadata(data, orientation, keep_icc=keep_icc)
    except NotJpeg:
        raise ImageRejected(RejectCode.TRUNCATED) from None
    picture = _open(stripped)
    # The smallest of libjpeg's scales (1/8, 1/4, 1/2) that still gives the thumbnail its
    # size: the IDCT and colour conversion shrink with it, while every coefficient is still
    # entropy-decoded, so truncated or damaged data is still found.
    longest = max(width, height)
    picture.draft("RGB", (max(1, width * thumb_side // longest), max(1, height * thumb_side // longest)))
    # Budgeted at the decoded (reduced) size: that is what the decode allocates.
    with hold(picture.width * picture.height):
        try:
            picture.load()
        except _DECODE_ERRORS:
            raise ImageRejected(RejectCode.TRUNCATED) from None
        if orientation in _TRANSPOSE:
            picture = picture.transpose(_TRANSPOSE[orientation])
        thumb = _thumbnail(picture, thumb_side)
        del picture
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return CleanImage(stripped, MediaType.JPEG, width, height, *_thumbnail_jpeg(thumb))


def _no_budget(_pixels: int) -> AbstractContextManager[None]:
    return nullcontext()


def _thumbnail_jpeg(thumb: Image.Image) -> tuple[bytes, int, int]:
    return _saved(thumb, "JPEG", quality=_THUMB_QUALITY, optimize=True), thumb.width, thumb.height


def _saved(image: Image.Image, format: str, **params: Any) -> bytes:
    """``image`` encoded, through a memory file: Pillow encodes into a real file with the GIL
    released, but into a ``BytesIO`` holding it for the whole encode (75-100 ms for 12 MP,
    during which the event loop's thread could not run: issue 20)."""
    with os.fdopen(os.memfd_create("woundcare-image", os.MFD_CLOEXEC), "w+b") as file:
        image.save(file, format, **params)
        file.seek(0)
        return file.read()


def _open(data: bytes | bytearray | memoryview) -> Image.Image:
    """Parse the header only; no pixel is decoded here."""
    try:
        return Image.open(io.BytesIO(data) if isinstance(data, bytes) else io.BufferedReader(_BufferFile(data)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives as an exception only where the process escalates warnings.
        raise ImageRejected(RejectCode.DECOMPRESSION_BOMB) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        # Pillow parses some formats whole on open (WebP), so a cut-off upload can fail here.
        code = RejectCode.TRUNCATED if _has_supported_signature(data) else RejectCode.NOT_AN_IMAGE
        raise ImageRejected(code) from None


class _BufferFile(io.RawIOBase):
    """A read-only file over a buffer, read in place: ``io.BytesIO`` shares a ``bytes`` but
    copies anything else whole, and a 5 MB copy in one call holds the GIL for a millisecond
    or more (issue 20). Pillow reads it a block at a time."""

    def __init__(self, data: bytearray | memoryview) -> None:
        self._view = memoryview(data)
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Pillow decodes a block (64 KB) per read, each some tenths of a millisecond of CPU:
        # a point to hand the CPU to a thread that woke meanwhile (the event loop's, at a
        # higher priority). The kernel preempts a running thread for a woken one only at its
        # next tick (4 ms) or when it enters the kernel, and a decode otherwise never does;
        # the event loop waited up to a tick for the image threads (issue 20, ``perf sched``).
        os.sched_yield()
        part = self._view[self._at : self._at + len(buffer)]
        buffer[: len(part)] = part
        self._at += len(part)
        return len(part)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._at, os.SEEK_END: len(self._view)}[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at


def _has_supported_signature(data: bytes | bytearray | memoryview) -> bool:
    head = bytes(data[:12])
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _encode(image: Image.Image, media_type: MediaType, *, lossless_webp: bool) -> bytes:
    """A PNG or WebP's pixels re-encoded with nothing of its metadata."""
    icc_profile = _checked_icc(image.info.get("icc_profile"))
    transparency = image.info.get("transparency")
    # Pillow's encoders copy some fields from ``info`` (a JPEG's comment, a PNG's profile);
    # emptying it leaves only what is passed below.
    image.info = {}
    if media_type is MediaType.PNG:
        extra = {} if transparency is None else {"transparency": transparency}
        return _saved(image, "PNG", icc_profile=icc_profile, **extra)
    return _saved(
        image,
        "WEBP",
        lossless=lossless_webp,
        quality=_WEBP_QUALITY,
        method=_WEBP_METHOD,
        icc_profile=icc_profile,
    )


def _checked_icc(profile: bytes | None) -> bytes | None:
    if not profile:
        return None
    try:
        ImageCms.ImageCmsProfile(io.BytesIO(profile))
    except (OSError, ValueError, ImageCms.PyCMSError):
        return None
    return profile


def _webp_is_lossless(data: bytes | bytearray | memoryview) -> bool:
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
