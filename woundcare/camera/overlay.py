"""The specialist's strokes for the head camera's own display, two ways:

- :class:`OverlayFile` (``--overlay PATH``): a PNG of the camera's frame size, transparent
  but for the strokes (or, while frozen, the frozen still under them), replaced atomically
  after each change, so a display that lays it over the live picture shows what the nurse's
  page shows;
- :class:`EventLines` (``--overlay-events``): one JSON object per applied message on stdout,
  for a display that draws by itself.

Rendering and writing run in a worker thread (``asyncio.to_thread``): a 1080p PNG takes about
0.1 s (more with a frozen still under the strokes; ``bench/overlay.py``), which on the event
loop would stall the video and the signaling socket.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import math
from pathlib import Path
from typing import Any, TextIO

import orjson
from PIL import Image, ImageDraw

from signaling.protocol import Color, Shape

from ..storage.files import replace_with
from .telestration import Board, Point, Scene, Stroke

log = logging.getLogger(__name__)

OUTLINE = (16, 16, 16, 255)
"""The dark edge that keeps a stroke visible on pale skin and white dressings."""
OUTLINE_PX = 2
POINTER = Color.CYAN
EMPTY = Scene(strokes=(), pointer=None, frozen=None, still=None)


def line_width(size: tuple[int, int]) -> int:
    """A stroke's width in pixels: about as thick on a small display as on a large one."""
    return max(3, round(min(size) / 180))


def render(scene: Scene, size: tuple[int, int]) -> Image.Image:
    """The scene as an RGBA image of ``size``: transparent where nothing is drawn, unless
    frozen on a still the camera has (then the still, scaled to ``size``, is the background)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    if scene.frozen is not None and scene.still is not None:
        image.paste(_background(scene.still, size))
    draw = ImageDraw.Draw(image)
    width = line_width(size)
    for stroke in scene.strokes:
        _stroke(draw, stroke, size, width)
    if scene.pointer is not None:
        x, y = _pixel(scene.pointer, size)
        _dot(draw, (x, y), width * 2, _rgba(POINTER))
    if scene.frozen is not None:
        _frozen_badge(draw, size, width)
    return image


@functools.lru_cache(maxsize=2)
def _background(jpeg: bytes, size: tuple[int, int]) -> Image.Image:
    """A still decoded and scaled once, not at every stroke or pointer drawn on it."""
    with Image.open(io.BytesIO(jpeg)) as still:
        return still.convert("RGB").resize(size)


def _pixel(point: Point, size: tuple[int, int]) -> tuple[float, float]:
    # The spec's points are on the frame, whose last pixel is size - 1.
    return point[0] * (size[0] - 1), point[1] * (size[1] - 1)


def _rgba(color: Color) -> tuple[int, int, int, int]:
    value = int(color.value[1:], 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF, 255


def _stroke(draw: ImageDraw.ImageDraw, stroke: Stroke, size: tuple[int, int], width: int) -> None:
    points = [_pixel(p, size) for p in stroke.points]
    color = _rgba(stroke.color)
    if stroke.shape is Shape.CIRCLE:
        (x0, y0), (x1, y1) = points[0], points[min(1, len(points) - 1)]
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        # Pillow grows an ellipse's outline inwards from its box: the outline's box is
        # OUTLINE_PX larger on each side and its ring that much wider inside.
        grown = (box[0] - OUTLINE_PX, box[1] - OUTLINE_PX, box[2] + OUTLINE_PX, box[3] + OUTLINE_PX)
        draw.ellipse(grown, outline=OUTLINE, width=width + 2 * OUTLINE_PX)
        draw.ellipse(box, outline=color, width=width)
        return
    lines = [points]
    if stroke.shape is Shape.ARROW:
        start, end = points[0], points[-1]
        lines = [[start, end], *_arrow_head(start, end, width)]
    # Outline first, the colour over it: every segment's dark edge lies under every colour.
    for fill, grow in ((OUTLINE, 2 * OUTLINE_PX), (color, 0)):
        for line in lines:
            if len(line) > 1:
                draw.line(line, fill=fill, width=width + grow, joint="curve")
            for end in (line[0], line[-1]):  # round caps (Pillow's lines end square)
                _disc(draw, end, (width + grow) / 2, fill)


def _arrow_head(start: tuple[float, float], end: tuple[float, float], width: int) -> list[list[tuple[float, float]]]:
    """The head's two barbs at ``end``, 30 degrees off the shaft."""
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    length = width * 5
    return [
        [end, (end[0] - length * math.cos(angle + side), end[1] - length * math.sin(angle + side))]
        for side in (math.pi / 6, -math.pi / 6)
    ]


def _disc(draw: ImageDraw.ImageDraw, centre: tuple[float, float], radius: float, fill: tuple[int, ...]) -> None:
    x, y = centre
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def _dot(draw: ImageDraw.ImageDraw, centre: tuple[float, float], radius: float, fill: tuple[int, ...]) -> None:
    _disc(draw, centre, radius + OUTLINE_PX, OUTLINE)
    _disc(draw, centre, radius, fill)


def _frozen_badge(draw: ImageDraw.ImageDraw, size: tuple[int, int], width: int) -> None:
    """A pause sign in the top right corner: the frozen badge, in no language."""
    radius = width * 4
    x, y = size[0] - radius * 2, radius * 2
    # Opaque: ImageDraw sets pixels, it does not blend, so a translucent badge would be a
    # hole in the frozen still.
    _disc(draw, (x, y), radius, OUTLINE)
    bar = radius / 4
    for dx in (-1.5 * bar, 0.5 * bar):
        draw.rectangle((x + dx, y - radius / 2, x + dx + bar, y + radius / 2), fill=(255, 255, 255, 255))


class OverlayFile:
    """Keeps ``path`` showing ``board``: after each change the scene is rendered and the file
    replaced, one render at a time; changes that come during a render are drawn together by
    the next. A pointer is drawn again without it when its time is up."""

    def __init__(self, path: Path, size: tuple[int, int], board: Board) -> None:
        self.path = path
        self.size = size
        self._board = board
        self._dirty = asyncio.Event()
        self.written = 0
        """Scenes written so far."""

    def changed(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        """Until cancelled; then the file is left empty: the call's strokes must not stay on
        the display, nor a frozen still (a photo of the wound) on the disk."""
        self._dirty.set()  # a fresh, empty overlay at start: none left from an earlier run
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                scene = self._board.scene()
                if await self._show(scene):
                    self.written += 1
                until = self._board.pointer_until()
                if until is not None:
                    asyncio.get_running_loop().call_later(max(0.0, until - self._board.clock()), self._dirty.set)
        finally:
            await self._show(EMPTY)

    async def _show(self, scene: Scene) -> bool:
        try:
            await asyncio.to_thread(self._write, scene)
        except (OSError, ValueError) as exc:  # a full disk, a still Pillow cannot read
            log.warning("could not write the overlay (%s)", type(exc).__name__)
            return False
        return True

    def _write(self, scene: Scene) -> None:
        image = render(scene, self.size)
        # Into the file itself: Pillow encodes to a real file without holding the GIL.
        replace_with(self.path, lambda file: image.save(file, format="PNG", compress_level=1))


class EventLines:
    """Writes each applied message as one JSON line to ``stream`` (stdout).

    stdout, because a display program on the device starts the camera as its child and reads
    the pipe: nothing to name, clean up or secure, unlike a socket or a file of stills' worth of
    strokes, and the logs stay apart on stderr. A pipe the display stops reading fills up: the
    lines are written by a worker thread so that the video never waits, and beyond
    :attr:`limit` waiting lines the newest are dropped (and counted)."""

    def __init__(self, stream: TextIO, limit: int = 1000) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(limit)
        self.dropped = 0

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(orjson.dumps(event) + b"\n")
        except asyncio.QueueFull:
            if not self.dropped:
                log.warning("overlay events are not being read; dropping them")
            self.dropped += 1

    async def run(self) -> None:
        while True:
            line = await self._queue.get()
            await asyncio.to_thread(self._write, line)

    def _write(self, line: bytes) -> None:
        self._stream.write(line.decode())
        self._stream.flush()
