"""A synthetic camera: a moving test pattern, for demos, tests and benchmarks."""

from __future__ import annotations

import numpy as np
from aiortc import VideoStreamTrack
from av import VideoFrame


class SyntheticVideoTrack(VideoStreamTrack):
    """Colour bars with a moving bright block, paced at 30 frames per second."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width = width
        self.height = height
        bars = np.array(
            [[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0],
             [192, 0, 192], [0, 0, 192], [192, 0, 0], [16, 16, 16]],
            dtype=np.uint8,
        )
        columns = bars[np.arange(width) * len(bars) // width]
        self._base = np.broadcast_to(columns, (height, width, 3)).copy()
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = self._base.copy()
        size = self.height // 6
        x = (self._count * 8) % (self.width - size)
        y = (self._count * 3) % (self.height - size)
        image[y : y + size, x : x + size] = 255
        self._count += 1
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = time_base
        return frame
