"""The plan back, in two Chromiums over a real call: the specialist signs the plan in the
call and ends it; the nurse's end screen shows the plan, she acknowledges it there (once,
audited), and her patient view shows it received (issue 18)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect
from sqlalchemy import select

from tests.e2e.flows import PATIENT, UI_TIMEOUT_MS, call_in_two_browsers
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent

PLAN = "Compression bandage, change every third day."


async def test_the_nurse_sees_and_acknowledges_the_signed_plan_after_the_call(start_server: Any, tmp_path: Path) -> None:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    async with call_in_two_browsers(start_server, tmp_path, specialist_locale="en-GB") as call:
        specialist, nurse = call.specialist, call.nurse
        form = specialist.locator("#assessment-form")
        await form.locator("textarea[name=treatmentPlan]").fill(PLAN)
        await form.locator("input[name=nextReview]").fill("2026-12-20")
        await form.locator("select[name=responsible]").select_option("home_care")
        await form.locator("input[name=outcome][value=treated_at_home]").check()
        await specialist.click("#sign-assessment")
        await expect(specialist.locator("#assessment-status")).to_have_attribute("data-i18n", "assessment.signed")
        await specialist.click("#end")
        await specialist.click("#end")

        await expect(nurse.locator("#ended")).to_be_visible()
        card = nurse.locator("#ended-plan .plan")
        await expect(card).to_contain_text(PLAN)
        await expect(card).to_contain_text("Hjemmesykepleien")  # responsible, in the nurse's Norwegian
        await card.locator(".plan-acknowledge").click()
        await expect(card.locator(".plan-state")).to_have_attribute("data-i18n", "plan.acknowledged")
        await expect(card.locator(".plan-acknowledge")).to_have_count(0)

        saved = await call.server.app[SERVICES].assessments.get(call.consultation)
        assert saved is not None and saved.acknowledged_at is not None
        assert saved.acknowledged_by == f"u{call.users['sykepleier']}"
        async with call.server.app[SERVICES].database.sessions() as session:
            audited = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "plan.acknowledge"))).all()
        assert [(e.outcome, e.resource) for e in audited] == [("ok", f"consultation:{call.consultation}")]

        # Back on the start screen: nothing left to acknowledge; the patient's plan shows received.
        await nurse.click("#ended a[href='/nurse']")
        await nurse.wait_for_load_state("networkidle")
        await expect(nurse.locator("#plans")).to_be_hidden()
        option = nurse.locator("#patient-select option", has_text=PATIENT)
        await nurse.select_option("#patient-select", await option.get_attribute("value"))
        received = nurse.locator("#patient-plans-list .plan")
        await expect(received).to_contain_text(PLAN)
        await expect(received.locator(".plan-state")).to_have_attribute("data-i18n", "plan.acknowledged")
        assert not call.page_errors, call.page_errors
