"""HelseID-grade single sign-on through the login page in Chromium: the pushed request, the
signed client assertion and the DPoP-bound token all on, against the local provider; the
user lands on her page with the HPR number the provider sent stored on her account."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from tests.api.test_helseid import HPR_NUMBER, helseid_provider, helseid_settings
from tests.api.test_oidc import NATIONAL_ID, PASSWORD, PID_CLAIM, oidc_settings
from tests.e2e.browser import DESKTOP, async_playwright, launch
from tests.e2e.flows import UI_TIMEOUT_MS
from tests.oidc_provider import OidcProvider
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import StaffRole, User


@asynccontextmanager
async def login_page(origin: str) -> AsyncIterator[tuple[Any, list[str]]]:
    """The login page in Chromium (Norwegian, desktop) with its single sign-on link shown, and
    the page's errors as they come."""
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page = await (await browser.new_context(viewport=DESKTOP, locale="nb-NO")).new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            await page.goto(origin + "/")
            await page.locator("#oidc-link").wait_for(state="visible")
            yield page, page_errors
        finally:
            await browser.close()


async def test_single_sign_on_with_par_private_key_jwt_and_dpop_in_chromium(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    provider = await helseid_provider().start()
    try:
        await _log_in(start_server, provider, tmp_path)
    finally:
        await provider.stop()


async def _log_in(
    start_server: Callable[..., Awaitable[RunningServer]], provider: OidcProvider, tmp_path: Path
) -> None:
    server = await start_server(**helseid_settings(provider, tmp_path))
    user_id = await server.add_user("spesialist", PASSWORD, {"east": StaffRole.SPECIALIST})
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == user_id).values(oidc_subject=NATIONAL_ID))
    async with login_page(server.url) as (page, page_errors):
        link = page.locator("#oidc-link")
        assert await link.text_content() == "Logg inn med HelseID"
        await link.click()
        await page.wait_for_url(server.url + "/specialist")
        await page.wait_for_load_state("networkidle")
        assert not page_errors, page_errors

    # The browser went to the provider with a reference only; the request itself was pushed.
    [authorize] = provider.authorize_requests
    assert sorted(authorize) == ["client_id", "request_uri"]
    assert provider.par_requests and all("client_assertion" in r for r in provider.par_requests)
    [token_request] = provider.token_requests
    assert "client_assertion" in token_request and "client_secret" not in token_request
    assert provider.userinfo_requests == 1, "the HPR number was read with the DPoP-bound token"
    async with server.app[SERVICES].database.sessions() as session:
        assert await session.scalar(select(User.hpr_number).where(User.id == user_id)) == HPR_NUMBER


async def test_a_refused_single_sign_on_lands_on_the_login_page_with_a_message_in_its_language(
    start_server: Callable[..., Awaitable[RunningServer]], tmp_path: Path
) -> None:
    from playwright.async_api import expect  # as tests/e2e/browser.py: only where Chromium runs

    provider = await OidcProvider(claims={PID_CLAIM: NATIONAL_ID}).start()
    provider.deny = True  # the provider says no, with words of its own that must not show
    try:
        server = await start_server(**oidc_settings(provider))
        async with login_page(server.url) as (page, page_errors):
            await page.locator("#oidc-link").click()
            error = page.locator("#login-error")
            # A locator's wait, not wait_for_function: that one evaluates its string with eval
            # in the page, which the page's CSP (script-src 'self') refuses once it has loaded.
            norwegian = "Innloggingen hos HelseID ble ikke fullført. Prøv igjen."
            await expect(error).to_have_text(norwegian, timeout=UI_TIMEOUT_MS)
            assert page.url == server.url + "/", "the code leaves the address: a reload does not repeat it"
            assert "cancelled" not in await page.content()
            await page.select_option("#language", "en")
            await expect(error).to_have_text("The login at HelseID did not complete. Try again.", timeout=UI_TIMEOUT_MS)
            assert not page_errors, page_errors
    finally:
        await provider.stop()
