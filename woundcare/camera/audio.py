"""The head camera's sound: the nurse's microphone and the specialist's voice in her ear.

Devices are named ``alsa:<device>`` or ``pulse:<device>`` (what FFmpeg opens), or, for
recording a call's sound on a device without a loudspeaker, a path ending in ``.wav``.
"""

from __future__ import annotations

import logging
from contextlib import suppress

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer, MediaRecorder

log = logging.getLogger(__name__)

_FORMATS = ("alsa", "pulse")


def _split(spec: str) -> tuple[str, str | None]:
    """``(file, format)`` for FFmpeg from a device spec."""
    kind, _, name = spec.partition(":")
    if kind in _FORMATS and name:
        return name, kind
    if spec.endswith(".wav"):
        return spec, None
    raise ValueError(f"audio device must be alsa:NAME, pulse:NAME or a .wav path (got {spec!r})")


def check(spec: str | None) -> None:
    """Refuse a malformed spec up front (before the camera goes live)."""
    if spec is not None:
        _split(spec)


def open_microphone(spec: str) -> tuple[MediaStreamTrack, MediaPlayer]:
    name, fmt = _split(spec)
    player = MediaPlayer(name, format=fmt)
    if player.audio is None:
        raise ValueError(f"no audio from {spec}")
    return player.audio, player


class Speaker:
    """Plays one voice at a time: the viewer who connected last (in a consultation that is
    the specialist; a second viewer's voice replaces the first until it reconnects)."""

    def __init__(self, spec: str) -> None:
        self._file, self._format = _split(spec)
        self._recorder: MediaRecorder | None = None

    async def play(self, track: MediaStreamTrack) -> None:
        await self.stop()
        recorder = MediaRecorder(self._file, format=self._format)
        recorder.addTrack(track)
        await recorder.start()
        self._recorder = recorder
        log.info("playing a viewer's voice")

    async def stop(self) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            with suppress(Exception):  # a device that vanished must not stop the camera
                await recorder.stop()
