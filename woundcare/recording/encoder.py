"""Video frames in, a WebM (VP8) stream out, written front to back for a non-seekable file."""

from __future__ import annotations

from fractions import Fraction
from typing import Protocol

import av
from av import VideoFrame

_MS = Fraction(1, 1000)
_OPTIONS = {
    # Real time on a shared server: fastest VP8 settings, no look-ahead (it would hold frames).
    "deadline": "realtime",
    "cpu-used": "8",
    "lag-in-frames": "0",
}


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class WebmEncoder:
    """Encodes received frames into WebM as they come.

    The stream is opened at the first frame and sized like it; frames of another size (the
    camera switched to its low-bandwidth profile) are scaled to that size. A frame's time is
    when it arrived, in milliseconds from the first, so a pause in the call is a still picture
    in the recording, and a fresh peer connection (whose RTP clock starts anew) no jump.
    """

    def __init__(self, out: Writable, *, bitrate: int = 1_500_000, keyframe_seconds: float = 2.0) -> None:
        self._out = out
        self._bitrate = bitrate
        self._keyframe_seconds = keyframe_seconds
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._start = 0.0
        self._last_pts = -1
        self.frames = 0
        self.size: tuple[int, int] | None = None

    def add(self, frame: VideoFrame, at: float) -> None:
        """Encode ``frame``, received at ``at`` (``time.monotonic()``)."""
        if self._stream is None:
            self._open(frame, at)
        assert self._container is not None and self._stream is not None and self.size is not None
        width, height = self.size
        image = frame.reformat(width=width, height=height, format="yuv420p")
        # Strictly increasing, even if two frames arrive within one millisecond.
        pts = max(round((at - self._start) * 1000), self._last_pts + 1)
        image.pts = self._last_pts = pts
        image.time_base = _MS
        for packet in self._stream.encode(image):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and end the container; without a frame there is nothing to end."""
        if self._container is None or self._stream is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def _open(self, frame: VideoFrame, at: float) -> None:
        # yuv420p needs even dimensions.
        self.size = (frame.width - frame.width % 2, frame.height - frame.height % 2)
        self._start = at
        container = av.open(self._out, mode="w", format="webm")
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = self._bitrate
        stream.codec_context.time_base = _MS
        stream.codec_context.gop_size = max(1, round(30 * self._keyframe_seconds))
        stream.codec_context.options = dict(_OPTIONS)
        self._container, self._stream = container, stream
