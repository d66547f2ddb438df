"""Per-server limits of the signaling layer."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Larger frames close the socket with 1009."""
    heartbeat_seconds: float = 10.0
    """WebSocket ping interval; a peer that misses a pong (half the interval) is dropped and
    may resume. Short, so that a viewer learns within seconds that a camera's link is gone."""
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
