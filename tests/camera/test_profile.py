"""The pieces of adaptation on their own: the chooser's hysteresis, scaling and frame
dropping, and the TURN transport order."""

from __future__ import annotations

import asyncio
import fractions

import numpy as np
import pytest
from aioice import stun
from aiortc import MediaStreamTrack
from av import VideoFrame

from signaling.protocol import VideoMode, VideoProfile
from tests.services import free_port
from woundcare.camera.profile import PROFILES, Chooser, LinkSample, ProfileTrack, resolve, scaled
from woundcare.camera.turn import TurnTransport, prefer, reorder

GOOD = LinkSample(0.0, 0.05)
LOSSY = LinkSample(0.10, 0.05)
SLOW = LinkSample(0.0, 0.6)
MIDDLING = LinkSample(0.03, 0.3)


def test_chooser_goes_low_after_two_bad_reports_and_back_after_eight_good_ones() -> None:
    chooser = Chooser()
    assert chooser.observe(LOSSY) is VideoProfile.STANDARD  # one bad report is not enough
    assert chooser.observe(SLOW) is VideoProfile.LOW
    for _ in range(7):
        assert chooser.observe(GOOD) is VideoProfile.LOW
    assert chooser.observe(MIDDLING) is VideoProfile.LOW  # neither good nor bad: the count restarts
    for _ in range(7):
        assert chooser.observe(GOOD) is VideoProfile.LOW
    assert chooser.observe(GOOD) is VideoProfile.STANDARD


def test_a_pinned_mode_overrides_the_chooser() -> None:
    chooser = Chooser(active=VideoProfile.LOW)
    assert resolve(VideoMode.STANDARD, chooser) is VideoProfile.STANDARD
    assert resolve(VideoMode.AUTO, chooser) is VideoProfile.LOW


def _frame(width: int, height: int, pts: int) -> VideoFrame:
    frame = VideoFrame.from_ndarray(np.zeros((height, width, 3), dtype=np.uint8), format="bgr24")
    frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
    return frame


def test_scaling_fits_the_profile_keeps_the_aspect_and_never_enlarges() -> None:
    low = PROFILES[VideoProfile.LOW]
    out = scaled(_frame(1920, 1080, 0), low)
    assert (out.width, out.height) == (640, 360) and out.pts == 0
    portrait = scaled(_frame(1080, 1920, 0), low)
    assert (portrait.width, portrait.height) == (202, 360)
    small = _frame(320, 240, 0)
    assert scaled(small, low) is small


class _Source(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> VideoFrame:
        frame = _frame(1280, 720, self.count * 3000)  # 30 frames/s at 90 kHz
        self.count += 1
        return frame


async def test_the_low_profile_halves_a_30_fps_source() -> None:
    source = _Source()
    track = ProfileTrack(source, VideoProfile.LOW)
    frames = [await track.recv() for _ in range(10)]
    assert source.count in (19, 20)
    assert {(f.width, f.height) for f in frames} == {(640, 360)}
    track.profile = VideoProfile.STANDARD
    before = source.count
    frame = await track.recv()
    assert source.count == before + 1 and (frame.width, frame.height) == (1280, 720)


SERVERS = [
    {"urls": ["stun:turn.example:3478"]},
    {
        "urls": ["turn:turn.example:3478?transport=udp", "turns:turn.example:443?transport=tcp",
                 "turn:turn.example:3478?transport=tcp"],
        "username": "u",
        "credential": "c",
    },
]


def test_reorder_puts_the_preferred_turn_url_and_its_server_first() -> None:
    ordered = reorder(SERVERS, [TurnTransport.TCP, TurnTransport.TLS])
    assert ordered[0]["urls"] == [
        "turn:turn.example:3478?transport=tcp", "turns:turn.example:443?transport=tcp",
        "turn:turn.example:3478?transport=udp",
    ]
    assert ordered[0]["username"] == "u" and ordered[1] == SERVERS[0]


class _StunAnswer(asyncio.DatagramProtocol):
    ignore = 0
    """How many requests to drop before answering (a lossy link)."""
    heard = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = stun.parse_message(data)
        self.heard += 1
        if self.heard <= self.ignore:
            return
        answer = stun.Message(
            message_method=request.message_method,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        self.transport.sendto(bytes(answer), addr)


@pytest.mark.parametrize("answering", [True, False])
async def test_auto_keeps_udp_when_turn_answers_and_falls_back_to_tcp_when_not(answering: bool) -> None:
    port = free_port()
    loop = asyncio.get_running_loop()
    transport = None
    if answering:
        transport, _ = await loop.create_datagram_endpoint(_StunAnswer, local_addr=("127.0.0.1", port))
    servers = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]}]
    try:
        ordered = await prefer(servers)
    finally:
        if transport is not None:
            transport.close()
    first = ordered[0]["urls"][0]
    assert first.endswith("transport=udp" if answering else "transport=tcp")
    assert (await prefer(servers, TurnTransport.TCP))[0]["urls"][0].endswith("transport=tcp")


async def test_on_a_lossy_link_the_udp_probe_asks_again_until_turn_answers() -> None:
    # Five requests lost in a row: the old probe (two tries) gave up and sent video over TCP.
    port = free_port()
    loop = asyncio.get_running_loop()
    transport, answerer = await loop.create_datagram_endpoint(_StunAnswer, local_addr=("127.0.0.1", port))
    answerer.ignore = 5
    try:
        servers = [{"urls": [f"turn:127.0.0.1:{port}?transport=udp", f"turn:127.0.0.1:{port}?transport=tcp"]}]
        ordered = await prefer(servers)
    finally:
        transport.close()
    assert ordered[0]["urls"][0].endswith("transport=udp")
    assert answerer.heard == 6
