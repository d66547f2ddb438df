"""An e-consult from the nurse's page to a specialist and its answer back, in two Chromiums
against the real server: photos and a question sent without a call, marked in the queue with
its urgency, opened (not joined), answered with a signed assessment, and the answer on the
nurse's page, acknowledged; all of it one consultation row (issue 18). The signed answer's
journal note downloads from beside it (issue 19)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect
from sqlalchemy import func, select

from tests.api.clinic import jpeg_with_exif
from tests.e2e.browser import async_playwright, two_browsers
from tests.e2e.flows import NATIONAL_ID, PATIENT, UI_TIMEOUT_MS, log_in, register_patient
from tests.e2e.flows import PASSWORD
from woundcare.appkeys import SERVICES
from woundcare.db.models import Consultation, ConsultationKind, ConsultationStatus, Snapshot
from woundcare.db.models import StaffRole

QUESTION = "The edges look macerated since Monday. Change to a foam dressing?"
PLAN = "Foam dressing, change every other day; keep the edges dry."


async def test_an_econsult_goes_to_a_specialist_and_its_answer_back(start_server: Any) -> None:
    server = await start_server()
    await server.add_user("sykepleier", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST})
    expect.set_options(timeout=UI_TIMEOUT_MS)
    errors: list[str] = []
    async with async_playwright() as playwright, two_browsers(playwright, specialist_locale="en-GB") as contexts:
        nurse, specialist = [await context.new_page() for context in contexts]
        for page in (nurse, specialist):
            page.on("pageerror", lambda error: errors.append(str(error)))

        await log_in(nurse, server.url, "sykepleier", "/nurse")
        await register_patient(nurse, NATIONAL_ID, PATIENT)
        await nurse.check("#identity-confirmed")
        form = nurse.locator("#econsult-form")
        await form.locator("textarea[name=question]").fill(QUESTION)
        await form.locator("input[name=urgency][value=urgent]").check()
        await form.locator("input[name=photos]").set_input_files(
            {"name": "wound.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_exif()})
        await form.locator("input[name=consent]").check()
        await form.locator("button[type=submit]").click()
        await expect(nurse.locator("#econsult-status")).to_have_attribute("data-i18n", "econsult.sent")
        sent = nurse.locator("#econsults-list .econsult-item")
        await expect(sent).to_have_count(1)
        await expect(sent.locator(".econsult-status")).to_have_attribute("data-i18n", "econsult.waiting")

        await log_in(specialist, server.url, "spesialist", "/specialist")
        row = specialist.locator("#queue-body tr[data-channel=econsult]")
        await expect(row.locator(".queue-status")).to_have_text("E-consult · urgent")
        await expect(row.locator("button")).to_have_text("Open")
        await row.locator("button").click()
        await expect(specialist.locator("#econsult-view")).to_be_visible()
        await expect(specialist.locator("#econsult-question")).to_have_text(QUESTION)
        await expect(specialist.locator("#econsult-patient")).to_have_text(PATIENT)
        await expect(specialist.locator("#econsult-photos li")).to_have_count(1)
        answer = specialist.locator("#econsult-answer #assessment-form")
        await answer.locator("textarea[name=treatmentPlan]").fill(PLAN)
        await answer.locator("select[name=responsible]").select_option("home_care")
        await answer.locator("input[name=outcome][value=treated_at_home]").check()
        journal = answer.locator(".journal-links")
        await expect(journal).to_be_hidden()  # a draft is not for the journal
        await specialist.click("#sign-assessment")
        await expect(specialist.locator("#assessment-status")).to_have_attribute("data-i18n", "assessment.signed")

        # Signed, it can go to the patient's journal: the PDF note downloads from beside it.
        await expect(journal.locator(".journal-document")).to_have_text("Journal document (FHIR)")
        async with specialist.expect_download() as downloading:
            await journal.locator(".journal-note").click()
        note = await downloading.value
        assert note.suggested_filename == "journalnotat.pdf"
        assert Path(await note.path()).read_bytes().startswith(b"%PDF-")

        # The answer reaches the nurse: in her e-consults and among the plans to acknowledge.
        await nurse.reload()
        await nurse.wait_for_load_state("networkidle")
        await expect(sent.locator(".econsult-status")).to_have_attribute("data-i18n", "econsult.answered")
        await expect(sent.locator(".plan")).to_contain_text(PLAN)
        await expect(nurse.locator("#plans-list .plans-item")).to_have_count(1)
        await sent.locator(".plan-acknowledge").click()
        await expect(sent.locator(".plan-state")).to_have_attribute("data-i18n", "plan.acknowledged")
        await expect(nurse.locator("#plans")).to_be_hidden()
        assert not errors, errors

    # One record: one consultation row holds the question, the photo and the answer.
    async with server.app[SERVICES].database.sessions() as session:
        rows = (await session.scalars(select(Consultation))).all()
        photos = await session.scalar(select(func.count(Snapshot.id)))
    assert [(r.kind, r.status) for r in rows] == [(ConsultationKind.ECONSULT, ConsultationStatus.ENDED)]
    assert photos == 1
    answer_row = await server.app[SERVICES].assessments.get(rows[0].id)
    assert answer_row is not None and answer_row.signed_at is not None and answer_row.acknowledged_at is not None
    assert answer_row.content.treatment_plan == PLAN
