"""The head camera program seen on the specialist's page, in a real browser.

``woundcare camera`` in its own process (a synthetic 1080p picture, a 440 Hz tone for the
nurse's microphone, a WAV file for its speaker) and the specialist's page in headless Chromium
(its microphone a 660 Hz tone), media relayed through a local coturn only, as the pilot runs
it: the page shows the camera's video at the standard profile's 1280x720 with frames advancing,
the nurse's tone is heard in the page, a still requested with the page's button is stored at
the camera's full 1920x1080, and the specialist's voice plays on the camera's speaker. And a
camera frozen for longer than the server's heartbeat (a stalled link, a suspended device) comes
back: the page takes its fresh peer connection (aiortc has no ICE restart) and shows video again;
so does a camera killed and started again (a crash, a power cut).
"""

from __future__ import annotations

import io
import json
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tests.camera.scene import PASSWORD, Visit, home_visit, last_second, write_tone
from tests.coturn import running_coturn
from tests.e2e.browser import (
    PEER_TRACKER,
    Traffic,
    async_playwright,
    eventually,
    launch,
    media_stats,
    publish_screenshots,
)
from tests.e2e.flows import log_in
from tests.e2e.process import REPO_ROOT
from tests.server import RunningServer

DESKTOP = {"width": 1440, "height": 900}
SCREENSHOT = REPO_ROOT / "artifacts" / "screenshots" / "specialist-headcam.png"
MEDIA_SECONDS = 45.0
"""Bound on each media wait: generous, for a machine running much else."""
UI_TIMEOUT_MS = 20_000

WATCH_VIDEO = """
() => {
  const video = document.getElementById('remote-video');
  window.__videoFrames = 0;
  const count = () => { window.__videoFrames += 1; video.requestVideoFrameCallback(count); };
  video.requestVideoFrameCallback(count);
}
"""

VIDEO = """
() => {
  const video = document.getElementById('remote-video');
  return { frames: window.__videoFrames, width: video.videoWidth, height: video.videoHeight, paused: video.paused };
}
"""

HEARD = """
async () => {
  // The camera may have replaced its connection (a new stream) since the last look.
  const stream = document.getElementById('remote-video').srcObject;
  if (window.__listening?.stream !== stream) {
    window.__listening?.context.close();
    const context = new AudioContext();
    await context.resume();
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    context.createMediaStreamSource(stream).connect(analyser);
    window.__listening = { stream, context, analyser };
  }
  const { context, analyser } = window.__listening;
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let peak = 1;
  for (let i = 1; i < bins.length; i += 1) if (bins[i] > bins[peak]) peak = i;
  const sorted = [...bins].filter(Number.isFinite).sort((a, b) => a - b);
  return {
    hz: (peak * context.sampleRate) / analyser.fftSize,
    peakDb: bins[peak],
    noiseDb: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
  };
}
"""


def loud_tone(tone: float) -> Callable[[dict[str, Any]], bool]:
    """The analyser's loudest bin is ``tone``, far (40 dB) above the median bin."""
    return lambda s: (
        s["noiseDb"] is not None and abs(s["hz"] - tone) < 15 and s["peakDb"] - s["noiseDb"] > 40
    )


@dataclass
class Call:
    visit: Visit
    server_url: str
    consultation: str
    page: Any
    """The specialist's page, in the call."""
    traffic: Traffic
    """What the page loaded and sent on its WebSocket."""
    errors: list[str]
    """Uncaught errors on the page."""

    def sent(self, kind: str) -> int:
        """How many frames of type ``kind`` the page has sent."""
        return sum(json.loads(frame).get("type") == kind for frame in self.traffic.sent_frames if frame.startswith("{"))

    async def camera_video(self, what: str, more_than: int = 0) -> dict[str, Any]:
        """Once the page's video has shown ``more_than`` + 30 frames at the standard profile's size."""
        try:
            return await eventually(
                lambda: self.page.evaluate(VIDEO), lambda v: v["frames"] >= more_than + 30 and v["height"] == 720,
                MEDIA_SECONDS, what)
        except AssertionError as failure:
            failure.add_note(f"camera log:\n{self.visit.camera_log()}")
            raise


@asynccontextmanager
async def head_camera_call(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path, camera: list[str], **settings: Any
) -> AsyncIterator[Call]:
    """coturn, the server (relay only) with ``settings``, ``woundcare camera --loopback-only``
    with ``camera`` arguments, and the specialist's page in its consultation, counting the
    video's frames."""
    playwright_context = async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    specialist_voice = write_tone(tmp_path / "specialist-660.wav", 660, seconds=10)
    async with running_coturn(tmp_path / "coturn") as turn:
        server = await start_server(
            turn_urls=[turn.url], turn_secret=turn.secret, ice_transport_policy="relay", **settings)
        async with home_visit(server, tmp_path) as visit, playwright_context as playwright:
            visit.start_camera(server.url, "--loopback-only", *camera)
            consultation = await visit.find_consultation(30)
            browser = await launch(playwright, f"--use-file-for-fake-audio-capture={specialist_voice}")
            try:
                context = await browser.new_context(viewport=DESKTOP, locale="nb-NO")
                await context.add_init_script(PEER_TRACKER)
                page = await context.new_page()
                call = Call(visit, server.url, consultation, page, Traffic(server.url), [])
                call.traffic.watch(page)
                page.on("pageerror", lambda error: call.errors.append(str(error)))
                page.set_default_timeout(UI_TIMEOUT_MS)
                await log_in(page, server.url, "spes", "/specialist", password=PASSWORD)
                await page.locator(f"#queue-body tr[data-consultation='{consultation}'] button").click()
                await expect(page.locator("#patient-name")).to_have_text("Per Øst")
                await page.evaluate(WATCH_VIDEO)
                yield call
                assert not call.errors, call.errors
                assert not call.traffic.foreign, call.traffic.foreign
            finally:
                await browser.close()


async def test_the_specialist_page_sees_and_hears_the_head_camera(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    nurse_voice = write_tone(tmp_path / "nurse-440.wav", 440, seconds=120)
    speaker = tmp_path / "speaker.wav"
    camera = ["--width", "1920", "--height", "1080", "--microphone", str(nurse_voice), "--speaker", str(speaker)]
    async with head_camera_call(start_server, tmp_path, camera) as call:
        page, visit = call.page, call.visit
        # --- the camera's video, through the relay, at the standard profile's size -------------
        shown = await call.camera_video("the page's video shows frames of the standard profile")
        assert (shown["width"], shown["height"]) == (1280, 720) and not shown["paused"], shown
        stats = await media_stats(page)
        assert stats["relay"] and stats["framesDecoded"] > 0, stats
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        await expect(page.locator("#video-profile")).to_have_text("Standard bilde")  # the camera said so
        # Figures from the camera's stream (the first after two 4 s samples; the level depends on the ramp-up).
        await expect(page.locator("#quality")).to_have_attribute(
            "data-level", re.compile("good|fair|poor"), timeout=MEDIA_SECONDS * 1000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT))
        publish_screenshots(SCREENSHOT)

        # --- the nurse's microphone, heard in the page -----------------------------------------
        await eventually(lambda: page.evaluate(HEARD), loud_tone(440), MEDIA_SECONDS,
                         "the page hears the camera's 440 Hz tone")

        # --- a still requested from the page, stored at the camera's full size -----------------
        await page.click("#request-snapshot")

        async def requested() -> list[dict[str, Any]]:
            listed = await visit.spes.json("GET", f"/api/consultations/{call.consultation}/snapshots")
            return [s for s in listed["snapshots"] if s["request"]]

        [snapshot] = await eventually(requested, lambda found: len(found) == 1, MEDIA_SECONDS,
                                      "the requested still is stored")
        response = await visit.spes.request("GET", f"/api/snapshots/{snapshot['id']}")
        assert response.status == 200
        assert Image.open(io.BytesIO(await response.read())).size == (1920, 1080)
        await expect(page.locator("#notice")).to_have_attribute("data-i18n", "specialist.snapshot.stored")
        more = await page.evaluate(VIDEO)
        assert more["frames"] > shown["frames"], (shown, more)

        # --- the specialist's voice on the camera's speaker: over a second of it ---------------
        await eventually(lambda: _size(speaker), lambda size: size > 400_000, MEDIA_SECONDS,
                         "the camera's speaker plays the specialist")
        assert await visit.stop_camera() == 0, visit.camera_log()
    # Chromium's noise suppression takes a steady tone for noise and turns it down (about
    # 25 dB in 3 s), so what counts is that the sound is that tone and not silence.
    heard = last_second(speaker)
    assert abs(heard.hertz - 660) < 10 and heard.purity > 0.8 and heard.level > 100, heard


async def test_the_page_gets_the_head_camera_back_after_a_freeze(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    # The server pings every 12 s, so the page's ICE restart request reaches the frozen camera's
    # socket before the server drops it: the camera reads it on waking, as after a stalled link.
    camera = ["--width", "1280", "--height", "720"]  # what the page gets anyway, for less work
    async with head_camera_call(start_server, tmp_path, camera, heartbeat_seconds=12.0) as call:
        page, visit = call.page, call.visit
        shown = await call.camera_video("the page's video shows the camera")
        assert visit.camera is not None
        visit.camera.send_signal(signal.SIGSTOP)
        try:
            await expect(page.locator("#status")).to_have_attribute("data-state", "mediaReconnecting")
            await eventually(lambda: call.sent("ice_restart"), lambda n: n > 0, MEDIA_SECONDS,
                             "the page asks the frozen camera to restart")
            # The server dropped the camera; it keeps its place for a resume.
            await expect(page.locator("#participants")).to_contain_text("kobler til igjen", timeout=MEDIA_SECONDS * 1000)
        finally:
            visit.camera.send_signal(signal.SIGCONT)
        await call.camera_video("the page's video shows the camera again", more_than=(await page.evaluate(VIDEO))["frames"])
        visit.assert_camera_running()
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        peers = await page.evaluate("() => window.__testPeers.map((pc) => pc.connectionState)")
        assert peers[-1] == "connected" and len(peers) >= 2, peers  # a fresh connection, not a restart
        assert shown["frames"] > 0
        assert "offering fresh peer connections" in visit.camera_log()
        assert await visit.stop_camera() == 0, visit.camera_log()


async def test_a_restarted_head_camera_comes_back_on_the_page(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    # A crash or a power cut: the camera's place is held for a resume that will never come,
    # for 3 s here (60 s by default); the restarted camera waits for it and joins afresh.
    camera = ["--width", "1280", "--height", "720"]
    async with head_camera_call(start_server, tmp_path, camera, grace_seconds=3.0) as call:
        page, visit = call.page, call.visit
        await call.camera_video("the page's video shows the camera")
        crashing = visit.camera
        assert crashing is not None
        try:
            # Started before the old one dies, so that it surely finds the place held.
            visit.start_camera(call.server_url, "--loopback-only", *camera, consultation=call.consultation)
            await eventually(lambda: visit.camera_log(), lambda log: "place is still held" in log,
                             MEDIA_SECONDS, "the second camera finds the place held")
        finally:
            crashing.kill()
            crashing.wait()
        await call.camera_video("the page's video shows the restarted camera",
                                more_than=(await page.evaluate(VIDEO))["frames"])
        visit.assert_camera_running()
        await expect(page.locator("#status")).to_have_attribute("data-state", "live")
        await expect(page.locator("#participants li")).to_have_count(2)
        assert await visit.stop_camera() == 0, visit.camera_log()



def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
