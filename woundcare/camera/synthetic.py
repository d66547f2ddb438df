"""A synthetic camera: a moving test pattern, for demos, tests and benchmarks."""

from __future__ import annotations

import numpy as np
from aiortc import VideoStreamTrack
from av import VideoFrame


class SyntheticVideoTrack(VideoStreamTrack):
    """Colour bars with a moving bright block, paced at 30 frames per second.

    Made in yuv420p, the encoder's format: the bars are converted once, and each frame copies
    them and paints the block in place. Drawn in BGR and converted per frame, a 1280x720 frame
    cost 8 ms of CPU before the encoder saw it (4.4 to draw, 3.6 to convert), more than its
    6 ms VP8 encode: the camera process's largest share at 720p."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        # yuv420p halves both sides for the chroma planes: an odd side loses its last pixel.
        self.width = width & ~1
        self.height = height & ~1
        width, height = self.width, self.height
        bars = np.array(
            [[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0],
             [192, 0, 192], [0, 0, 192], [192, 0, 0], [16, 16, 16]],
            dtype=np.uint8,
        )
        columns = bars[np.arange(width) * len(bars) // width]
        image = np.broadcast_to(columns, (height, width, 3)).copy()
        self._base = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p").to_ndarray()
        white = np.full((2, 2, 3), 255, dtype=np.uint8)
        self._white = VideoFrame.from_ndarray(white, format="bgr24").reformat(format="yuv420p").to_ndarray()
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = self._base.copy()
        width, height = self.width, self.height
        size = height // 6
        x = (self._count * 8) % (width - size) & ~1
        y = (self._count * 3) % (height - size) & ~1
        image[y : y + size, x : x + size] = self._white[0, 0]
        # After the luma's rows, the U plane and then the V plane, each half as wide and high,
        # one after the other in memory (what PyAV's yuv420p arrays hold).
        flat, luma, chroma = image.reshape(-1), width * height, (width // 2) * (height // 2)
        for plane, value in ((flat[luma : luma + chroma], self._white[-1, 0]), (flat[luma + chroma :], self._white[-1, 1])):
            plane.reshape(height // 2, width // 2)[y // 2 : (y + size) // 2, x // 2 : (x + size) // 2] = value
        self._count += 1
        frame = VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = pts
        frame.time_base = time_base
        return frame
