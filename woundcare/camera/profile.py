"""Video profiles for poor links, and the rule that picks one from measured loss and RTT.

On a weak rural 4G link a full-size stream loses packets, the decoder waits for
retransmissions and keyframes, and the specialist sees a frozen picture. Sending fewer,
smaller frames at a capped bitrate keeps the picture moving. Stills are unaffected: they
are taken from the source at full resolution and travel over HTTP.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import aiortc.codecs.vpx as vpx
from aiortc import MediaStreamTrack, RTCRtpSender
from av import VideoFrame

from signaling.protocol import VideoMode, VideoProfile

_VPX_MAX_BITRATE = vpx.MAX_BITRATE


@dataclass(frozen=True, slots=True)
class Settings:
    max_width: int
    max_height: int
    fps: float
    max_bitrate: int
    """Bits per second; aiortc's VP8 encoder never goes below its own 250 kbit/s floor."""


PROFILES: dict[VideoProfile, Settings] = {
    VideoProfile.STANDARD: Settings(1280, 720, 30, _VPX_MAX_BITRATE),
    VideoProfile.LOW: Settings(640, 360, 15, 300_000),
}


@dataclass(frozen=True, slots=True)
class LinkSample:
    """One look at a viewer's receiver reports."""

    loss: float
    """Fraction of packets lost since the previous report, 0-1."""
    rtt: float | None
    """Round-trip time in seconds, if known."""


@dataclass(slots=True)
class Chooser:
    """Picks the profile in ``auto`` mode, with hysteresis so that it does not flap:
    down after ``down_after`` bad samples in a row, up after ``up_after`` good ones."""

    bad_loss: float = 0.05
    bad_rtt: float = 0.4
    good_loss: float = 0.02
    good_rtt: float = 0.25
    down_after: int = 2
    up_after: int = 8
    active: VideoProfile = VideoProfile.STANDARD
    _bad: int = 0
    _good: int = 0

    def observe(self, sample: LinkSample) -> VideoProfile:
        rtt = sample.rtt or 0.0
        if sample.loss >= self.bad_loss or rtt >= self.bad_rtt:
            self._bad, self._good = self._bad + 1, 0
        elif sample.loss < self.good_loss and rtt < self.good_rtt:
            self._bad, self._good = 0, self._good + 1
        else:
            self._bad = self._good = 0
        if self.active is VideoProfile.STANDARD and self._bad >= self.down_after:
            self.active, self._bad = VideoProfile.LOW, 0
        elif self.active is VideoProfile.LOW and self._good >= self.up_after:
            self.active, self._good = VideoProfile.STANDARD, 0
        return self.active


def reason(sample: LinkSample | None) -> str:
    """The figures behind a choice, as the camera tells the viewers."""
    if sample is None:
        return "no receiver reports yet"
    rtt = f"{sample.rtt * 1000:.0f} ms" if sample.rtt is not None else "unknown"
    return f"loss {sample.loss:.0%}, rtt {rtt}"


def resolve(mode: VideoMode, chooser: Chooser) -> VideoProfile:
    """The profile to send: the pinned one, else the chooser's."""
    if mode is VideoMode.AUTO:
        return chooser.active
    return VideoProfile(mode.value)


class ProfileTrack(MediaStreamTrack):
    """Scales the source down to the profile's size and drops frames above its rate."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, profile: VideoProfile = VideoProfile.STANDARD) -> None:
        super().__init__()
        self._source = source
        self.profile = profile
        self._last_sent: float | None = None

    async def recv(self) -> VideoFrame:
        while True:
            frame = await self._source.recv()
            assert isinstance(frame, VideoFrame)
            settings = PROFILES[self.profile]
            at = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
            # A little slack so that 30 fps halves to 15 rather than to 10.
            if at is not None and self._last_sent is not None and at - self._last_sent < 0.9 / settings.fps:
                continue
            self._last_sent = at
            return scaled(frame, settings)

    def stop(self) -> None:
        super().stop()
        self._source.stop()


def scaled(frame: VideoFrame, settings: Settings) -> VideoFrame:
    """``frame`` fitted inside the profile's size, aspect kept, even dimensions (yuv420p)."""
    factor = min(settings.max_width / frame.width, settings.max_height / frame.height)
    if factor >= 1:
        return frame
    width, height = int(frame.width * factor) & ~1, int(frame.height * factor) & ~1
    out = frame.reformat(width=width, height=height, format="yuv420p")
    out.pts, out.time_base = frame.pts, frame.time_base or fractions.Fraction(1, 90000)
    return out


def cap_bitrate(profile: VideoProfile, senders: list[RTCRtpSender]) -> None:
    """Hold the VP8 encoders at or below the profile's bitrate.

    aiortc has no ``RTCRtpSender.setParameters`` (no per-sender ``maxBitrate``), and it
    raises an encoder's target to whatever the receiver's REMB estimate says, up to the
    module's ``MAX_BITRATE``. One camera process sends one profile to every viewer, so the
    cap is that module-wide ceiling, and encoders already running are lowered now."""
    ceiling = PROFILES[profile].max_bitrate
    vpx.MAX_BITRATE = ceiling
    for sender in senders:
        encoder = getattr(sender, "_RTCRtpSender__encoder", None)
        if isinstance(encoder, vpx.Vp8Encoder) and encoder.target_bitrate > ceiling:
            encoder.target_bitrate = ceiling
