"""Limits of the signaling layer: of a frame and its fields (the protocol's, the same on
every server), and per server (:class:`Limits`)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_BYTES = 64 * 1024
"""A client frame in UTF-8 bytes, as it travelled."""
MAX_SDP_CHARS = 48 * 1024
MAX_CANDIDATE_CHARS = 1024
MAX_MID_CHARS = 64
MAX_CHAT_CHARS = 2000
MAX_TOKEN_CHARS = 2048
MAX_REASON_CHARS = 120
"""A video profile's ``reason``: a few figures, never prose."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Larger frames close the socket with 1009."""
    heartbeat_seconds: float = 10.0
    """A socket from which nothing (not even a pong) has arrived for one to one and a half
    intervals is dropped and may resume; it was pinged half an interval before (one sweep for
    all sockets: :mod:`signaling.heartbeat`). Short, so that a viewer learns within seconds
    that a camera's link is gone."""
    join_timeout_seconds: float = 10.0
    """A socket that has not joined by then is closed with 4008."""
    rate_per_second: float = 50.0
    """Sustained frames per second per socket."""
    burst: int = 200
    """Frames a socket may send at once (ICE gathering comes in bursts)."""
    grace_seconds: float = 60.0
    """How long a dropped participant keeps its place for a resume."""
    outbox_frames: int = 512
    """Frames queued for a slow reader before it is closed with 4030."""
    held_frames: int = 256
    """Frames kept for a participant who is reconnecting, delivered on resume."""

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        for name in ("heartbeat_seconds", "join_timeout_seconds", "rate_per_second", "grace_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.burst < 1 or self.outbox_frames < 1 or self.held_frames < 0:
            raise ValueError("burst and outbox_frames must be at least 1")
