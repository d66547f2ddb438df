"""OIDC login (HelseID) against a real provider on loopback: the whole redirect dance, and
every way the answer can be wrong."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import orjson
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import select, update
from yarl import URL

from tests.api.client import ApiClient
from tests.oidc_provider import OidcProvider, rsa_key
from tests.server import RunningServer
from woundcare.api.oidc import CALLBACK_PATH, FLOW_COOKIE, LOGIN_ERRORS, OIDC
from woundcare.appkeys import SERVICES
from woundcare.auth.oidc import Flow, FlowError, FlowSealer
from woundcare.db.models import AuditEvent, LoginSession, User
from woundcare.db.models import StaffRole

PID_CLAIM = "helseid://claims/identity/pid"
NATIONAL_ID = "01018012371"
"""A fictional national id number; the log check of conftest fails a test that logs it."""
PASSWORD = "correct horse battery staple"

StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def provider() -> AsyncIterator[OidcProvider]:
    running = await OidcProvider(claims={PID_CLAIM: NATIONAL_ID}).start()
    yield running
    await running.stop()


def oidc_settings(provider: OidcProvider, **extra: Any) -> dict[str, Any]:
    return {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": provider.client_id,
        "oidc_client_secret": provider.client_secret,
        "oidc_subject_claim": PID_CLAIM,
        "oidc_scopes": ["openid", "profile", "helseid://scopes/identity/pid"],
        **extra,
    }


@pytest.fixture
async def server(start_server: StartServer, provider: OidcProvider) -> RunningServer:
    return await start_server(**oidc_settings(provider))


@pytest.fixture
async def browser(server: RunningServer) -> AsyncIterator[ApiClient]:
    client = ApiClient(server.url)
    yield client
    await client.close()


async def linked_user(server: RunningServer, subject: str = NATIONAL_ID, *, active: bool = True) -> int:
    user_id = await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == user_id).values(oidc_subject=subject, active=active))
    return user_id


async def to_callback(server: RunningServer, browser: ApiClient) -> str:
    """Start a login and let the provider approve it; the callback URL it redirects to."""
    start = await browser.session.get(server.url + "/api/oidc/login", allow_redirects=False)
    assert start.status == 302, await start.text()
    approved = await browser.session.get(start.headers["Location"], allow_redirects=False)
    assert approved.status == 302, await approved.text()
    callback = approved.headers["Location"]
    assert callback.startswith(server.url + CALLBACK_PATH + "?")
    return callback


async def follow(browser: ApiClient, url: str) -> aiohttp.ClientResponse:
    response = await browser.session.get(url, allow_redirects=False)
    await response.read()
    return response


async def error_code(response: aiohttp.ClientResponse) -> str:
    """The code a refused login sends the browser back to the login page with; nothing the
    provider said travels on, in the answer or in the address."""
    body = await response.text()
    assert response.status == 303, body
    location = response.headers["Location"]
    for said in (body, location):
        assert NATIONAL_ID not in said and "script" not in said and "cancelled" not in said
    assert response.headers["Cache-Control"] == "no-store"
    target = urlsplit(location)
    assert (target.netloc, target.path) == ("", "/")
    [code] = parse_qs(target.query)["login_error"]
    assert code in LOGIN_ERRORS
    return code


async def audit(server: RunningServer) -> list[AuditEvent]:
    async with server.app[SERVICES].database.sessions() as session:
        rows = list((await session.scalars(select(AuditEvent).where(AuditEvent.action == "login.oidc"))).all())
    for row in rows:
        assert NATIONAL_ID not in f"{row.actor} {row.resource}"
    return rows


def set_flow_cookie(browser: ApiClient, url: str, value: str) -> None:
    """Replace the browser's login-attempt cookie (same name and path, so it is one cookie)."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[FLOW_COOKIE] = value
    cookie[FLOW_COOKIE]["path"] = CALLBACK_PATH
    browser.session.cookie_jar.update_cookies(cookie, response_url=URL(url))
    assert [c.value for c in browser.session.cookie_jar if c.key == FLOW_COOKIE] == [value]


def has_session_cookie(browser: ApiClient) -> bool:
    return any(cookie.key == "wc_session" for cookie in browser.session.cookie_jar)


async def test_login_through_the_provider_opens_a_session(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    user_id = await linked_user(server)
    start = await browser.session.get(server.url + "/api/oidc/login", allow_redirects=False)
    assert start.status == 302
    flow_cookie = start.cookies[FLOW_COOKIE]
    assert flow_cookie["httponly"] and flow_cookie["samesite"] == "Lax" and flow_cookie["path"] == CALLBACK_PATH
    authorize = urlsplit(start.headers["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{provider.issuer}/authorize"

    approved = await browser.session.get(start.headers["Location"], allow_redirects=False)
    done = await follow(browser, approved.headers["Location"])
    assert done.status == 302, await done.text()
    assert done.headers["Location"] == "/"
    session_cookie = done.cookies["wc_session"]
    assert session_cookie["httponly"] and session_cookie["samesite"] == "Strict"
    assert done.cookies[FLOW_COOKIE].value == "", "the login attempt must be spent"

    me = await browser.json("GET", "/api/session")
    assert me["user"] == {"id": f"u{user_id}", "name": "Test nurse1"}
    assert me["regions"] == [{"code": "east", "name": "Region east", "roles": ["nurse"]}]
    async with server.app[SERVICES].database.sessions() as session:
        assert await session.scalar(select(LoginSession.method).where(LoginSession.user_id == user_id)) == "oidc"
    [request] = provider.authorize_requests
    assert request["code_challenge_method"] == "S256" and request["scope"].split()[0] == "openid"
    [token_request] = provider.token_requests
    assert token_request["code_verifier"] not in (request["code_challenge"], request["state"], request["nonce"])
    assert [(row.outcome, row.actor, row.resource) for row in await audit(server)] == [("ok", f"u{user_id}", None)]


async def test_unknown_subject_is_refused_and_audited(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await linked_user(server, subject="someone-else")
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "unknown_user"
    assert not has_session_cookie(browser)
    assert done.cookies[FLOW_COOKIE].value == "", "a refused attempt is spent too"
    assert [(r.outcome, r.actor, r.resource) for r in await audit(server)] == [("denied", None, "oidc:unknown_user")]
    async with server.app[SERVICES].database.sessions() as session:
        assert await session.scalar(select(User.id).where(User.oidc_subject == NATIONAL_ID)) is None, "no auto-provisioning"


async def test_disabled_user_is_refused(server: RunningServer, browser: ApiClient) -> None:
    user_id = await linked_user(server, active=False)
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "unknown_user"
    assert not has_session_cookie(browser)
    assert [(r.outcome, r.actor, r.resource) for r in await audit(server)] == [
        ("denied", f"u{user_id}", "oidc:user_inactive")
    ]


def _set(**claims: Any) -> Callable[[dict[str, Any]], None]:
    return lambda token: token.update(claims)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda token: token.pop(name)


BAD_TOKENS = {
    "wrong nonce": (_set(nonce="not-the-nonce"), "wrong_nonce"),
    "no nonce": (_drop("nonce"), "wrong_nonce"),
    "wrong audience": (_set(aud="another-client"), "wrong_audience"),
    "shared audience": (_set(aud=["woundcare-test", "another-client"]), "wrong_audience"),
    "wrong azp": (_set(azp="another-client"), "wrong_audience"),
    "wrong issuer": (_set(iss="https://evil.example"), "wrong_issuer"),
    "expired": (_set(exp=int(time.time()) - 3600), "expired"),
    "issued in the future": (_set(iat=int(time.time()) + 3600), "bad_issued_at"),
    "issued long ago": (_set(iat=int(time.time()) - 7200), "bad_issued_at"),
    "no iat": (_drop("iat"), "bad_times"),
    "not yet valid": (_set(nbf=int(time.time()) + 3600), "not_yet_valid"),
    "no pid claim": (_drop(PID_CLAIM), "subject_claim_missing"),
    "pid not a string": (_set(**{PID_CLAIM: 1018012371}), "subject_claim_missing"),
}


@pytest.mark.parametrize("tamper, reason", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_id_token_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient, tamper: Any, reason: str
) -> None:
    await linked_user(server)
    provider.tamper = tamper
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "oidc_invalid_token"
    assert not has_session_cookie(browser)
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", f"oidc:{reason}")]


async def test_token_signed_with_an_untrusted_key_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await linked_user(server)
    provider.sign_with = rsa_key("k1")  # the published key id, another key
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "oidc_invalid_token"
    assert not has_session_cookie(browser)
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:bad_signature")]


async def test_rotated_provider_key_is_fetched_once_its_id_appears(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await linked_user(server)
    assert (await follow(browser, await to_callback(server, browser))).status == 302
    assert provider.jwks_fetches == 1, "the JWKS is cached"
    assert (await follow(browser, await to_callback(server, browser))).status == 302
    assert provider.jwks_fetches == 1, "the JWKS is cached"

    # The provider rotates: a new key id, published and used. Just after a fetch, the client
    # does not refetch (an unknown key id must not make it hammer the provider)...
    provider.keys.insert(0, rsa_key("k2"))
    refused = await follow(browser, await to_callback(server, browser))
    assert await error_code(refused) == "oidc_invalid_token" and provider.jwks_fetches == 1
    # ...once the minimum interval has passed, an unknown key id refetches the JWKS.
    server.app[OIDC].jwks_min_refresh_seconds = 0
    assert (await follow(browser, await to_callback(server, browser))).status == 302
    assert provider.jwks_fetches == 2
    # An unpublished key id still fails after the refetch.
    provider.sign_with = rsa_key("k9")
    refused = await follow(browser, await to_callback(server, browser))
    assert await error_code(refused) == "oidc_invalid_token"
    assert provider.jwks_fetches == 3
    outcomes = [(r.outcome, r.resource) for r in await audit(server)]
    assert outcomes == [("ok", None)] * 2 + [("failed", "oidc:unknown_key"), ("ok", None), ("failed", "oidc:unknown_key")]


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


async def test_tampered_state_is_refused_before_the_code_is_redeemed(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await linked_user(server)
    callback = await to_callback(server, browser)
    done = await follow(browser, _with_query(callback, state="A" + parse_qs(urlsplit(callback).query)["state"][0][1:]))
    assert await error_code(done) == "oidc_state"
    assert provider.token_requests == [], "a code must not be redeemed for a foreign state"
    assert not has_session_cookie(browser)
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:state_mismatch")]


@pytest.mark.parametrize("iss", ["https://evil.example", None], ids=["other issuer", "no issuer"])
async def test_authorization_response_from_another_issuer_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient, iss: str | None
) -> None:
    """RFC 9207 mix-up defence: the provider names itself in the redirect, and it must be ours."""
    await linked_user(server)
    callback = await to_callback(server, browser)
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "iss"} | ({"iss": iss} if iss else {})
    done = await follow(browser, parts._replace(query=urlencode(query)).geturl())
    assert await error_code(done) == "oidc_failed"
    assert provider.token_requests == []
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:issuer_mismatch")]


async def test_tampered_flow_cookie_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await linked_user(server)
    callback = await to_callback(server, browser)
    [cookie] = [c for c in browser.session.cookie_jar if c.key == FLOW_COOKIE]
    value = cookie.value
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    set_flow_cookie(browser, callback, flipped)
    done = await follow(browser, callback)
    assert await error_code(done) == "oidc_state"
    assert provider.token_requests == []
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:flow_invalid")]


async def test_callback_in_another_browser_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    """Login CSRF: an attacker's own callback URL must not log a victim's browser in."""
    await linked_user(server)
    callback = await to_callback(server, browser)
    victim = ApiClient(server.url)
    try:
        done = await follow(victim, callback)
        assert await error_code(done) == "oidc_state"
        assert not has_session_cookie(victim)
    finally:
        await victim.close()
    assert provider.token_requests == []
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:flow_missing")]


async def test_callback_replay_is_refused(server: RunningServer, provider: OidcProvider, browser: ApiClient) -> None:
    await linked_user(server)
    callback = await to_callback(server, browser)
    [cookie] = [c for c in browser.session.cookie_jar if c.key == FLOW_COOKIE]
    spent = cookie.value
    assert (await follow(browser, callback)).status == 302
    # The browser forgot the attempt...
    again = await follow(browser, callback)
    assert await error_code(again) == "oidc_state"
    # ...and one who kept the cookie meets the provider's single-use code.
    set_flow_cookie(browser, callback, spent)
    kept = await follow(browser, callback)
    assert await error_code(kept) == "oidc_failed"
    outcomes = [(r.outcome, r.resource) for r in await audit(server)]
    assert outcomes == [("ok", None), ("failed", "oidc:flow_missing"), ("failed", "oidc:token_refused")]


async def test_refusal_at_the_provider_is_not_echoed(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await linked_user(server)
    provider.deny = True
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "oidc_failed"
    assert provider.token_requests == []
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:provider_refused")]


async def test_wrong_client_secret_is_refused(start_server: StartServer, provider: OidcProvider) -> None:
    server = await start_server(**oidc_settings(provider, oidc_client_secret="not-the-secret"))
    await linked_user(server)
    browser = ApiClient(server.url)
    try:
        done = await follow(browser, await to_callback(server, browser))
        assert await error_code(done) == "oidc_failed"
    finally:
        await browser.close()
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:token_refused")]


async def test_private_key_jwt_client_authentication(
    start_server: StartServer, provider: OidcProvider, tmp_path: Path
) -> None:
    """HelseID accepts only ``private_key_jwt``: a signed, one-use client assertion."""
    client_key = rsa_key("client-1")
    provider.client_public_key = RSAKey.import_key(client_key.as_dict(private=False))
    key_file = tmp_path / "client.jwk"
    key_file.write_bytes(orjson.dumps(client_key.as_dict(private=True)))
    server = await start_server(**oidc_settings(provider, oidc_client_secret=None, oidc_client_key_file=key_file))
    user_id = await linked_user(server)
    browser = ApiClient(server.url)
    try:
        assert (await follow(browser, await to_callback(server, browser))).status == 302
        assert (await browser.json("GET", "/api/session"))["user"]["id"] == f"u{user_id}"
        # The provider takes each assertion once: a second login must sign a new one.
        assert (await follow(browser, await to_callback(server, browser))).status == 302
    finally:
        await browser.close()
    assert all("client_assertion" in r and "client_secret" not in r for r in provider.token_requests)
    assert len(provider.token_requests) == 2


async def test_routes_answer_404_when_oidc_is_not_configured(start_server: StartServer) -> None:
    server = await start_server()
    async with aiohttp.ClientSession() as http:
        for path in ("/api/oidc/login", "/api/oidc/callback?code=x&state=y"):
            response = await http.get(server.url + path, allow_redirects=False)
            assert response.status == 404, path
            assert (await response.json())["error"]["code"] == "oidc_disabled"


def test_a_flow_expires_after_ten_minutes() -> None:
    sealer = FlowSealer(b"k" * 32)
    flow = Flow.new(now=1_000_000)
    cookie = sealer.seal(flow)
    assert sealer.open(cookie, flow.state, now=1_000_000 + 599) == flow
    with pytest.raises(FlowError) as expired:
        sealer.open(cookie, flow.state, now=1_000_000 + 601)
    assert expired.value.reason == "flow_expired"
    with pytest.raises(FlowError) as other_key:
        FlowSealer(b"x" * 32).open(cookie, flow.state, now=1_000_000)
    assert other_key.value.reason == "flow_invalid"
