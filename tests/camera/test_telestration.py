"""Issue 17 on the head camera: the specialist's strokes reach ``woundcare camera`` over the
telestration data channel (and the signaling socket), and its display sees them as an
overlay PNG and as JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from PIL import Image

from signaling.protocol import Annotation, Color, DrawOp, Shape, SnapshotRequest
from tests.camera.scene import home_visit
from tests.server import RunningServer
from woundcare.camera.device import Camera, DeviceOptions
from woundcare.camera.overlay import OUTLINE, EventLines, OverlayFile, line_width, render
from woundcare.camera.synthetic import SyntheticVideoTrack
from woundcare.camera.telestration import Board, Scene, Telestration, read
from woundcare.webrtc.client import SignalingClosed
from woundcare.webrtc.peer import Viewer, ice_configuration, telestration_channel

CYAN, YELLOW, GREEN, MAGENTA = (0, 229, 255, 255), (255, 235, 59, 255), (118, 255, 3, 255), (255, 0, 255, 255)
CLEAR = (0, 0, 0, 0)
SIZE = (640, 360)


def stroke(id: str, points: list[list[float]], shape: str = "free", color: str = "#00E5FF", **extra: Any) -> dict[str, Any]:
    return {"type": "annotation", "op": "stroke", "id": id, "shape": shape, "points": points, "color": color, **extra}


def at(point: tuple[float, float], size: tuple[int, int] = SIZE) -> tuple[int, int]:
    """The pixel of a normalized point, as the renderer places it."""
    return round(point[0] * (size[0] - 1)), round(point[1] * (size[1] - 1))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- frames: what is read, what is ignored ----------------------------------------------------

BAD_FRAMES: list[tuple[object, str]] = [
    ([1, 2], "a frame must be a JSON object"),
    ({"type": "chat", "text": "x"}, "'type' must be annotation or freeze"),
    ({"type": "annotation", "op": "stroke"}, "'id' is required for op stroke"),
    ({"type": "annotation", "op": "wipe", "id": "a"}, "'op' must be one of"),
    ({"type": "annotation", "op": "undo"}, "'id' is required for op undo"),
    ({"type": "annotation", "op": "clear"}, "'id' is required for op clear"),
    (stroke("s", [[0.1, 0.1]], shape="square"), "'shape' must be one of"),
    (stroke("s", [[1.5, 0.1]]), "'points[0][0]' must be a number from 0 to 1"),
    (stroke("s", [[0.1, -0.01]]), "'points[0][1]' must be a number from 0 to 1"),
    (stroke("s", [[True, 0.1]]), "'points[0][0]' must be a number from 0 to 1"),
    (stroke("s", [["0.5", 0.1]]), "'points[0][0]' must be a number from 0 to 1"),
    (stroke("s", [[0.1]]), "'points[0][1]' is missing"),
    (stroke("s", [[0.1, 0.2, 0.3]]), "'points[0]' must hold at most 2"),
    (stroke("s", []), "'points' must hold at least 1"),
    (stroke("s", [[0.1, 0.1]] * 513), "'points' must hold at most 512"),
    (stroke("s", [[0.1, 0.1]], color="#123456"), "'color' must be one of"),
    (stroke("s" * 41, [[0.1, 0.1]]), "'id' must match"),
    (stroke("s/1", [[0.1, 0.1]]), "'id' must match"),
    (stroke("s", [[0.1, 0.1]], still="r 1"), "'still' must match"),
    (stroke("s", [[0.1, 0.1]], width=9), "only color, from, id, op, points, shape, still, to, type are known"),
    ({"type": "annotation", "op": "pointer", "points": [[0.1, 0.1], [0.2, 0.2]]}, "a pointer is one point"),
    ({"type": "annotation", "op": "pointer"}, "'points' is required for op pointer"),
    ({"type": "freeze", "on": True, "id": "f"}, "'still' is required when 'on' is true"),
    ({"type": "freeze", "on": 1, "id": "f", "still": "r1"}, "'on' must be true or false"),
    ({"type": "freeze", "on": False}, "'id' is required"),
]


@pytest.mark.parametrize(("frame", "rule"), BAD_FRAMES, ids=[rule for _, rule in BAD_FRAMES])
def test_a_frame_that_does_not_fit_is_ignored_counted_and_named(
    frame: object, rule: str, caplog: pytest.LogCaptureFixture
) -> None:
    telestration = Telestration()
    events: list[dict[str, Any]] = []
    telestration.listeners.append(events.append)
    telestration.receive(frame, "spes1")
    assert (telestration.rejected, telestration.applied, events) == (1, 0, [])
    assert telestration.board.scene().strokes == ()
    [record] = [r for r in caplog.records if r.name == "woundcare.camera.telestration"]
    assert record.levelno == logging.WARNING and rule in record.getMessage()


def test_the_log_names_the_rule_never_the_input(caplog: pytest.LogCaptureFixture) -> None:
    telestration = Telestration()
    telestration.receive(stroke("s", [[0.1, 0.1]], color="Per Øst 01018012371"), "spes1")
    telestration.receive({"type": "annotation", "op": "stroke", "Per Øst": 1}, "spes1")
    telestration.from_channel("spes1", b"Per \xc3\x98st {")
    assert telestration.rejected == 3
    assert caplog.records and all("Per" not in r.getMessage() and "0101" not in r.getMessage() for r in caplog.records)


def test_a_signaling_copy_without_its_sender_is_ignored() -> None:
    telestration = Telestration()
    telestration.from_signaling(stroke("s-1", [[0.5, 0.5]]))
    assert (telestration.rejected, telestration.applied) == (1, 0)


def test_a_signaling_copy_and_a_channel_copy_apply_once() -> None:
    telestration = Telestration()
    events: list[dict[str, Any]] = []
    telestration.listeners.append(events.append)
    telestration.from_signaling(stroke("s-1", [[0.25, 0.5], [0.75, 0.5]], to="nUr5eCam", **{"from": "sPeC1a1i"}))
    telestration.from_channel("sPeC1a1i", json.dumps(stroke("s-1", [[0.25, 0.5], [0.75, 0.5]])))
    assert (telestration.applied, telestration.duplicates, telestration.rejected) == (1, 1, 0)
    # The event is the spec's object, from the sender, without `to`.
    assert events == [{"type": "annotation", "op": "stroke", "id": "s-1", "shape": "free",
                       "points": [[0.25, 0.5], [0.75, 0.5]], "color": "#00E5FF", "from": "sPeC1a1i"}]
    # Another specialist may pick the same id for their own stroke.
    telestration.from_channel("sPeC2", json.dumps(stroke("s-1", [[0.1, 0.1]])))
    assert telestration.applied == 2


def test_read_accepts_every_shape_colour_and_op() -> None:
    for shape in ("free", "arrow", "circle"):
        for color in ("#00E5FF", "#FFEB3B", "#76FF03", "#FF00FF"):
            assert read(stroke(f"s-{shape}", [[0, 0], [1, 1]], shape=shape, color=color, still="req-1")).still == "req-1"
    assert read({"type": "annotation", "op": "pointer", "points": [[0.5, 0.5]]}).id is None
    assert read({"type": "annotation", "op": "undo", "id": "u-1", "still": None}).still is None
    assert read({"type": "freeze", "on": False, "id": "f-2", "still": None}).id == "f-2"
    assert read(stroke("s-1", [[0, 1]] * 512)).points is not None


# --- the board: undo, clear, freeze, pointer -----------------------------------------------------


def test_undo_removes_the_senders_last_stroke_on_its_layer_and_clear_the_layer() -> None:
    telestration = Telestration()
    board = telestration.board
    for frame, sender in [
        (stroke("a", [[0.1, 0.1]]), "spes1"),
        (stroke("b", [[0.2, 0.2]]), "spes1"),
        (stroke("c", [[0.3, 0.3]]), "spes2"),
        (stroke("d", [[0.4, 0.4]], still="r1"), "spes1"),
    ]:
        telestration.receive(frame, sender)
    telestration.receive({"type": "annotation", "op": "undo", "id": "u1"}, "spes1")
    assert [s.id for s in board.scene().strokes] == ["a", "c"]  # spes1's last live stroke, not d
    telestration.receive({"type": "freeze", "on": True, "id": "f1", "still": "r1"}, "spes1")
    assert [s.id for s in board.scene().strokes] == ["d"]
    telestration.receive({"type": "annotation", "op": "clear", "id": "c1", "still": "r1"}, "spes1")
    assert board.scene().strokes == ()
    telestration.receive({"type": "freeze", "on": False, "id": "f2"}, "spes1")
    assert [s.id for s in board.scene().strokes] == ["a", "c"]
    telestration.receive({"type": "annotation", "op": "clear", "id": "c2"}, "spes1")
    assert board.scene().strokes == ()
    # An undo with nothing left changes nothing, and so tells nobody.
    applied = telestration.applied
    telestration.receive({"type": "annotation", "op": "undo", "id": "u2"}, "spes1")
    assert telestration.applied == applied


def test_an_undone_strokes_late_twin_does_not_bring_it_back() -> None:
    telestration = Telestration()
    telestration.from_channel("spes1", json.dumps(stroke("s-1", [[0.5, 0.5]])))
    telestration.from_channel("spes1", json.dumps({"type": "annotation", "op": "undo", "id": "u-1"}))
    telestration.from_signaling(stroke("s-1", [[0.5, 0.5]], **{"from": "spes1"}))
    telestration.from_signaling({"type": "annotation", "op": "undo", "id": "u-1", "from": "spes1"})
    assert telestration.board.scene().strokes == ()
    assert (telestration.applied, telestration.duplicates) == (2, 2)


def test_a_pointer_shows_for_two_seconds_and_the_frozen_still_once_taken() -> None:
    clock = Clock()
    telestration = Telestration(Board(clock))
    changes: list[None] = []
    telestration.on_change.append(lambda: changes.append(None))
    telestration.receive({"type": "annotation", "op": "pointer", "points": [[0.5, 0.25]]}, "spes1")
    assert telestration.board.scene().pointer == (0.5, 0.25)
    clock.now += 1.9
    assert telestration.board.pointer_until() == pytest.approx(102.0)
    clock.now += 0.2
    assert telestration.board.scene().pointer is None and telestration.board.pointer_until() is None

    telestration.receive({"type": "freeze", "on": True, "id": "f1", "still": "r1"}, "spes1")
    assert telestration.board.scene().still is None  # asked before the camera took it
    telestration.receive({"type": "annotation", "op": "pointer", "points": [[0.5, 0.5]]}, "spes1")
    assert telestration.board.scene().pointer is None  # aimed at the live video, not the still
    telestration.receive({"type": "annotation", "op": "pointer", "points": [[0.5, 0.5]], "still": "r1"}, "spes1")
    assert telestration.board.scene().pointer == (0.5, 0.5)
    telestration.keep_still("r0", b"other")
    telestration.keep_still("r1", b"jpeg")
    clock.now += 2.1
    assert telestration.board.scene() == Scene(strokes=(), pointer=None, frozen="r1", still=b"jpeg")
    assert len(changes) == 5  # three pointers, the freeze, the still it shows; not r0's


# --- rendering --------------------------------------------------------------------------------


def scene(*frames: dict[str, Any], still: bytes | None = None) -> Scene:
    telestration = Telestration()
    for frame in frames:
        telestration.receive(frame, "spes1")
    if still is not None:
        telestration.keep_still("r1", still)
    return telestration.board.scene()


def test_render_a_free_stroke_at_its_normalized_place_with_a_dark_outline() -> None:
    image = render(scene(stroke("s", [[0.2, 0.5], [0.8, 0.5]])), SIZE)
    assert image.size == SIZE and image.mode == "RGBA"
    x, y = at((0.5, 0.5))
    assert image.getpixel((x, y)) == CYAN
    # Down the column through the line: clear, a 2 px dark edge, the colour, the edge, clear.
    column = [image.getpixel((x, row)) for row in range(y - 10, y + 11)]
    runs = [(color, len(list(group))) for color, group in itertools.groupby(column)]
    assert runs == [(CLEAR, runs[0][1]), (OUTLINE, 2), (CYAN, line_width(SIZE)), (OUTLINE, 2), (CLEAR, runs[-1][1])]
    assert image.getpixel(at((0.5, 0.3))) == CLEAR
    start, _ = at((0.2, 0.5))
    # A round cap: the colour goes a little past the end, then its 2 px dark edge.
    row = [image.getpixel((column, y)) for column in range(start - 10, start + 1)]
    runs = [(color, len(list(group))) for color, group in itertools.groupby(row)]
    assert [color for color, _ in runs] == [CLEAR, OUTLINE, CYAN] and runs[1][1] == 2 and runs[2][1] > 1


def test_render_an_arrow_with_its_head_at_the_end() -> None:
    image = render(scene(stroke("a", [[0.2, 0.5], [0.8, 0.5]], shape="arrow", color="#FF00FF")), SIZE)
    end_x, y = at((0.8, 0.5))
    assert image.getpixel((end_x - 10, y)) == MAGENTA
    head = line_width(SIZE) * 5
    # The barbs go back from the tip at 30 degrees: above and below the shaft near the tip,
    # nothing there at the tail.
    barb = (round(end_x - head * 0.7), round(y - head * 0.4))
    assert image.getpixel(barb) == MAGENTA
    assert image.getpixel((barb[0], round(y + head * 0.4))) == MAGENTA
    tail_x, _ = at((0.2, 0.5))
    assert image.getpixel((tail_x + head, round(y - head * 0.4))) == CLEAR


def test_render_a_circle_as_the_ellipse_in_its_box() -> None:
    image = render(scene(stroke("c", [[0.25, 0.25], [0.75, 0.75]], shape="circle", color="#76FF03")), SIZE)
    left, top = at((0.25, 0.25))
    right, bottom = at((0.75, 0.75))
    middle_x, middle_y = (left + right) // 2, (top + bottom) // 2
    inside = line_width(SIZE) // 2
    for pixel in [(left + inside, middle_y), (right - inside, middle_y), (middle_x, top + inside), (middle_x, bottom - inside)]:
        assert image.getpixel(pixel) == GREEN
    assert image.getpixel((middle_x, middle_y)) == CLEAR  # a ring, not a disc
    assert image.getpixel((left + 2, top + 2)) == CLEAR  # the box's corner is outside the ellipse


def test_render_the_pointer_and_the_frozen_still_with_its_badge() -> None:
    pointer = {"type": "annotation", "op": "pointer", "points": [[0.5, 0.5]]}
    assert render(scene(pointer), SIZE).getpixel(at((0.5, 0.5))) == CYAN
    still = io.BytesIO()
    Image.new("RGB", SIZE, (200, 40, 40)).save(still, format="JPEG", quality=95)
    frozen = scene(
        {"type": "freeze", "on": True, "id": "f1", "still": "r1"},
        stroke("s", [[0.2, 0.5], [0.8, 0.5]], color="#FFEB3B", still="r1"),
        still=still.getvalue(),
    )
    image = render(frozen, SIZE)
    assert image.getpixel(at((0.5, 0.5))) == YELLOW
    red, green, blue, alpha = image.getpixel(at((0.1, 0.9)))  # the still, opaque, under the strokes
    assert alpha == 255 and abs(red - 200) < 8 and abs(green - 40) < 8
    # The frozen badge, a pause sign in the top right corner: a dark disc, two white bars.
    radius = line_width(SIZE) * 4
    x, y = SIZE[0] - radius * 2, radius * 2
    assert image.getpixel((x, y + radius - 2)) == OUTLINE
    assert image.getpixel((x - radius // 4, y)) == (255, 255, 255, 255)
    assert image.getpixel((x + radius // 4 + 1, y)) == (255, 255, 255, 255)
    assert image.getpixel((x, y)) == OUTLINE  # between the bars
    assert render(scene(), SIZE).getpixel((x, y)) == CLEAR  # live: no badge


async def test_the_overlay_file_follows_the_board(tmp_path: Path) -> None:
    telestration = Telestration()
    path = tmp_path / "overlay.png"
    overlay = OverlayFile(path, SIZE, telestration.board)
    telestration.on_change.append(overlay.changed)
    task = asyncio.create_task(overlay.run())
    try:
        await until(lambda: path.exists(), 5)
        assert pixel(path, (0.5, 0.5)) == CLEAR
        telestration.receive(stroke("s", [[0.2, 0.5], [0.8, 0.5]]), "spes1")
        await until(lambda: pixel(path, (0.5, 0.5)) == CYAN, 5)
        telestration.receive({"type": "annotation", "op": "pointer", "points": [[0.5, 0.2]]}, "spes1")
        await until(lambda: pixel(path, (0.5, 0.2)) == CYAN, 5)
        await until(lambda: pixel(path, (0.5, 0.2)) == CLEAR, 5)  # gone after its two seconds
        assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]  # no temporary left
        assert pixel(path, (0.5, 0.5)) == CYAN
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Stopped, the camera leaves the file empty: no stroke, no still.
    with Image.open(path) as image:
        assert image.getextrema()[3] == (0, 0)


async def test_event_lines_never_block_the_loop_on_a_pipe_nobody_reads() -> None:
    class Stalled(io.StringIO):
        """A pipe whose reader has stopped: the first write blocks until released."""

        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def write(self, text: str) -> int:
            self.release.wait(10)
            return super().write(text)

    stream = Stalled()
    lines = EventLines(stream, limit=3)
    task = asyncio.create_task(lines.run())
    try:
        for index in range(10):
            lines({"type": "annotation", "op": "clear", "id": f"c-{index}"})
            await asyncio.sleep(0.01)  # the loop goes on: nothing here waits for the pipe
        assert lines.dropped == 6  # one in the blocked write, three waiting
        stream.release.set()
        await until(lambda: stream.getvalue().count("\n") == 4, 5)
    finally:
        stream.release.set()
        task.cancel()
    assert [json.loads(line)["id"] for line in stream.getvalue().splitlines()] == ["c-0", "c-1", "c-2", "c-3"]


# --- the camera's signaling path --------------------------------------------------------------


class Frames:
    """A signaling client that hands the camera's reader some frames, then closes."""

    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self._frames = frames

    async def recv(self) -> dict[str, Any]:
        if not self._frames:
            raise SignalingClosed(1000)
        return self._frames.pop(0)


async def test_the_camera_reads_annotation_and_freeze_frames_from_its_socket(tmp_path: Path) -> None:
    options = DeviceOptions(server="http://127.0.0.1:1", token="wcd_test", patient="p1", queue_dir=tmp_path / "q")
    async with aiohttp.ClientSession() as session:
        camera = Camera(options, session)
        events: list[dict[str, Any]] = []
        camera.telestration.listeners.append(events.append)
        relayed = {"to": "nUr5eCam", "from": "sPeC1a1i"}
        frames = Frames([
            stroke("s-1", [[0.5, 0.5]], **relayed),
            stroke("s-1", [[0.5, 0.5]], **relayed),  # the same stroke again
            {"type": "annotation", "op": "stroke", "id": "s-2", **relayed},  # no points: ignored
            {"type": "freeze", "on": True, "id": "f-1", "still": "r1", **relayed},
        ])
        with pytest.raises(SignalingClosed):
            await camera._read(frames, None, None, None)  # type: ignore[arg-type]
    assert [(e["type"], e["id"]) for e in events] == [("annotation", "s-1"), ("freeze", "f-1")]
    assert (camera.telestration.duplicates, camera.telestration.rejected) == (1, 1)
    assert camera.telestration.board.frozen == "r1"


# --- the channel: made by both ends, only when the offer carries it -----------------------------


class Sent:
    """A signaling client that keeps what the viewer sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


@pytest.mark.usefixtures("loopback_ice")
@pytest.mark.parametrize("offered", [True, False], ids=["camera-offers-the-channel", "offer-without-it"])
async def test_a_viewer_makes_the_channel_when_the_offer_carries_it(offered: bool) -> None:
    camera, client = RTCPeerConnection(), Sent()
    viewer = Viewer(client, ice_configuration([]))  # type: ignore[arg-type]
    try:
        received: list[str | bytes] = []
        if offered:
            telestration_channel(camera).on("message", received.append)
        camera.addTrack(SyntheticVideoTrack(64, 48))
        await camera.setLocalDescription(await camera.createOffer())
        await viewer.handle({"type": "offer", "sdp": camera.localDescription.sdp, "pc": 0, "from": "cam"})
        answer = client.sent[0]
        await camera.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        assert viewer.pc is not None
        await until(lambda: viewer.pc is not None and viewer.pc.connectionState == "connected", 20)
        if not offered:
            assert viewer.channel is None and "m=application" not in answer.sdp
            return
        assert viewer.channel is not None
        channel = viewer.channel
        await until(lambda: channel.readyState == "open", 20)
        channel.send('{"type": "annotation"}')
        await until(lambda: received == ['{"type": "annotation"}'], 20)
    finally:
        await viewer.close()
        await camera.close()


# --- end to end: a real viewer's channel into a running `woundcare camera` ---------------------


def pixel(path: Path, point: tuple[float, float]) -> tuple[int, ...]:
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        value = image.getpixel(at(point, image.size))
        assert isinstance(value, tuple)
        return value


async def until(check: Callable[[], bool], timeout: float, why: Callable[[], str] = lambda: "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"not within {timeout} s\n{why()}")


@pytest.mark.usefixtures("loopback_ice")
async def test_strokes_undo_clear_and_freeze_reach_the_cameras_overlay_over_the_channel(
    server: RunningServer, tmp_path: Path
) -> None:
    overlay, events = tmp_path / "overlay.png", tmp_path / "events.jsonl"
    async with home_visit(server, tmp_path) as visit:
        visit.start_camera(server.url, "--width", "640", "--height", "360", "--overlay", str(overlay),
                           "--overlay-events", "--loopback-only", stdout=events)
        await visit.join_specialist(30)
        assert visit.viewer is not None
        await visit.viewer.frames(1)
        channel = visit.viewer.channel
        assert channel is not None
        await until(lambda: channel.readyState == "open", 20, visit.camera_log)

        def send(frame: dict[str, Any]) -> None:
            channel.send(json.dumps(frame))

        def shows(point: tuple[float, float], color: tuple[int, ...]) -> Callable[[], bool]:
            return lambda: overlay.exists() and pixel(overlay, point) == color

        send(stroke("s-1", [[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]]))
        await until(shows((0.5, 0.5), CYAN), 20, visit.camera_log)
        assert pixel(overlay, (0.5, 0.25)) == CLEAR
        send(stroke("s-1", [[0.2, 0.5], [0.8, 0.5]]))  # the same id again: ignored
        channel.send("{not json")
        send({"type": "annotation", "op": "stroke", "id": "s-9"})  # no points: ignored
        send(stroke("s-2", [[0.1, 0.1], [0.4, 0.25]], shape="arrow", color="#FF00FF"))
        await until(shows((0.3, 0.2), MAGENTA), 20, visit.camera_log)
        send({"type": "annotation", "op": "undo", "id": "u-1"})
        await until(shows((0.3, 0.2), CLEAR), 20, visit.camera_log)
        assert pixel(overlay, (0.5, 0.5)) == CYAN  # only the last stroke went

        # The shared freeze: the still taken for r1 is the background, the live strokes wait.
        await visit.send(SnapshotRequest(id="r1"))
        send({"type": "freeze", "on": True, "id": "f-1", "still": "r1"})
        send(stroke("s-3", [[0.5, 0.1], [0.5, 0.9]], color="#FFEB3B", still="r1"))
        await until(shows((0.5, 0.3), YELLOW), 20, visit.camera_log)
        await until(lambda: pixel(overlay, (0.05, 0.95))[3] == 255, 20, visit.camera_log)  # the still
        assert pixel(overlay, (0.3, 0.5)) != CYAN  # the live stroke is not on the still
        send({"type": "freeze", "on": False, "id": "f-2"})
        await until(shows((0.05, 0.95), CLEAR), 20, visit.camera_log)
        assert pixel(overlay, (0.3, 0.5)) == CYAN and pixel(overlay, (0.5, 0.3)) == CLEAR

        send({"type": "annotation", "op": "clear", "id": "c-1"})
        await until(shows((0.3, 0.5), CLEAR), 20, visit.camera_log)
        send({"type": "annotation", "op": "pointer", "points": [[0.75, 0.75]]})
        await until(shows((0.75, 0.75), CYAN), 20, visit.camera_log)
        await until(shows((0.75, 0.75), CLEAR), 10, visit.camera_log)  # after two seconds

        def lines() -> list[dict[str, Any]]:
            return [json.loads(line) for line in events.read_text().splitlines()]

        await until(lambda: len(lines()) == 8, 10, lambda: events.read_text())
        nurse, specialist = visit.nurse_id(), visit.specialist.participant if visit.specialist else None
        assert nurse and specialist
        assert [(e["type"], e.get("op"), e.get("id")) for e in lines()] == [
            ("annotation", "stroke", "s-1"), ("annotation", "stroke", "s-2"), ("annotation", "undo", "u-1"),
            ("freeze", None, "f-1"), ("annotation", "stroke", "s-3"), ("freeze", None, "f-2"),
            ("annotation", "clear", "c-1"), ("annotation", "pointer", None),
        ]
        assert lines()[0] == {"type": "annotation", "op": "stroke", "id": "s-1", "shape": "free",
                              "points": [[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]], "color": "#00E5FF", "from": specialist}
        log = visit.camera_log()
        assert "telestration frame ignored: not JSON" in log
        assert "telestration frame ignored: 'shape' is required for op stroke" in log
        assert "0.5" not in "\n".join(line for line in log.splitlines() if "telestration" in line)
        visit.assert_camera_running()
        send(stroke("s-4", [[0.1, 0.1], [0.9, 0.9]]))
        await until(shows((0.5, 0.5), CYAN), 20, visit.camera_log)
        assert await visit.stop_camera() == 0
    with Image.open(overlay) as image:
        assert image.getextrema()[3] == (0, 0)  # stopped: nothing left on the display


@pytest.mark.usefixtures("loopback_ice")
async def test_strokes_reach_the_cameras_overlay_over_signaling_relayed_by_the_server(
    server: RunningServer, tmp_path: Path
) -> None:
    """The fallback path end to end: the specialist's frames go through the server's relay
    (which adds ``from``) to the camera's socket, never over the data channel."""
    overlay = tmp_path / "overlay.png"
    async with home_visit(server, tmp_path) as visit:
        visit.start_camera(server.url, "--width", "640", "--height", "360", "--overlay", str(overlay),
                           "--loopback-only")
        await visit.join_specialist(30)
        assert visit.viewer is not None
        await visit.viewer.frames(1)
        nurse = visit.nurse_id()

        def shows(point: tuple[float, float], color: tuple[int, ...]) -> Callable[[], bool]:
            return lambda: overlay.exists() and pixel(overlay, point) == color

        await visit.send(Annotation(to=nurse, op=DrawOp.STROKE, id="g-1", shape=Shape.FREE,
                                    points=[[0.2, 0.5], [0.8, 0.5]], color=Color.GREEN.value))
        await until(shows((0.5, 0.5), GREEN), 20, visit.camera_log)
        await visit.send(Annotation(to=nurse, op=DrawOp.UNDO, id="g-2"))
        await until(shows((0.5, 0.5), CLEAR), 20, visit.camera_log)
        visit.assert_camera_running()
