"""What a person does on the pages, for the browser tests: log in, register a patient and start
a consultation as the nurse, join it from the specialist's queue; and a whole call in two
Chromiums over a local coturn relay (:func:`call_in_two_browsers`), for tests of what happens
to a live call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.coturn import running_coturn
from tests.e2e.browser import async_playwright, eventually, media_stats, two_browsers
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import Consultation, QualitySample
from woundcare.db.models import StaffRole

PASSWORD = "browser test password"
UI_TIMEOUT_MS = 15_000
"""Bound on any one wait for the pages; media waits have their own."""
MEDIA_SECONDS = 25.0
NATIONAL_ID = "01018012371"
PATIENT = "Kari Nordmann"


async def log_in(page: Any, origin: str, username: str, landing: str, *, password: str = PASSWORD) -> None:
    """Through the login page to the role's ``landing`` page."""
    await page.goto(origin + "/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(origin + landing, timeout=UI_TIMEOUT_MS)
    # Until its module has run, a page's buttons do nothing and its first requests are still
    # out (on a loaded machine a click could land before the handler, or a logout in another
    # tab before the page's own ICE-server fetch).
    await page.wait_for_load_state("networkidle", timeout=UI_TIMEOUT_MS)


async def register_patient(page: Any, national_id: str, name: str) -> None:
    """Register a patient on the nurse's page; the identity card then shows it."""
    await page.click("#register-toggle")
    await page.fill("#national-id", national_id)
    await page.fill("#patient-name", name)
    await page.click("#register-form button[type=submit]")
    await page.locator("#identity-name").filter(has_text=name).wait_for(timeout=UI_TIMEOUT_MS)


async def confirm_and_consent(page: Any, *consents: str) -> None:
    """Tick the identity check and the consents (video always) on the nurse's page."""
    await page.check("#identity-confirmed")
    for consent in ("video", *consents):
        await page.check(f"#consent-form input[name={consent}]")


async def start_consultation(nurse: Any, national_id: str = NATIONAL_ID, name: str = PATIENT, *consents: str) -> None:
    """Register the patient, confirm who it is, consent and start; returns once the nurse's page
    waits for a specialist."""
    await register_patient(nurse, national_id, name)
    await confirm_and_consent(nurse, *consents)
    await nurse.click("#start")
    await nurse.locator("#status[data-state=waiting]").wait_for(timeout=UI_TIMEOUT_MS)


async def join_first_in_queue(specialist: Any) -> str:
    """Join the queue's first consultation (the specialist's page); returns its id."""
    row = specialist.locator("#queue-body tr").first
    consultation = await row.get_attribute("data-consultation")
    assert consultation
    await row.locator("button").click()
    await specialist.locator("#call-view").wait_for()
    return consultation


async def consultation_count(server: RunningServer) -> int:
    async with server.app[SERVICES].database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Consultation)) or 0)


async def quality_samples(server: RunningServer, consultation: str) -> list[tuple[str, str]]:
    """(role, direction) of each quality report the pages stored for ``consultation``."""
    async with server.app[SERVICES].database.sessions() as session:
        rows = await session.execute(
            select(QualitySample.role, QualitySample.direction).where(QualitySample.consultation_id == consultation)
        )
        return [(role, direction) for role, direction in rows]


@dataclass
class Call:
    """A live consultation between a nurse's phone and a specialist's desktop."""

    server: RunningServer
    turn_dir: Path
    """coturn's working folder (its pid file is there)."""
    nurse: Any
    specialist: Any
    consultation: str
    users: dict[str, int]
    """User ids by username: ``sykepleier`` and ``spesialist``."""
    page_errors: list[str] = field(default_factory=list)
    playwright: Any = None
    """The running Playwright, for a test that launches a third browser (a guest's)."""


@asynccontextmanager
async def call_in_two_browsers(
    start_server: Callable[..., Awaitable[RunningServer]],
    tmp_path: Path,
    *,
    nurse_locale: str = "nb-NO",
    specialist_locale: str = "nb-NO",
    nurse_script: str = "",
    specialist_script: str = "",
    consents: tuple[str, ...] = (),
) -> AsyncIterator[Call]:
    """Two Chromiums, media relayed through a local coturn only, the nurse's call joined by the
    specialist and video decoded; ``*_script`` runs in that browser's pages before their own;
    the patient consents to video and ``consents``."""
    async with running_coturn(tmp_path / "coturn") as turn:
        server = await start_server(turn_urls=[turn.url], turn_secret=turn.secret, ice_transport_policy="relay")
        users = {
            "sykepleier": await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE}),
            "spesialist": await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST}),
        }
        async with async_playwright() as playwright, two_browsers(
            playwright,
            nurse_locale=nurse_locale,
            specialist_locale=specialist_locale,
            nurse_script=nurse_script,
            specialist_script=specialist_script,
        ) as contexts:
            page_errors: list[str] = []
            pages = []
            for context in contexts:
                page = await context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                pages.append(page)
            nurse, specialist = pages
            await log_in(nurse, server.url, "sykepleier", "/nurse")
            await start_consultation(nurse, NATIONAL_ID, PATIENT, *consents)
            await log_in(specialist, server.url, "spesialist", "/specialist")
            consultation = await join_first_in_queue(specialist)
            await eventually(
                lambda: media_stats(specialist), lambda s: s["framesDecoded"] > 0 and s["relay"],
                MEDIA_SECONDS, "the specialist decodes the nurse's video over the relay")
            yield Call(server, tmp_path / "coturn", nurse, specialist, consultation, users, page_errors, playwright)
