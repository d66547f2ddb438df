"""Recordings made without a call, for tests that need one stored: synthetic frames through
the real encoder, sink, sealing and blob store."""

from __future__ import annotations

import asyncio
import io

import av
import numpy as np
from av import VideoFrame

from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.camera.synthetic import SyntheticVideoTrack
from woundcare.recording.encoder import WebmEncoder
from woundcare.records.recordings import RecordingView


async def stored_recording(
    server: RunningServer, consultation: str, frames: int = 15, size: tuple[int, int] = (160, 120), noise: bool = False
) -> RecordingView:
    """A complete recording of ``frames`` synthetic frames, 1/30 s apart; with ``noise``,
    frames that do not compress, so the video spans several sealed chunks."""
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    recordings = server.app[SERVICES].recordings
    capture = await recordings.begin(view, "u0")
    source = SyntheticVideoTrack(*size)
    encoder = WebmEncoder(capture.sink)
    for i in range(frames):
        frame = await source.recv()
        if noise:
            frame = VideoFrame.from_ndarray(np.random.randint(0, 256, (size[1], size[0], 3), np.uint8), format="bgr24")
        await asyncio.to_thread(encoder.add, frame, i / 30)
    await asyncio.to_thread(encoder.close)
    return await recordings.finish(capture, frames=encoder.frames, size=encoder.size, reason="stopped")


def decoded(media: bytes) -> list[tuple[int, int]]:
    """The size of every frame PyAV decodes from ``media``."""
    with av.open(io.BytesIO(media)) as container:
        return [(frame.width, frame.height) for frame in container.decode(video=0)]
