"""A nurse who leaves her call page comes back into the same consultation (issue 14).

Two headless Chromiums over the local coturn (relay only), as in test_browser.py: a nurse's
phone and a specialist's desktop in one call. The nurse then

1. taps Log out and is asked first (in Norwegian, then in English); saying no keeps the call;
2. reloads the page (asked first): the page resumes the same participant, the specialist sees
   her reconnecting, then rejoined, and video again; the consents still hold;
3. logs out (saying yes), logs in again and presses Start for the same patient: refused with
   the offer to rejoin, and Rejoin takes her back into the call;
4. closes the tab and opens the page in a new one, which has no resume token: Rejoin joins
   the same consultation afresh once the old place's grace window is over (a screenshot of
   the offer goes to ``artifacts/screenshots/``).

Through it all the record holds one consultation.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.coturn import running_coturn
from tests.e2e.browser import Traffic, async_playwright, eventually, media_stats, publish_screenshots, two_browsers
from tests.e2e.flows import (
    NATIONAL_ID,
    PASSWORD,
    PATIENT,
    UI_TIMEOUT_MS,
    confirm_and_consent,
    consultation_count,
    log_in,
    start_consultation,
)
from tests.e2e.process import REPO_ROOT
from tests.server import RunningServer
from woundcare.db.models import StaffRole

GRACE_SECONDS = 20.0
"""Short, so that the new-tab return (which must wait the window out) stays quick; long
enough for a reload, or a logout and login, to resume inside it on a loaded machine."""
MEDIA_SECONDS = 30.0
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
LOGOUT_QUESTION = {"nb": "Logge ut likevel?", "en": "Log out anyway?"}
REJOIN = {"nb": ("Pågående konsultasjon", "Gå inn igjen"), "en": ("Consultation in progress", "Rejoin")}
"""The offer's heading and button."""
HEARD = """() => [...document.querySelectorAll('#voices audio')].map((audio) =>
  !audio.paused && audio.srcObject !== null && audio.srcObject.getAudioTracks().some((t) => t.readyState === 'live'))"""
"""For each voice element of the page: is it playing a live track."""


class Dialogs:
    """The page's dialogs, answered as the test says, with what they asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.accept = False

    async def answer(self, dialog: Any) -> None:
        self.seen.append((dialog.type, dialog.message))
        if dialog.type == "beforeunload" or self.accept:
            await dialog.accept()
        else:
            await dialog.dismiss()


class Presence:
    """What the specialist's page hears of the others: presence frames as (state, role,
    participant id), and the participants its `joined` frames listed."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, str, str]] = []
        self.peers: list[dict[str, str]] = []

    def watch(self, page: Any) -> None:
        page.on("websocket", lambda socket: socket.on("framereceived", self._frame))

    def _frame(self, payload: str | bytes) -> None:
        if not isinstance(payload, str) or not payload.startswith("{"):
            return
        frame = json.loads(payload)
        if frame.get("type") == "presence":
            self.frames.append((frame["state"], frame["participant"]["role"], frame["participant"]["id"]))
        elif frame.get("type") == "joined":
            self.peers = frame["peers"]

    def nurse_states(self, since: int = 0) -> list[str]:
        return [state for state, role, _ in self.frames[since:] if role == "nurse"]


async def test_nurse_returns_to_the_same_consultation(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    playwright_context = async_playwright()
    from playwright.async_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    async with running_coturn(tmp_path / "coturn") as turn:
        server = await start_server(
            turn_urls=[turn.url], turn_secret=turn.secret, ice_transport_policy="relay", grace_seconds=GRACE_SECONDS
        )
        await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
        await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST})
        origin = server.url
        traffic = Traffic(origin)
        presence = Presence()
        dialogs = Dialogs()
        page_errors: list[str] = []
        start_answers: list[int] = []

        def watch(page: Any) -> None:
            traffic.watch(page)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("dialog", dialogs.answer)
            page.on("response", lambda r: r.request.method == "POST" and r.url == origin + "/api/consultations"
                    and start_answers.append(r.status))
            page.set_default_timeout(UI_TIMEOUT_MS)

        async def video_flows(since: int) -> None:
            await eventually(lambda: media_stats(specialist), lambda s: s["framesDecoded"] > since + 10,
                             MEDIA_SECONDS, "the specialist decodes the nurse's video")

        async def in_call(page: Any) -> None:
            await expect(page.locator("#call")).to_be_visible()
            await expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=MEDIA_SECONDS * 1000)

        async def hears_the_specialist(page: Any) -> None:
            # Playing, not just attached: a page the browser's autoplay rule holds back has its
            # voice element paused (a reloaded page has had no tap).
            await eventually(lambda: page.evaluate(HEARD), lambda playing: playing == [True], MEDIA_SECONDS,
                             "the nurse's page plays the specialist's voice")

        async with playwright_context as playwright:
            async with two_browsers(playwright) as (nurse_context, specialist_context):
                nurse, specialist = await nurse_context.new_page(), await specialist_context.new_page()
                watch(nurse)
                watch(specialist)
                presence.watch(specialist)

                # --- a consultation under way, video over the relay -----------------------------
                await log_in(nurse, origin, "sykepleier", "/nurse")
                await expect(nurse.locator("#rejoin")).to_be_hidden()
                await start_consultation(nurse, NATIONAL_ID, PATIENT, "snapshots")
                await log_in(specialist, origin, "spesialist", "/specialist")
                row = specialist.locator("#queue-body tr")
                await expect(row).to_have_count(1)
                consultation = await row.get_attribute("data-consultation")
                await row.locator("button").click()
                await video_flows(0)
                await in_call(nurse)
                await hears_the_specialist(nurse)
                assert await consultation_count(server) == 1

                # --- 1. Log out asks first, in the page's language; no keeps the call ----------
                for language in ("nb", "en"):
                    await nurse.select_option("#language", language)
                    asked = len(dialogs.seen)
                    await nurse.click("#logout")
                    await eventually(lambda: len(dialogs.seen), lambda n: n > asked, 10, "a logout question")
                    kind, message = dialogs.seen[-1]
                    assert kind == "confirm" and LOGOUT_QUESTION[language] in message, dialogs.seen
                    assert nurse.url == origin + "/nurse"
                    await in_call(nurse)
                assert presence.nurse_states() == [], "saying no to the logout question dropped the nurse"

                # --- 2. a reload asks first, then resumes the same participant ------------------
                frames = (await media_stats(specialist))["framesDecoded"]
                [nurse_id] = [p["id"] for p in presence.peers if p["role"] == "nurse"]
                seen = len(presence.frames)
                await nurse.reload()
                assert "beforeunload" in [kind for kind, _ in dialogs.seen], "the reload did not ask first"
                await in_call(nurse)
                await eventually(lambda: presence.nurse_states(seen), lambda s: "rejoined" in s, MEDIA_SECONDS,
                                 "the specialist sees the nurse rejoin")
                assert presence.nurse_states(seen)[:2] == ["reconnecting", "rejoined"], presence.frames[seen:]
                assert {p for _, role, p in presence.frames[seen:] if role == "nurse"} == {nurse_id}
                await video_flows(frames)
                await hears_the_specialist(nurse)
                sent = [json.loads(f) for f in traffic.sent_frames if f.startswith("{")]
                assert any(f["type"] == "join" and f.get("resume") for f in sent), "the reloaded page did not resume"
                assert await consultation_count(server) == 1, "the reload created a consultation"
                # The consents recorded before the reload still hold: a photo is taken and stored.
                await nurse.click("#snapshot")
                await expect(nurse.locator("#notice")).to_have_attribute("data-i18n", "nurse.snapshot.stored")

                # --- 3. logged out and in again: Start is refused with the offer, Rejoin resumes
                frames = (await media_stats(specialist))["framesDecoded"]
                seen = len(presence.frames)
                dialogs.accept = True
                await nurse.click("#logout")
                await nurse.wait_for_url(origin + "/")
                dialogs.accept = False
                await log_in(nurse, origin, "sykepleier", "/nurse")
                offer = nurse.locator("#rejoin")
                await expect(offer).to_be_visible()
                await expect(offer.locator("dd").first).to_have_text(PATIENT)
                await expect(offer.locator("h2")).to_have_text(REJOIN["en"][0])  # English since step 1
                await expect(offer.locator("button")).to_have_text(REJOIN["en"][1])
                await expect(nurse.locator("#call")).to_be_hidden()
                await offer.evaluate("(section) => { section.hidden = true; }")  # so that only the refusal shows it
                patient = await nurse.locator("#patient-select option").nth(1).get_attribute("value")
                await nurse.select_option("#patient-select", patient)
                await confirm_and_consent(nurse)
                await nurse.click("#start")
                await expect(offer).to_be_visible()
                await expect(offer).to_be_focused()
                await expect(nurse.locator("#start-error")).to_have_text("")
                assert start_answers == [201, 409], start_answers
                await offer.locator("button[data-consultation]").click()
                await in_call(nurse)
                await video_flows(frames)
                assert presence.nurse_states(seen)[:2] == ["reconnecting", "rejoined"], presence.frames[seen:]
                assert await consultation_count(server) == 1

                # --- 4. a new tab, no resume token: the same consultation, joined afresh --------
                seen = len(presence.frames)
                await nurse.close()  # no beforeunload: like a tab the phone killed
                nurse = await nurse_context.new_page()
                watch(nurse)
                await nurse.goto(origin + "/nurse")
                await expect(nurse.locator("#rejoin")).to_be_visible()
                await expect(nurse.locator("#call")).to_be_hidden()
                await nurse.select_option("#language", "nb")
                await expect(nurse.locator("#rejoin h2")).to_have_text(REJOIN["nb"][0])
                await expect(nurse.locator("#rejoin button")).to_have_text(REJOIN["nb"][1])
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                await nurse.screenshot(path=str(SCREENSHOTS / "nurse-rejoin.png"))
                publish_screenshots(SCREENSHOTS / "nurse-rejoin.png")
                frames = (await media_stats(specialist))["framesDecoded"]
                await nurse.locator(f"#rejoin button[data-consultation='{consultation}']").click()
                await in_call(nurse)
                await video_flows(frames)
                states = presence.nurse_states(seen)
                assert states[:3] == ["reconnecting", "left", "joined"], presence.frames[seen:]
                assert await consultation_count(server) == 1
                await expect(specialist.locator("#participants li")).to_have_count(2)

    assert not traffic.foreign, f"pages loaded from outside the server: {traffic.foreign}"
    assert not page_errors, page_errors

