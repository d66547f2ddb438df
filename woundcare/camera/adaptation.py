"""The camera's bandwidth adaptation: measure, choose, apply, tell the viewers.

Every ``interval`` seconds the camera reads its viewers' receiver reports (loss, RTT).
In ``auto`` mode a :class:`~.profile.Chooser` decides between the standard and the low
profile; a viewer may pin either one (or go back to auto) with a ``video_profile`` frame.
Each change is applied to the outgoing track and encoders and announced to every viewer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from signaling.protocol import Role, VideoMode, VideoProfile, VideoProfileMessage

from ..webrtc.client import SignalingClient, SignalingClosed
from .peer import Publisher
from .profile import Chooser, LinkSample, ProfileTrack, cap_bitrate, reason, resolve

log = logging.getLogger(__name__)


class Adaptation:
    def __init__(
        self,
        client: SignalingClient,
        publisher: Publisher,
        track: ProfileTrack,
        *,
        mode: VideoMode = VideoMode.AUTO,
        chooser: Chooser | None = None,
        interval: float = 2.0,
    ) -> None:
        self._client = client
        self._publisher = publisher
        self._track = track
        self.mode = mode
        self.chooser = chooser or Chooser()
        self._interval = interval
        self.last_sample: LinkSample | None = None
        self._viewers: set[str] = set()
        self.active = resolve(mode, self.chooser)
        self._apply(self.active)

    async def run(self) -> None:
        """Measure and adapt until cancelled; survives a lost socket (it is resumed)."""
        while True:
            await asyncio.sleep(self._interval)
            sample = await self._publisher.link_sample()
            if sample is None:
                continue
            self.last_sample = sample
            self.chooser.observe(sample)
            await self._update()

    async def handle(self, frame: dict[str, Any]) -> None:
        """A viewer's ``video_profile`` choice, or a new viewer who should know the profile."""
        if frame["type"] == "video_profile":
            mode = VideoMode(frame["mode"])
            log.info("viewer chose video mode %s", mode.value)
            self.mode = mode
            await self._update(force=True)
        elif frame["type"] == "presence" and frame["participant"]["role"] != Role.NURSE.value:
            viewer = frame["participant"]["id"]
            if frame["state"] == "left":
                self._viewers.discard(viewer)
            elif frame["state"] in ("joined", "rejoined"):
                self._viewers.add(viewer)
                await self._tell(viewer)

    async def joined(self) -> None:
        """After the camera's own (re)join: the viewers are those the server listed."""
        self._viewers = {p["id"] for p in self._client.peers if p["role"] != Role.NURSE.value}
        await self.announce()

    async def announce(self) -> None:
        for viewer in sorted(self._viewers):
            await self._tell(viewer)

    async def _update(self, force: bool = False) -> None:
        profile = resolve(self.mode, self.chooser)
        if profile is self.active and not force:
            return
        if profile is not self.active:
            log.info("video profile %s (%s, %s)", profile.value, self.mode.value, reason(self.last_sample))
            self.active = profile
            self._apply(profile)
        await self.announce()

    def _apply(self, profile: VideoProfile) -> None:
        self._track.profile = profile
        cap_bitrate(profile, self._publisher.senders())

    async def _tell(self, viewer: str) -> None:
        message = VideoProfileMessage(
            to=viewer, mode=self.mode, active=self.active, reason=reason(self.last_sample)
        )
        try:
            await self._client.send(message)
        except (SignalingClosed, RuntimeError, ConnectionError):
            log.info("video profile not told: signaling is down; told again on rejoin")
