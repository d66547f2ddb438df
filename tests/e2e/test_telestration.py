"""Telestration in two real browsers (issue 17, protocol §6.11, §6.12): the specialist draws on
the live video and on a shared frozen still, and the nurse's page paints each mark at the same
place of the picture. Marks are checked on the nurse's overlay canvas, pixel by pixel, at the
spot the normalized point maps to through her own letterboxing; the two stills of a shared
freeze are compared downscaled; undo, clear and the pointer reach her; the still's strokes are
saved to its record; the session log counts the strokes. A second call blocks the data channel
on the specialist's side, and the signaling copies alone must deliver.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e.browser import async_playwright, eventually, launch
from tests.e2e.flows import UI_TIMEOUT_MS, call_in_two_browsers
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import ConsultationEvent

MARK_SECONDS = 10.0
PALETTE = {"cyan": (0x00, 0xE5, 0xFF), "yellow": (0xFF, 0xEB, 0x3B), "green": (0x76, 0xFF, 0x03), "magenta": (0xFF, 0x00, 0xFF)}

# Where an element shows its picture and how big the picture is (the still canvases or the video).
PICTURE = """
(selector) => {
  const e = document.querySelector(selector);
  const r = e.getBoundingClientRect();
  const video = e instanceof HTMLVideoElement;
  return { left: r.left, top: r.top, width: e.clientWidth, height: e.clientHeight,
           mediaWidth: video ? e.videoWidth : e.width, mediaHeight: video ? e.videoHeight : e.height };
}
"""

PIXEL = """
([x, y]) => {
  const canvas = document.getElementById('telestration');
  return [...canvas.getContext('2d').getImageData(x, y, 1, 1).data];
}
"""

# A picture drawn down to 64x48 grey levels, to compare two stills.
GREY = """
(selector) => {
  const source = document.querySelector(selector);
  const small = document.createElement('canvas');
  small.width = 64;
  small.height = 48;
  const ctx = small.getContext('2d');
  ctx.drawImage(source, 0, 0, 64, 48);
  const data = ctx.getImageData(0, 0, 64, 48).data;
  const grey = [];
  for (let i = 0; i < data.length; i += 4) grey.push((data[i] + data[i + 1] + data[i + 2]) / 3);
  return grey;
}
"""

CHANNEL_STATS = """
async () => {
  const out = { open: 0, sent: 0, received: 0 };
  for (const pc of window.__testPeers) {
    if (pc.connectionState === 'closed') continue;
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== 'data-channel' || s.label !== 'telestration') continue;
      if (s.state === 'open') out.open += 1;
      out.sent += s.messagesSent || 0;
      out.received += s.messagesReceived || 0;
    }
  }
  return out;
}
"""

# Closes the specialist's telestration channel as it is made: the signaling copies must do.
BLOCK_CHANNEL = """
(() => {
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    if (channel.label === 'telestration') channel.close();
    return channel;
  };
})();
"""


def fitted(picture: dict[str, float]) -> tuple[float, float, float, float]:
    """The box (x, y, width, height) in the element's pixels where object-fit: contain shows the picture."""
    scale = min(picture["width"] / picture["mediaWidth"], picture["height"] / picture["mediaHeight"])
    width, height = picture["mediaWidth"] * scale, picture["mediaHeight"] * scale
    return (picture["width"] - width) / 2, (picture["height"] - height) / 2, width, height


async def picture_of(page: Any, selector: str) -> dict[str, float]:
    return await eventually(lambda: page.evaluate(PICTURE, selector), lambda p: p["mediaWidth"] > 0,
                            MARK_SECONDS, f"{selector} shows a picture")


async def draw(page: Any, selector: str, points: list[tuple[float, float]]) -> None:
    """A pointer stroke through normalized points of the picture ``selector`` shows."""
    picture = await picture_of(page, selector)
    x, y, width, height = fitted(picture)
    at = [(picture["left"] + x + px * width, picture["top"] + y + py * height) for px, py in points]
    await page.mouse.move(*at[0])
    await page.mouse.down()
    for point in at[1:]:
        await page.mouse.move(*point, steps=4)
    await page.mouse.up()


async def pixel_at(page: Any, selector: str, point: tuple[float, float]) -> tuple[int, ...]:
    """The nurse's overlay pixel over the normalized ``point`` of the picture ``selector`` shows."""
    x, y, width, height = fitted(await picture_of(page, selector))
    return tuple(await page.evaluate(PIXEL, [int(x + point[0] * width), int(y + point[1] * height)]))


def is_colour(colour: str) -> Callable[[tuple[int, ...]], bool]:
    red, green, blue = PALETTE[colour]
    return lambda p: p[3] > 240 and abs(p[0] - red) <= 8 and abs(p[1] - green) <= 8 and abs(p[2] - blue) <= 8


def clear(p: tuple[int, ...]) -> bool:
    return p[3] == 0


async def painted(page: Any, selector: str, point: tuple[float, float], accept: Callable[[tuple[int, ...]], bool],
                  what: str) -> None:
    await eventually(lambda: pixel_at(page, selector, point), accept, MARK_SECONDS, what)


async def choose(specialist: Any, tool: str, colour: str | None = None) -> None:
    await specialist.click(f"[data-draw-tool={tool}]")
    if colour:
        await specialist.click(f"#draw-tools [data-color='#{''.join(f'{c:02X}' for c in PALETTE[colour])}']")


async def logged_marks(server: RunningServer, consultation: str) -> list[tuple[str, str | None]]:
    services = server.app[SERVICES]
    await services.session_log.flush()
    async with services.database.sessions() as session:
        rows = await session.execute(
            select(ConsultationEvent.kind, ConsultationEvent.detail)
            .where(ConsultationEvent.consultation_id == consultation, ConsultationEvent.kind.in_(["annotation", "freeze"]))
            .order_by(ConsultationEvent.id)
        )
        return [(kind, detail) for kind, detail in rows]


def mean_difference(a: list[float], b: list[float]) -> float:
    return statistics.fmean(abs(x - y) for x, y in zip(a, b, strict=True))


async def test_marks_on_live_video_and_on_a_shared_still_reach_the_nurse(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    async with call_in_two_browsers(start_server, tmp_path, consents=("snapshots",)) as call:
        nurse, specialist = call.nurse, call.specialist
        await eventually(lambda: specialist.evaluate(CHANNEL_STATS), lambda s: s["open"] == 1,
                         MARK_SECONDS, "the specialist's telestration channel opens")
        await eventually(lambda: nurse.evaluate(CHANNEL_STATS), lambda s: s["open"] == 1,
                         MARK_SECONDS, "the nurse's telestration channel opens")
        await specialist.locator("#remote-video").scroll_into_view_if_needed()

        # A yellow line on the live video, then a green arrow, which is undone.
        await choose(specialist, "free", "yellow")
        await draw(specialist, "#remote-video", [(0.2, 0.3), (0.4, 0.3), (0.6, 0.3)])
        for x in (0.25, 0.4, 0.55):
            await painted(nurse, "#local-video", (x, 0.3), is_colour("yellow"), f"the yellow line at ({x}, 0.3)")
        assert clear(await pixel_at(nurse, "#local-video", (0.4, 0.4))), "the line is thin and in its place"
        await choose(specialist, "arrow", "green")
        await draw(specialist, "#remote-video", [(0.2, 0.7), (0.7, 0.7)])
        await painted(nurse, "#local-video", (0.45, 0.7), is_colour("green"), "the green arrow")
        await specialist.click("#draw-undo")
        await painted(nurse, "#local-video", (0.45, 0.7), clear, "the arrow undone")
        assert is_colour("yellow")(await pixel_at(nurse, "#local-video", (0.4, 0.3))), "undo took the last stroke only"

        # The pointer: a dot for two seconds, then gone; never logged.
        await choose(specialist, "pointer")
        await draw(specialist, "#remote-video", [(0.8, 0.5)])
        await painted(nurse, "#local-video", (0.8, 0.5), lambda p: p[3] > 0, "the pointer's dot")
        await painted(nurse, "#local-video", (0.8, 0.5), clear, "the pointer gone after its two seconds")

        # Shared freeze: both pages show the still the nurse's device captured and uploaded.
        await specialist.click("#freeze")
        await nurse.locator("#frozen-still").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await nurse.locator("#frozen-badge").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await specialist.locator("#frozen-badge").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        assert clear(await pixel_at(nurse, "#frozen-still", (0.4, 0.3))), "the live video's strokes are not on the still"
        stored = await eventually(
            lambda: specialist.evaluate(f"fetch('/api/consultations/{call.consultation}/snapshots').then((r) => r.json())"),
            lambda body: len(body["snapshots"]) == 1, 30.0, "the frozen still is stored")
        [snapshot] = stored["snapshots"]
        width, height = await nurse.evaluate(
            "(() => { const c = document.getElementById('frozen-still'); return [c.width, c.height]; })()")
        await eventually(
            lambda: specialist.evaluate(
                "(() => { const c = document.getElementById('freeze-canvas'); return [c.width, c.height]; })()"),
            lambda size: size == [width, height], MARK_SECONDS, "the specialist shows the stored full-resolution still")
        nurse_still = await eventually(lambda: nurse.evaluate(GREY, "#frozen-still"), lambda g: max(g) > 0,
                                       MARK_SECONDS, "the nurse's still has a picture")
        specialist_still = await specialist.evaluate(GREY, "#freeze-canvas")
        live_now = await nurse.evaluate(GREY, "#local-video")
        same = mean_difference(nurse_still, specialist_still)
        assert same < 3.0, f"the two stills differ by {same:.1f} grey levels on average"
        # The comparison can tell two frames of this camera apart (its test pattern moves).
        assert mean_difference(nurse_still, live_now) > same

        # A magenta circle on the still, then a cyan line that is cleared.
        await choose(specialist, "circle", "magenta")
        await draw(specialist, "#freeze-canvas", [(0.3, 0.3), (0.7, 0.7)])
        await painted(nurse, "#frozen-still", (0.3, 0.5), is_colour("magenta"), "the circle's left edge on the still")
        await painted(nurse, "#frozen-still", (0.5, 0.3), is_colour("magenta"), "the circle's top on the still")
        assert clear(await pixel_at(nurse, "#frozen-still", (0.5, 0.5))), "a circle, not a disc"

        # Its strokes are saved with the still in the record, in the still's pixels.
        def circle_saved(body: dict[str, Any]) -> bool:
            found = next(s for s in body["snapshots"] if s["id"] == snapshot["id"])
            items = (found["annotations"] or {}).get("items", [])
            return any(i["kind"] == "outline" and len(i["points"]) == 49 for i in items)

        body = await eventually(
            lambda: specialist.evaluate(f"fetch('/api/consultations/{call.consultation}/snapshots').then((r) => r.json())"),
            circle_saved, MARK_SECONDS, "the circle saved with the still")
        [ring] = [i for s in body["snapshots"] for i in s["annotations"]["items"] if i["kind"] == "outline"]
        xs = [p[0] for p in ring["points"]]
        assert abs(min(xs) - 0.3 * width) < width / 100 and abs(max(xs) - 0.7 * width) < width / 100

        await choose(specialist, "free", "cyan")
        await draw(specialist, "#freeze-canvas", [(0.1, 0.9), (0.9, 0.9)])
        await painted(nurse, "#frozen-still", (0.5, 0.9), is_colour("cyan"), "the cyan line on the still")
        await specialist.click("#draw-clear")
        await painted(nurse, "#frozen-still", (0.5, 0.9), clear, "the still's strokes cleared")
        assert clear(await pixel_at(nurse, "#frozen-still", (0.3, 0.5)))

        # Back to live: the still goes, the live video's line is there again.
        await specialist.click("#freeze")
        await nurse.locator("#frozen-still").wait_for(state="hidden", timeout=UI_TIMEOUT_MS)
        await nurse.locator("#frozen-badge").wait_for(state="hidden", timeout=UI_TIMEOUT_MS)
        await painted(nurse, "#local-video", (0.4, 0.3), is_colour("yellow"), "the live line back after the freeze")

        stats = await nurse.evaluate(CHANNEL_STATS)
        assert stats["received"] >= 8, f"the marks came over the data channel: {stats}"
        assert await logged_marks(call.server, call.consultation) == [
            ("annotation", "stroke/free"),
            ("annotation", "stroke/arrow"),
            ("annotation", "undo"),
            ("freeze", "on"),
            ("annotation", "stroke/circle"),
            ("annotation", "stroke/free"),
            ("annotation", "clear"),
            ("freeze", "off"),
        ]
        assert not call.page_errors


async def test_with_the_data_channel_blocked_the_signaling_copies_deliver(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    async with call_in_two_browsers(start_server, tmp_path, specialist_script=BLOCK_CHANNEL) as call:
        nurse, specialist = call.nurse, call.specialist
        await specialist.locator("#remote-video").scroll_into_view_if_needed()
        await choose(specialist, "arrow", "magenta")
        await draw(specialist, "#remote-video", [(0.1, 0.5), (0.6, 0.5)])
        await painted(nurse, "#local-video", (0.35, 0.5), is_colour("magenta"), "the arrow by signaling")
        await choose(specialist, "pointer")
        await draw(specialist, "#remote-video", [(0.8, 0.2)])
        await painted(nurse, "#local-video", (0.8, 0.2), lambda p: p[3] > 0, "the pointer by signaling")
        await specialist.click("#draw-undo")
        await painted(nurse, "#local-video", (0.35, 0.5), clear, "the undo by signaling")
        await specialist.click("#freeze")
        await nurse.locator("#frozen-badge").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        await specialist.click("#freeze")
        await nurse.locator("#frozen-badge").wait_for(state="hidden", timeout=UI_TIMEOUT_MS)

        assert (await specialist.evaluate(CHANNEL_STATS))["sent"] == 0
        assert (await nurse.evaluate(CHANNEL_STATS))["received"] == 0
        assert await logged_marks(call.server, call.consultation) == [
            ("annotation", "stroke/arrow"), ("annotation", "undo"), ("freeze", "on"), ("freeze", "off"),
        ]
        assert not call.page_errors


# The data channel's marks reach the nurse's page unchecked by the server: the page checks them
# with the rules of protocol §6.11 (telestration.js validMark).
CHANNEL_MARKS = [
    ({"type": "annotation", "op": "stroke", "id": "s-1", "shape": "arrow", "points": [[0, 0], [1, 1]], "color": "#00E5FF"}, True),
    ({"type": "annotation", "op": "pointer", "points": [[0.5, 0.5]]}, True),
    ({"type": "annotation", "op": "undo", "id": "u-1", "still": "req-1"}, True),
    ({"type": "annotation", "op": "clear", "id": "c-1", "still": None}, True),
    ({"type": "freeze", "on": True, "id": "f-1", "still": "req-1"}, True),
    ({"type": "freeze", "on": False, "id": "f-2"}, True),
    ({"type": "annotation", "op": "stroke", "id": "s-1", "shape": "arrow", "points": [[0, 0], [1, 1.5]], "color": "#00E5FF"}, False),
    ({"type": "annotation", "op": "stroke", "id": "s-1", "shape": "arrow", "points": [[0, 0], ["1", 1]], "color": "#00E5FF"}, False),
    ({"type": "annotation", "op": "stroke", "id": "s-1", "shape": "arrow", "points": [[0, 0], [1, 1]], "color": "#000000"}, False),
    ({"type": "annotation", "op": "stroke", "id": "s-1", "shape": "star", "points": [[0, 0], [1, 1]], "color": "#00E5FF"}, False),
    ({"type": "annotation", "op": "stroke", "id": "s 1", "shape": "free", "points": [[0, 0]], "color": "#00E5FF"}, False),
    ({"type": "annotation", "op": "stroke", "id": "s-1", "shape": "free", "points": [[0.5, 0.5]] * 513, "color": "#00E5FF"}, False),
    ({"type": "annotation", "op": "pointer", "points": [[0.5, 0.5], [0.6, 0.6]]}, False),
    ({"type": "annotation", "op": "undo"}, False),
    ({"type": "annotation", "op": "erase", "id": "e-1"}, False),
    ({"type": "freeze", "on": "yes", "id": "f-1"}, False),
    ({"type": "freeze", "on": True, "id": "f-1", "still": "../req"}, False),
    ({"type": "chat", "text": "hei"}, False),
    ("a string", False),
]

# contentBox on a 400x300 element: a 16:9 picture letterboxed by contain, cropped by cover.
CONTENT_BOXES = """
async () => {
  const { contentBox, validMark } = await import('/static/js/telestration.js');
  const element = document.createElement('div');
  element.style.width = '400px';
  element.style.height = '300px';
  document.body.append(element);
  const boxes = {};
  for (const fit of ['contain', 'cover', 'fill']) {
    element.style.objectFit = fit;
    boxes[fit] = contentBox(element, 1920, 1080);
  }
  return { boxes, valid: window.__marks.map((mark) => validMark(mark)) };
}
"""


async def test_the_nurse_page_checks_channel_marks_and_maps_every_object_fit(server: RunningServer) -> None:
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page = await browser.new_page()
            await page.goto(server.url + "/")
            await page.evaluate("(marks) => { window.__marks = marks; }", [mark for mark, _ in CHANNEL_MARKS])
            found = await page.evaluate(CONTENT_BOXES)
        finally:
            await browser.close()
    assert found["valid"] == [valid for _, valid in CHANNEL_MARKS]
    assert found["boxes"] == {
        "contain": {"x": 0, "y": 37.5, "width": 400, "height": 225},
        "cover": {"x": pytest.approx(-66.6667, abs=1e-3), "y": 0, "width": pytest.approx(533.3333, abs=1e-3), "height": 300},
        "fill": {"x": 0, "y": 0, "width": 400, "height": 300},
    }
