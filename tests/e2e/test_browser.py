"""The pages in two real browsers: a nurse's phone and a specialist's desktop, in one call.

Two headless Chromiums with fake cameras, media relayed through a local coturn (the server
tells the browsers ``iceTransportPolicy: relay``, which keeps WebRTC on loopback). The test
walks a whole consultation through the UI: login, patient registration, identity and consent,
the live queue, video both ways, the nurse offline for 10 s (reconnecting, a snapshot queued
on the device, resume, ICE restart, video again, no new consultation), a requested snapshot
stored encrypted, annotation with measurement, the signed assessment, the end; then reads the
record back through the API. No page may load anything from outside the server. Screenshots
go to ``artifacts/screenshots/`` and, after a passing run, to ``docs/screenshots/``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.api.client import ApiClient
from tests.coturn import running_coturn
from tests.e2e.browser import (
    Traffic,
    async_playwright,
    eventually,
    media_stats,
    publish_screenshots,
    two_browsers,
)
from tests.e2e.flows import (
    MEDIA_SECONDS,
    NATIONAL_ID,
    PASSWORD,
    PATIENT,
    UI_TIMEOUT_MS,
    confirm_and_consent,
    consultation_count,
    log_in,
    quality_samples,
    register_patient,
)
from tests.e2e.process import REPO_ROOT
from tests.server import RunningServer
from woundcare.db.models import StaffRole

OFFLINE_SECONDS = 10.0
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"


async def drag(page: Any, points: list[tuple[float, float]]) -> None:
    """Press at the first point, move through the rest, release: one pointer stroke."""
    await page.mouse.move(*points[0])
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*point, steps=2)
    await page.mouse.up()


async def annotate(page: Any) -> None:
    """A 2 cm reference, the wound's outline (a 24-gon), an arrow and a text label."""
    canvas = page.locator("#annotate-canvas")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    assert box, "the annotation canvas is not on screen"
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    await page.click("[data-tool=reference]")
    await page.fill("#reference-cm", "2")
    await page.press("#reference-cm", "Tab")
    await drag(page, [(x + 0.1 * w, y + 0.85 * h), (x + 0.3 * w, y + 0.85 * h)])
    await page.click("[data-tool=wound]")
    cx, cy, r = x + 0.55 * w, y + 0.45 * h, 0.2 * min(w, h)
    loop = [(cx + r * math.cos(2 * math.pi * k / 24), cy + 0.7 * r * math.sin(2 * math.pi * k / 24)) for k in range(24)]
    await drag(page, loop)
    await page.click("[data-tool=arrow]")
    await drag(page, [(x + 0.2 * w, y + 0.2 * h), (cx - r, cy)])
    await page.click("[data-tool=text]")
    await page.fill("#annotate-label", "Fibrin")
    await page.mouse.click(x + 0.7 * w, y + 0.15 * h)


async def test_consultation_in_two_browsers(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    playwright_context = async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    async def shoot(page: Any, name: str, *, full_page: bool = False) -> None:
        path = SCREENSHOTS / f"{name}.png"
        if not full_page:
            # Where the page puts itself: the top, or the nurse's call screen once in a call.
            await page.evaluate("""() => {
              const call = document.getElementById('call-screen');
              if (call && call.getClientRects().length) call.scrollIntoView({ block: 'start' });
              else window.scrollTo(0, 0);
            }""")
        await page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    async with running_coturn(tmp_path / "coturn") as turn:
        server = await start_server(turn_urls=[turn.url], turn_secret=turn.secret, ice_transport_policy="relay")
        await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
        await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST})
        origin = server.url
        traffic = Traffic(origin)
        page_errors: list[str] = []
        async with playwright_context as playwright:
            async with two_browsers(playwright) as (nurse_context, specialist_context):
                nurse = await nurse_context.new_page()
                specialist = await specialist_context.new_page()
                for page in (nurse, specialist):
                    traffic.watch(page)
                    page.on("pageerror", lambda error: page_errors.append(str(error)))
                    page.set_default_timeout(UI_TIMEOUT_MS)

                # --- the nurse: login, patient, identity, consent, start ----------------------
                await nurse.goto(origin + "/")
                await expect(nurse.locator("#login-form h1")).to_have_text("Logg inn")
                await expect(nurse.locator("#oidc-link")).to_be_hidden()
                await shoot(nurse, "login-phone")
                await log_in(nurse, origin, "sykepleier", "/nurse")
                await register_patient(nurse, NATIONAL_ID, PATIENT)
                await expect(nurse.locator("#identity-name")).to_have_text(PATIENT)
                await expect(nurse.locator("#identity-nid")).to_have_text(NATIONAL_ID)
                await expect(nurse.locator("#start")).to_be_disabled()
                await confirm_and_consent(nurse, "snapshots")
                await shoot(nurse, "nurse-setup")
                await nurse.click("#start")
                await expect(nurse.locator("#status")).to_have_attribute("data-state", "waiting")

                # --- the specialist: the queue updates by itself; join ------------------------
                await log_in(specialist, origin, "spesialist", "/specialist")
                row = specialist.locator("#queue-body tr")
                await expect(row).to_have_count(1)
                await expect(row.locator(".queue-patient")).to_have_text(PATIENT)
                await shoot(specialist, "specialist-queue")
                consultation = await row.get_attribute("data-consultation")
                assert consultation
                consultations = await consultation_count(server)
                await row.locator("button").click()
                await expect(specialist.locator("#patient-name")).to_have_text(PATIENT)

                # --- media both ways, through the TURN relay ----------------------------------
                await eventually(
                    lambda: media_stats(specialist), lambda s: s["framesDecoded"] > 0 and s["relay"],
                    MEDIA_SECONDS, "the specialist decodes the nurse's video over the relay")
                sent = await eventually(
                    lambda: media_stats(nurse), lambda s: s["framesSent"] > 0 and s["audioPacketsReceived"] > 0,
                    MEDIA_SECONDS, "the nurse sends video and hears the specialist")
                assert sent["relay"], sent
                await expect(nurse.locator("#status")).to_have_attribute("data-state", "live")
                await expect(specialist.locator("#status")).to_have_attribute("data-state", "live")
                await expect(specialist.locator("#participants li")).to_have_count(2)
                await expect(nurse.locator("#participants li")).to_have_count(2)
                await expect(nurse.locator("#participants")).to_contain_text("Test spesialist")
                await expect(specialist.locator("#participants")).to_contain_text("Test sykepleier")
                # The level depends on how far the bitrate has ramped up; that there are numbers is the point.
                await expect(nurse.locator("#quality")).to_have_attribute("data-level", re.compile("good|fair|poor"))
                await expect(specialist.locator("#quality")).to_have_attribute("data-level", re.compile("good|fair|poor"))
                await specialist.fill("#chat-text", "Kan du vise sårkanten nærmere?")
                await specialist.press("#chat-text", "Enter")
                await expect(nurse.locator("#chat-log")).to_contain_text("Kan du vise sårkanten nærmere?")
                await shoot(nurse, "nurse-call")

                # --- the specialist pins the low-bandwidth profile; the nurse's browser obeys -
                def video_limits() -> Awaitable[list[dict[str, Any]]]:
                    return nurse.evaluate("""() => window.__testPeers
                      .filter((pc) => pc.connectionState !== 'closed')
                      .flatMap((pc) => pc.getSenders().filter((s) => s.track?.kind === 'video'))
                      .map((s) => s.getParameters().encodings[0] ?? {})""")

                await specialist.select_option("#video-mode", "low")
                await expect(specialist.locator("#video-profile")).to_have_attribute(
                    "data-i18n", "specialist.video.active.low")
                await expect(nurse.locator("#notice")).to_have_attribute("data-i18n", "nurse.video.low")
                [limits] = await eventually(
                    video_limits, lambda found: len(found) == 1 and found[0].get("maxBitrate") == 300_000,
                    MEDIA_SECONDS, "the nurse's sender takes the low profile's limits")
                # The fake camera's 640x480 fits 640x360 when scaled by 4/3.
                assert limits["maxFramerate"] == 15 and limits["scaleResolutionDownBy"] >= 4 / 3 - 0.01, limits
                await specialist.select_option("#video-mode", "auto")
                await expect(specialist.locator("#video-profile")).to_have_attribute(
                    "data-i18n", re.compile(r"specialist\.video\.active\."))

                # --- the nurse offline for 10 s: reconnecting, a photo queued, then recovery ---
                frames_before = (await media_stats(specialist))["framesDecoded"]
                offline_at = time.monotonic()
                await nurse_context.set_offline(True)
                await expect(nurse.locator("#status")).to_have_attribute("data-state", "reconnecting")
                await nurse.click("#snapshot")
                await expect(nurse.locator("#outbox")).to_have_attribute("data-i18n", "nurse.outbox.waiting")
                await shoot(nurse, "nurse-reconnecting")
                await asyncio.sleep(max(0.0, OFFLINE_SECONDS - (time.monotonic() - offline_at)))
                await nurse_context.set_offline(False)
                await expect(nurse.locator("#status")).to_have_attribute("data-state", "live", timeout=30_000)
                frames_back = (await media_stats(specialist))["framesDecoded"]
                assert frames_back >= frames_before
                await eventually(
                    lambda: media_stats(specialist), lambda s: s["framesDecoded"] > frames_back + 20,
                    MEDIA_SECONDS, "video frames are decoded again after the nurse came back")
                await expect(nurse.locator("#outbox")).to_have_text("")
                assert await consultation_count(server) == consultations, "the reconnect created a consultation"
                frames = [json.loads(f) for f in traffic.sent_frames if f.startswith("{")]
                assert any(f["type"] == "join" and f.get("resume") for f in frames), "the nurse did not resume"
                assert any(f["type"] == "offer" and f["restart"] is True for f in frames), "no ICE restart was sent"
                # Only the specialist answers: the first offer's answer and the restart's.
                assert sum(f["type"] == "answer" for f in frames) >= 2, "the ICE restart was not answered"
                del frames

                # --- a requested snapshot, stored encrypted, annotated and measured -----------
                await specialist.click("#request-snapshot")
                await expect(specialist.locator("#annotate-view")).to_be_visible()
                await expect(specialist.locator("#snapshot-strip li")).to_have_count(2)
                await annotate(specialist)
                await specialist.click("#annotate-save")
                await expect(specialist.locator("#measurement")).to_have_attribute("data-i18n", "measure.full")

                # --- the assessment, signed; the consultation ended ---------------------------
                form = specialist.locator("#assessment-form")
                await form.locator("select[name=woundType]").select_option("venous_leg_ulcer")
                await form.locator("input[name=location]").fill("Venstre legg, medialt")
                await specialist.click("#use-measurement")
                await form.locator("input[name=granulation]").fill("70")
                await form.locator("input[name=slough]").fill("30")
                await form.locator("select[name=exudate]").select_option("moderate")
                await form.locator("input[name=infectionSigns][value=erythema]").check()
                await form.locator("textarea[name=treatmentPlan]").fill("Kompresjon, skift to ganger i uken.")
                await form.locator("input[name=outcome][value=treated_at_home]").check()
                await specialist.click("#sign-assessment")
                await expect(specialist.locator("#assessment-status")).to_have_attribute("data-i18n", "assessment.signed")
                await shoot(specialist, "specialist-call")
                await shoot(specialist, "specialist-call-full", full_page=True)
                await specialist.click("#end")
                await specialist.click("#end")
                await expect(specialist.locator("#call-ended")).to_be_visible()
                await expect(nurse.locator("#ended-reason")).to_have_attribute("data-i18n", "nurse.ended.ended")
                await shoot(nurse, "nurse-ended")

        # --- the record, read back through the API ----------------------------------------
        api = ApiClient(origin)
        try:
            await api.login("spesialist", PASSWORD)
            record = await api.json("GET", f"/api/consultations/{consultation}")
            assert record["status"] == "ended" and record["endedAt"], record
            assessment = await api.json("GET", f"/api/consultations/{consultation}/assessment")
            assert assessment["signedAt"] and assessment["outcome"] == "treated_at_home", assessment
            assert assessment["woundType"] == "venous_leg_ulcer"
            assert assessment["tissue"] == {"granulation": 70, "slough": 30}
            snapshots = (await api.json("GET", f"/api/consultations/{consultation}/snapshots"))["snapshots"]
            assert len(snapshots) == 2, snapshots
            requested = [s for s in snapshots if s["request"]]
            assert len(requested) == 1, snapshots
            measured = requested[0]
            assert measured["measurement"] and measured["measurement"]["areaCm2"] > 0, measured
            assert {item["kind"] for item in measured["annotations"]["items"]} == {"arrow", "text"}
            assert measured["annotations"]["reference"]["lengthCm"] == 2
            assert assessment["size"]["lengthCm"] == measured["measurement"]["lengthCm"]
            image = await api.request("GET", f"/api/snapshots/{measured['id']}")
            assert image.status == 200 and image.content_type.startswith("image/")
            plain = await image.read()
            timeline = await api.json("GET", f"/api/patients/{record['patient']}/timeline")
            assert [e["kind"] for e in timeline["entries"]].count("snapshot") == 2
        finally:
            await api.close()
        blobs = [p for p in server.settings.blob_dir.rglob("*") if p.is_file()]
        assert blobs, "no blobs were stored"
        for blob in blobs:
            data = blob.read_bytes()
            assert not data.startswith((b"\xff\xd8", b"\x89PNG", b"RIFF")) and plain[:64] not in data, "a blob is not sealed"
        samples = await quality_samples(server, consultation)
        assert ("nurse", "send") in samples and ("specialist", "receive") in samples, samples

    assert not traffic.foreign, f"pages loaded from outside the server: {traffic.foreign}"
    assert not page_errors, page_errors
    publish_screenshots(*shots)


async def test_pages_carry_a_strict_policy(start_server: Callable[..., Awaitable[RunningServer]]) -> None:
    """HTML is never cached, every answer forbids loading from elsewhere, and /static/ serves
    only the asset folders of web/."""
    server = await start_server()
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/nurse", "/specialist"):
            async with session.get(server.url + path) as response:
                assert response.status == 200 and response.content_type == "text/html"
                assert response.headers["Cache-Control"] == "no-store"
                policy = response.headers["Content-Security-Policy"]
                assert "default-src 'self'" in policy and "connect-src 'self';" in policy
        async with session.get(server.url + "/static/js/signaling.js") as response:
            assert response.status == 200 and response.content_type == "text/javascript"
            assert "Content-Security-Policy" in response.headers
        for path in ("/static/../woundcare/config.py", "/static/%2e%2e/pyproject.toml", "/static/nurse.html"):
            async with session.get(server.url + path) as response:
                assert response.status == 404, path
