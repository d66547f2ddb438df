"""Join to first decoded frame: through the real server's ``/ws``, beside the in-process floor.

Two aiortc peers, a camera (:class:`~woundcare.camera.peer.Publisher` fed by a 640x480 30 fps
:class:`~woundcare.camera.synthetic.SyntheticVideoTrack`) and a specialist
(:class:`~woundcare.webrtc.peer.Viewer`), meet in two ways, measured interleaved in one process:

``server``
    The nurse has joined and waits. The span starts just before the specialist sends its
    ``join`` frame (its socket is already open) and covers the join round trip, the
    publisher's offer on the ``presence`` event, the viewer's answer, ICE, DTLS and the
    first decoded frame.
``floor``
    The same peers with no server: offer and answer are handed over directly in Python.
    The span starts just before the camera's RTCPeerConnection is created and covers the
    same work without signaling: offer, answer, ICE, DTLS and the first decoded frame.

The ratio of the medians is what the server path costs on top of this stack's floor.

    python -m bench.join [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.contrib.media import MediaRelay

from bench.common import free_port
from signaling.protocol import Leave, Role
from tests.server import RunningServer
from woundcare.camera.peer import Publisher
from woundcare.webrtc.client import SignalingClient
from woundcare.webrtc.peer import FrameCounter, Viewer, ice_configuration, pump
from woundcare.camera.synthetic import SyntheticVideoTrack
from woundcare.config import Settings

TARGET_RATIO = 1.2
"""The server path may cost at most this much over the in-process floor (median to median)."""
DEFAULT_RUNS = 7
MIN_RUNS = 5
WARMUP_RUNS = 1
"""Unmeasured runs of each side first: codec set-up and first-use imports are not a join."""
RUN_TIMEOUT_SECONDS = 30.0
WIDTH, HEIGHT = 640, 480


def loopback_only() -> None:
    """Keep ICE on 127.0.0.1.

    aioice's ``get_host_addresses`` skips 127.0.0.1, so without this patch the peers would
    gather (and check) every LAN address of the machine, and on a host with loopback only they
    would have no candidate at all. The bench must never leave loopback; with ``iceServers=[]``
    there are no STUN/TURN candidates either (aiortc's default is a public Google STUN server).
    """
    import aioice.ice

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback


async def _leave(client: SignalingClient) -> None:
    """Leave for good, so the room does not hold our place for the grace window."""
    if client.connected:
        with suppress(Exception):
            await client.send(Leave())


async def through_server(
    server: RunningServer, http: aiohttp.ClientSession, config: RTCConfiguration
) -> float:
    """Seconds from the specialist's join frame to its first decoded frame."""
    consultation = await server.new_consultation()
    source = SyntheticVideoTrack(WIDTH, HEIGHT)
    nurse = SignalingClient(server.url, http)
    specialist = SignalingClient(server.url, http)
    camera = Publisher(nurse, source, config)
    viewer = Viewer(specialist, config)
    pumps: list[asyncio.Task[None]] = []
    try:
        await nurse.join(consultation, Role.NURSE, server.invite(consultation, Role.NURSE))
        await camera.start()
        pumps.append(asyncio.create_task(pump(nurse, camera)))
        await specialist.connect()
        token = server.invite(consultation, Role.SPECIALIST)

        started = time.perf_counter()
        await specialist.join(consultation, Role.SPECIALIST, token)
        pumps.append(asyncio.create_task(pump(specialist, viewer)))
        async with asyncio.timeout(RUN_TIMEOUT_SECONDS):
            counter = await viewer.frames(1)
        assert counter.first_frame_at is not None
        return counter.first_frame_at - started
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await _leave(specialist)
        await _leave(nurse)
        await viewer.close()
        await camera.close()
        await specialist.close()
        await nurse.close()
        source.stop()


async def in_process(config: RTCConfiguration) -> float:
    """Seconds from creating the camera's connection to the first decoded frame, no server."""
    source = SyntheticVideoTrack(WIDTH, HEIGHT)
    relay = MediaRelay()  # as in Publisher: made before the viewer arrives
    counters: list[FrameCounter] = []
    track_arrived = asyncio.Event()
    pcs: list[RTCPeerConnection] = []
    try:
        started = time.perf_counter()
        camera = RTCPeerConnection(config)
        pcs.append(camera)
        camera.addTrack(relay.subscribe(source, buffered=False))
        await camera.setLocalDescription(await camera.createOffer())

        viewer = RTCPeerConnection(config)
        pcs.append(viewer)

        @viewer.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                counters.append(FrameCounter(track))
                track_arrived.set()

        await viewer.setRemoteDescription(camera.localDescription)
        await viewer.setLocalDescription(await viewer.createAnswer())
        await camera.setRemoteDescription(viewer.localDescription)
        async with asyncio.timeout(RUN_TIMEOUT_SECONDS):
            await track_arrived.wait()
            await counters[-1].first.wait()
        first = counters[-1].first_frame_at
        assert first is not None
        return first - started
    finally:
        for counter in counters:
            await counter.stop()
        for pc in reversed(pcs):
            await pc.close()
        source.stop()


@dataclass(frozen=True, slots=True)
class Summary:
    label: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)


@dataclass(frozen=True, slots=True)
class Result:
    server: Summary
    floor: Summary
    loop: str

    @property
    def ratio(self) -> float:
        return self.server.median / self.floor.median

    @property
    def met(self) -> bool:
        return self.ratio <= TARGET_RATIO


async def measure(runs: int, loop_name: str) -> Result:
    loopback_only()
    config = ice_configuration([])  # host candidates only: never a public STUN server
    server_times: list[float] = []
    floor_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="woundcare-bench-") as data_dir:
        settings = Settings(port=free_port(), data_dir=Path(data_dir), database_url=None)
        server = await RunningServer.start(settings)
        try:
            async with aiohttp.ClientSession() as http:
                sides: list[tuple[Callable[[], Awaitable[float]], list[float]]] = [
                    (lambda: through_server(server, http, config), server_times),
                    (lambda: in_process(config), floor_times),
                ]
                # Interleaved (server, floor, server, floor, ...): machine noise hits both sides.
                for index in range(WARMUP_RUNS + runs):
                    for run, times in sides:
                        seconds = await run()
                        if index >= WARMUP_RUNS:
                            times.append(seconds)
        finally:
            await server.stop()
    return Result(
        Summary("server /ws", tuple(server_times)),
        Summary("in-process floor", tuple(floor_times)),
        loop_name,
    )


def render(result: Result) -> str:
    runs = len(result.server.seconds)
    rows = [("", "median", "min", "max")]
    for side in (result.server, result.floor):
        rows.append((side.label, *(f"{value * 1000:.1f} ms" for value in (side.median, side.min, side.max))))
    first = max(len(row[0]) for row in rows)
    rest = [max(len(row[i]) for row in rows) for i in (1, 2, 3)]
    lines = [
        f"join -> first decoded frame, {WIDTH}x{HEIGHT} @ 30 fps, {runs} interleaved runs per side "
        f"(+{WARMUP_RUNS} warm-up), event loop: {result.loop}",
        "",
    ]
    for row in rows:
        cells = [row[0].ljust(first)] + [cell.rjust(width) for cell, width in zip(row[1:], rest)]
        lines.append("  ".join(cells).rstrip())
    verdict = "met" if result.met else "NOT met"
    lines += [
        "",
        f"ratio server/floor (medians): {result.ratio:.2f}   target <= {TARGET_RATIO:.1f}: {verdict}",
    ]
    return "\n".join(lines)


def _runs(text: str) -> int:
    value = int(text)
    if value < MIN_RUNS:
        raise argparse.ArgumentTypeError(f"at least {MIN_RUNS} runs for a median (got {value})")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.join",
        description="Time from the specialist's join to the first decoded frame, through the real "
        "server and in-process with no server (the floor), and their ratio.",
    )
    parser.add_argument(
        "--runs", type=_runs, default=DEFAULT_RUNS,
        help=f"measured runs per side, interleaved (default {DEFAULT_RUNS}, at least {MIN_RUNS})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        loop_factory, loop_name = None, "asyncio"
    else:
        loop_factory, loop_name = uvloop.new_event_loop, "uvloop"
    # Both sides share this one loop, so uvloop (or its absence) weighs on them equally.
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(measure(args.runs, loop_name))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
