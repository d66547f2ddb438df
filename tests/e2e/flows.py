"""What the browser tests do through the pages again and again: log in, register a patient and
start a consultation, count the consultations in the record."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.server import RunningServer
from woundcare.appkeys import DATABASE
from woundcare.db.models import Consultation

UI_TIMEOUT_MS = 15_000
"""Bound on any one wait for the pages; media waits have their own."""


async def log_in(page: Any, origin: str, username: str, password: str, landing: str) -> None:
    await page.goto(origin + "/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(origin + landing, timeout=UI_TIMEOUT_MS)


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


async def consultation_count(server: RunningServer) -> int:
    async with server.app[DATABASE].sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Consultation)) or 0)
