"""Recordings made without a browser, for tests that need one: a WebM like the one
``MediaRecorder`` makes (VP8 video, Opus audio, no Cues), uploaded in pieces through the real
service, sealed on arrival and finished by the worker process."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.records.recordings import RecordingView

PIECE = 4096
"""Bytes per uploaded piece: small, so a short recording comes in many pieces."""


def webm_part(frames: int = 15, size: tuple[int, int] = (160, 120), noise: bool = False, hertz: float = 440.0) -> bytes:
    """``frames`` frames at 30 fps (random pixels with ``noise``, which do not compress, so the
    video spans several sealed chunks) and a tone as long, as one WebM part."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        video = container.add_stream("libvpx", rate=30)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.thread_count = 1
        video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        audio = container.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        rng = np.random.default_rng(1)
        for i in range(frames):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), np.uint8) if noise else np.full((size[1], size[0], 3), i * 8 % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in video.encode(frame):
                container.mux(packet)
        samples = frames * 1600
        tone = (0.3 * np.sin(2 * np.pi * hertz * np.arange(samples) / 48000) * 32767).astype(np.int16).reshape(1, -1)
        for at in range(0, samples, 960):
            sound = av.AudioFrame.from_ndarray(tone[:, at : at + 960], format="s16", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 48000, at, Fraction(1, 48000)
            for packet in audio.encode(sound):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return out.getvalue()


async def stored_recording(
    server: RunningServer, consultation: str, frames: int = 15, size: tuple[int, int] = (160, 120),
    noise: bool = False, parts: int = 1,
) -> RecordingView:
    """A complete recording of ``parts`` parts of :func:`webm_part`, started by ``u0``."""
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    uploads = server.app[SERVICES].recording_uploads
    started = await uploads.start(view, "u0")
    row = await server.app[SERVICES].recordings.get(started.id)
    assert row is not None
    for _ in range(parts):
        part = await uploads.next_part(row, "u0")
        data = webm_part(frames, size, noise)
        for n, at in enumerate(range(0, len(data), PIECE)):
            await uploads.add(row, "u0", part, n, data[at : at + PIECE])
    finished = await uploads.stop(started.id)
    assert finished is not None
    return finished


def decoded(media: bytes) -> list[tuple[int, int]]:
    """The size of every frame PyAV decodes from ``media``."""
    with av.open(io.BytesIO(media)) as container:
        return [(frame.width, frame.height) for frame in container.decode(video=0)]


def loudness(media: bytes) -> tuple[int, float]:
    """Audio streams in ``media`` and the RMS level (0..1) of the first one's samples."""
    with av.open(io.BytesIO(media)) as container:
        streams = len(container.streams.audio)
        if not streams:
            return 0, 0.0
        samples = np.concatenate([f.to_ndarray().astype(np.float64).ravel() for f in container.decode(audio=0)])
    return streams, float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
