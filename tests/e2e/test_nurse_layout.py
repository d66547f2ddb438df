"""The nurse's call screen in real Chromium, on a phone (390x844 portrait) and a head-mounted
camera's browser (RealWear, 854x480 landscape), in Norwegian and English.

- Layout: on the pre-call screens (login, patient, the register form, identity and consent) and
  after Start, no visible element reaches outside the viewport horizontally and the page does
  not scroll sideways; after Start the status, the picture and the main controls lie inside the
  first screen without the test scrolling (the page scrolls itself to the call), and every
  control is at least 64 px in both directions (gloved hands); also with every optional
  control shown and the longest label.
- In a live call with a specialist: a chat line appears over the picture (with a tone and a
  vibration), in both orientations, the page coming back to the call after each turn; a
  requested photo is preceded by 3, 2, 1 and "hold still", and uploaded only after it; while
  the specialist records the call, "Opptak pågår" shows over the picture, and goes with the
  recording's end.

Screenshots ``nurse-call-phone.png`` and ``nurse-call-headset.png`` go to
``artifacts/screenshots/`` and, with ``make screenshots``, to ``docs/screenshots/``.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.browser import async_playwright, eventually, launch, publish_screenshots
from tests.e2e.flows import (
    PASSWORD,
    UI_TIMEOUT_MS,
    call_in_two_browsers,
    confirm_and_consent,
    log_in,
    register_patient,
)
from tests.e2e.process import REPO_ROOT
from tests.server import RunningServer
from woundcare.db.models import StaffRole

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
PHONE_PORTRAIT = {"width": 390, "height": 844}
HEADSET = {"width": 854, "height": 480}
"""RealWear Navigator's display, landscape."""
SCREENS = {"phone": PHONE_PORTRAIT, "headset": HEADSET}
LOCALES = {"nb": "nb-NO", "en": "en-US"}
MIN_CONTROL_PX = 64
MAIN_PARTS = ("#status", "#stage", "#snapshot", "#mute", "#end")
"""What must be on the first screen after Start: the state, the picture, the main controls."""
OPTIONAL_CONTROLS = ("#switch-camera", "#torch", "#overlay-toggle")
"""Shown only when the camera offers them (a second camera, a torch, an earlier photo)."""
MARKS = ("#recording-badge",)
"""Shown over the picture only at times: while the call is recorded."""

OUTSIDE_HORIZONTALLY = """
() => {
  const width = document.documentElement.clientWidth;
  const outside = [];
  for (const element of document.body.querySelectorAll('*')) {
    const box = element.getBoundingClientRect();
    if (element.getClientRects().length === 0 || box.width === 0 || box.height === 0) continue;
    if (getComputedStyle(element).visibility === 'hidden') continue;
    if (box.left < -0.5 || box.right > width + 0.5) {
      // Tag, id and classes only: never the text, which may be a patient's name.
      outside.push(`${element.tagName.toLowerCase()}#${element.id}.${[...element.classList].join('.')}`
        + ` [${Math.round(box.left)}, ${Math.round(box.right)}] of ${width}`);
    }
  }
  const page = document.documentElement;
  if (page.scrollWidth > width || window.scrollX !== 0) outside.push(`page ${page.scrollWidth} wide, scrolled ${window.scrollX}`);
  return outside;
}
"""
"""Every rendered element whose box reaches past the left or right edge, and sideways scrolling."""

OFF_FIRST_SCREEN = """
(selectors) => selectors.flatMap((selector) => {
  const element = document.querySelector(selector);
  if (!element || element.getClientRects().length === 0) return [`${selector} not shown`];
  const box = element.getBoundingClientRect();
  const inside = box.left >= -0.5 && box.top >= -0.5
    && box.right <= window.innerWidth + 0.5 && box.bottom <= window.innerHeight + 0.5;
  return inside ? [] : [`${selector} at [${Math.round(box.left)}, ${Math.round(box.top)}, ${Math.round(box.right)}, ${Math.round(box.bottom)}] of ${window.innerWidth}x${window.innerHeight}`];
})
"""
"""The selectors whose element is not entirely inside the viewport as it is now scrolled."""

SMALL_CONTROLS = """
(least) => [...document.querySelectorAll('.controls button')]
  .filter((b) => b.getClientRects().length > 0)
  .map((b) => [b.id, b.getBoundingClientRect()])
  .filter(([, box]) => box.width < least || box.height < least)
  .map(([id, box]) => `#${id} ${Math.round(box.width)}x${Math.round(box.height)}`)
"""

OVER_THE_PICTURE = """
(selector) => {
  const stage = document.getElementById('stage').getBoundingClientRect();
  const element = document.querySelector(selector);
  const box = element.getBoundingClientRect();
  return {
    inStage: box.left >= stage.left - 0.5 && box.right <= stage.right + 0.5
      && box.top >= stage.top - 0.5 && box.bottom <= stage.bottom + 0.5,
    inViewport: box.top >= 0 && box.bottom <= window.innerHeight && box.left >= 0 && box.right <= window.innerWidth,
  };
}
"""
"""Whether the element's box lies within the picture's and the viewport's."""

RECORDER = """
(() => {
  const seen = { digits: [], hiddenAt: null, uploads: [], tones: [], vibrations: [] };
  Object.defineProperty(window, '__nurseScreen', { value: seen });
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) { seen.tones.push(this.frequency.value); return start.apply(this, args); };
  const vibrate = Navigator.prototype.vibrate;
  Navigator.prototype.vibrate = function (pattern) { seen.vibrations.push(pattern); return vibrate ? vibrate.call(this, pattern) : true; };
  const fetchNative = window.fetch;
  window.fetch = function (input, init) {
    const url = String(input instanceof Request ? input.url : input);
    if ((init?.method ?? 'GET') === 'POST' && url.endsWith('/snapshots')) seen.uploads.push(performance.now());
    return fetchNative.call(this, input, init);
  };
  document.addEventListener('DOMContentLoaded', () => {
    const number = document.getElementById('countdown-number');
    const box = document.getElementById('countdown');
    if (!number || !box) return; // the login page
    new MutationObserver(() => {
      if (number.textContent) seen.digits.push([number.textContent, performance.now()]);
    }).observe(number, { childList: true, characterData: true, subtree: true });
    new MutationObserver(() => {
      if (box.hidden && seen.digits.length) seen.hiddenAt = performance.now();
    }).observe(box, { attributes: true, attributeFilter: ['hidden'] });
  });
})();
"""
"""Observes the nurse's page: countdown digits and when the countdown went away, snapshot uploads,
tones started and vibrations asked for (page clock, milliseconds)."""


async def light_share(locator: Any) -> float:
    """The share of near-white pixels where the element is on screen, as painted: a chat line's
    white card reads as light only when it is drawn over the picture, not under it."""
    rgb = Image.open(io.BytesIO(await locator.screenshot())).convert("RGB").tobytes()
    light = sum(min(rgb[i : i + 3]) > 220 for i in range(0, len(rgb), 3))
    return light / (len(rgb) // 3)


async def assert_fits(page: Any, where: str) -> None:
    outside = await page.evaluate(OUTSIDE_HORIZONTALLY)
    assert not outside, f"{where}: outside the viewport horizontally: {outside}"


async def assert_call_screen(page: Any, where: str, *also: str) -> None:
    """No horizontal overflow; status, picture, main controls (and ``also``) on the first
    screen; big controls."""
    await assert_fits(page, where)
    off = await page.evaluate(OFF_FIRST_SCREEN, [*MAIN_PARTS, *also])
    assert not off, f"{where}: not on the first screen: {off}"
    small = await page.evaluate(SMALL_CONTROLS, MIN_CONTROL_PX)
    assert not small, f"{where}: controls under {MIN_CONTROL_PX} px: {small}"


@pytest.mark.parametrize("language", list(LOCALES))
@pytest.mark.parametrize("screen", list(SCREENS))
async def test_the_nurse_pages_fit_the_screen(
    start_server: Callable[..., Awaitable[RunningServer]], screen: str, language: str
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    server = await start_server()
    await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
    # Long enough to wrap: the identity card must grow downwards, not sideways.
    name = "Kari-Mette Nordmann Haugland-Christophersen"
    page_errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            context = await browser.new_context(viewport=SCREENS[screen], locale=LOCALES[language])
            page = await context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            where = f"{screen} {language}"

            await page.goto(server.url + "/")
            await expect(page.locator("html")).to_have_attribute("lang", language)
            await assert_fits(page, f"{where} login")
            await log_in(page, server.url, "sykepleier", "/nurse")
            await assert_fits(page, f"{where} patient")
            await page.click("#register-toggle")
            await assert_fits(page, f"{where} register form")
            await page.click("#register-toggle")
            await register_patient(page, "01038011568", name)
            await confirm_and_consent(page, "snapshots", "recording")
            await expect(page.locator("#start")).to_be_enabled()
            await assert_fits(page, f"{where} identity and consent")
            # For a reviewer's eye (artifacts only): the identity card as the nurse reads it.
            await page.locator("#identity").screenshot(path=str(SCREENSHOTS / f"nurse-identity-{screen}-{language}.png"))

            await page.click("#start")
            await expect(page.locator("#status")).to_have_attribute("data-state", "waiting")
            await eventually(
                lambda: page.evaluate("document.getElementById('local-video').videoWidth"),
                lambda width: width > 0, 10, "the nurse sees her own camera")
            await assert_call_screen(page, f"{where} call")
            # The page scrolled itself past the top bar: the call screen starts at the top.
            top = await page.evaluate("document.getElementById('call-screen').getBoundingClientRect().top")
            assert abs(top) < 1, f"{where}: the call screen starts {top} px from the top"
            # The worst case: the longest label (the end button armed by a first tap), every
            # control a camera may offer (the fake camera has none of them, so they are shown
            # here by hand) and the recording mark: still all on the first screen, the mark
            # over the picture.
            await page.click("#end")
            await expect(page.locator("#end")).to_have_attribute("data-armed", "true")
            await page.evaluate("(ids) => ids.forEach((id) => { document.querySelector(id).hidden = false; })",
                                [*OPTIONAL_CONTROLS, *MARKS])
            await assert_call_screen(page, f"{where} call, every control", *OPTIONAL_CONTROLS, *MARKS)
            for mark in MARKS:
                placed = await page.evaluate(OVER_THE_PICTURE, mark)
                assert placed == {"inStage": True, "inViewport": True}, f"{where} {mark}: {placed}"
        finally:
            await browser.close()
    assert not page_errors, page_errors


async def test_chat_shows_over_the_picture_and_a_requested_photo_counts_down(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    async with call_in_two_browsers(
        start_server, tmp_path, nurse_script=RECORDER, consents=("snapshots", "recording")
    ) as call:
        nurse, specialist = call.nurse, call.specialist
        await expect(nurse.locator("#status")).to_have_attribute("data-state", "live")

        # --- chat over the picture, in both orientations (turning brings the call back) -------
        for screen, line in (
            ("headset", "Kan du vise sårkanten nærmere?"),
            ("phone", "Hold kameraet litt lenger unna."),
        ):
            await nurse.set_viewport_size(SCREENS[screen])
            await eventually(
                lambda: nurse.evaluate(OFF_FIRST_SCREEN, list(MAIN_PARTS)), lambda off: not off,
                5, f"the {screen} turned: the call screen comes back into view")
            await specialist.fill("#chat-text", line)
            await specialist.press("#chat-text", "Enter")
            toast = nurse.locator("#chat-toasts li").filter(has_text=line)
            await expect(toast).to_be_visible()
            await expect(toast).to_contain_text("Test spesialist")
            placed = await nurse.evaluate(OVER_THE_PICTURE, "#chat-toasts")
            assert placed == {"inStage": True, "inViewport": True}, f"{screen}: {placed}"
            light = await light_share(toast)
            assert light > 0.5, f"{screen}: the chat line is not painted over the picture ({light:.0%} light)"
            await expect(nurse.locator("#chat-log")).to_contain_text(line)
            await assert_call_screen(nurse, f"{screen} live call")
            shot = SCREENSHOTS / f"nurse-call-{screen}.png"
            await nurse.screenshot(path=str(shot))
            shots.append(shot)
        seen = await nurse.evaluate("window.__nurseScreen")
        assert len(seen["vibrations"]) == 2 and all(v > 0 for v in seen["vibrations"]), seen["vibrations"]
        # The Start tap allowed sound: each message chimed.
        assert len(seen["tones"]) >= 2, seen["tones"]
        # The message goes after a while, and the picture is clear again.
        await expect(nurse.locator("#chat-toasts li")).to_have_count(0, timeout=15_000)

        # --- a requested photo: 3, 2, 1, hold still, then the upload -------------------------
        await specialist.click("#request-snapshot")
        countdown = nurse.locator("#countdown")
        await expect(countdown).to_be_visible()
        await expect(countdown).to_contain_text("Hold stille")
        placed = await nurse.evaluate(OVER_THE_PICTURE, "#countdown")
        assert placed == {"inStage": True, "inViewport": True}, placed
        await expect(countdown).to_be_hidden(timeout=10_000)
        await expect(nurse.locator("#notice")).to_have_attribute("data-i18n", "nurse.snapshot.stored")
        await expect(specialist.locator("#snapshot-strip li")).to_have_count(1)
        seen = await nurse.evaluate("window.__nurseScreen")
        digits = [digit for digit, _ in seen["digits"]]
        assert digits == ["3", "2", "1"], digits
        first_shown = seen["digits"][0][1]
        assert seen["hiddenAt"] is not None and seen["hiddenAt"] - first_shown >= 2900, seen
        assert len(seen["uploads"]) == 1 and seen["uploads"][0] >= seen["hiddenAt"], seen

        # --- a recording: the nurse sees it over the picture while it lasts -------------------
        badge = nurse.locator("#recording-badge")
        await expect(badge).to_be_hidden()
        await specialist.click("#recording-toggle")
        await expect(specialist.locator("#recording-toggle")).to_have_attribute("aria-pressed", "true")
        await expect(badge).to_be_visible()
        await expect(badge).to_have_text("Opptak pågår")
        placed = await nurse.evaluate(OVER_THE_PICTURE, "#recording-badge")
        assert placed == {"inStage": True, "inViewport": True}, placed
        await assert_call_screen(nurse, "phone, recorded", "#recording-badge")
        await expect(specialist.locator("#recording-badge")).to_be_visible()
        await specialist.click("#recording-toggle")
        await expect(specialist.locator("#recording-toggle")).to_have_attribute("aria-pressed", "false")
        await expect(badge).to_be_hidden()
        await expect(specialist.locator("#recording-badge")).to_be_hidden()
    assert not call.page_errors, call.page_errors
    publish_screenshots(*shots)
