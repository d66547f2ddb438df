"""The specialist page's recording panel in a real Chromium: a stored recording plays in the
page's player (decrypted by the server, decoded by the browser), and recording is started and
stopped from the call (with no camera in it, nothing is kept)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.browser import async_playwright, eventually, launch
from tests.recording.media import stored_recording
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import ConsentKind
from woundcare.db.models import StaffRole

PASSWORD = "browser test password"
UI_TIMEOUT_MS = 15_000

PLAYER = """
() => { const v = document.getElementById('recording-player');
        return { ready: v.readyState, width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code }; }
"""


async def test_the_specialist_plays_back_and_records_from_the_page(server: RunningServer, tmp_path: Path) -> None:
    from playwright.async_api import expect

    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    consultation = await server.new_consultation("east")
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    await server.app[SERVICES].consents.record(consultation, view.patient_id, view.region_id, {ConsentKind.RECORDING: True}, "u0")
    await stored_recording(server, consultation, frames=30, size=(160, 120))

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page = await (await browser.new_context(locale="en-GB")).new_page()
            await page.goto(server.url + "/")
            await page.evaluate("localStorage.setItem('woundcare.lang', 'en')")
            await page.fill("#username", "spes")
            await page.fill("#password", PASSWORD)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_url(server.url + "/specialist", timeout=UI_TIMEOUT_MS)
            await page.locator(f"#queue-body tr[data-consultation='{consultation}'] button").click()

            toggle = page.locator("#recording-toggle")
            await expect(page.locator("#recording-status")).to_have_attribute(
                "data-i18n", "recording.idle", timeout=UI_TIMEOUT_MS)
            await expect(toggle).to_have_text("Record video")
            play = page.locator("#recording-list button")
            await expect(play).to_have_count(1)
            await play.click()
            player = await eventually(lambda: page.evaluate(PLAYER), lambda p: p["ready"] >= 2 or p["error"],
                                      20, "the recording decoded in the page's player")
            assert (player["width"], player["height"], player["error"]) == (160, 120, None)

            await toggle.click()
            await expect(toggle).to_have_attribute("aria-pressed", "true", timeout=UI_TIMEOUT_MS)
            await expect(toggle).to_have_text("Stop recording")
            await toggle.click()
            await expect(toggle).to_have_attribute("aria-pressed", "false", timeout=UI_TIMEOUT_MS)
            # No camera sent video to this one, so nothing was kept.
            await expect(page.locator("#recording-list .recording-failed")).to_have_count(1)
        finally:
            await browser.close()
