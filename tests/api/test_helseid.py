"""HelseID-grade login against the local provider with PAR, ``private_key_jwt`` and DPoP all
on: the HPR number mapped, the security level enforced, and a DPoP-bound token useless
without a fresh proof of its key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import select, update

from tests.api.client import ApiClient
from tests.api.test_oidc import NATIONAL_ID, PASSWORD, PID_CLAIM, audit, error_code, follow, oidc_settings, to_callback
from tests.oidc_provider import OidcProvider, rsa_key
from tests.server import RunningServer
from woundcare.api.oidc import OIDC
from woundcare.appkeys import BOUND_TOKENS, SERVICES
from woundcare.auth.dpop import DpopKey
from woundcare.auth.oidc import HPR_CLAIM, SECURITY_LEVEL_CLAIM
from woundcare.db.models import AuditEvent, StaffRole, User

HPR_NUMBER = "9144889"
"""A fictional HPR number."""

StartServer = Callable[..., Awaitable[RunningServer]]


CLIENT_KEY = rsa_key("client-1")
"""The client's private_key_jwt key; the provider holds its public half."""


def helseid_provider() -> OidcProvider:
    """A provider as strict as HelseID: PAR, private_key_jwt and DPoP (with a nonce) required;
    the HPR number at /userinfo only, security level 4 in the ID token."""
    return OidcProvider(
        claims={PID_CLAIM: NATIONAL_ID, SECURITY_LEVEL_CLAIM: "4"},
        userinfo_claims={HPR_CLAIM: HPR_NUMBER},
        client_public_key=RSAKey.import_key(CLIENT_KEY.as_dict(private=False)),
        require_par=True,
        require_dpop=True,
        dpop_nonce="nonce-1",
    )


@pytest.fixture
async def provider() -> AsyncIterator[OidcProvider]:
    running = await helseid_provider().start()
    yield running
    await running.stop()


def helseid_settings(provider: OidcProvider, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    key_file = tmp_path / "client.jwk"
    key_file.write_bytes(orjson.dumps(CLIENT_KEY.as_dict(private=True)))
    helseid = {
        "oidc_client_secret": None,
        "oidc_client_key_file": key_file,
        "oidc_client_auth": "private_key_jwt",
        "oidc_par": True,
        "oidc_dpop": True,
        "oidc_userinfo": True,
        "oidc_min_security_level": 4,
    }
    return oidc_settings(provider, **(helseid | extra))


@pytest.fixture
async def server(start_server: StartServer, provider: OidcProvider, tmp_path: Path) -> RunningServer:
    return await start_server(**helseid_settings(provider, tmp_path))


@pytest.fixture
async def browser(server: RunningServer) -> AsyncIterator[ApiClient]:
    client = ApiClient(server.url)
    yield client
    await client.close()


async def add_user(server: RunningServer, **values: Any) -> int:
    user_id = await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == user_id).values(**values))
    return user_id


async def hpr_number_of(server: RunningServer, user_id: int) -> str | None:
    async with server.app[SERVICES].database.sessions() as session:
        return await session.scalar(select(User.hpr_number).where(User.id == user_id))


async def test_login_with_par_private_key_jwt_and_dpop_maps_the_hpr_number(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    user_id = await add_user(server, oidc_subject=NATIONAL_ID)
    start = await browser.session.get(server.url + "/api/oidc/login", allow_redirects=False)
    assert start.status == 302, await start.text()
    # The browser carries a reference only: state, nonce and challenge went to the provider.
    sent = parse_qs(urlsplit(start.headers["Location"]).query)
    assert sorted(sent) == ["client_id", "request_uri"]
    # The first push met the nonce demand and was made again with a new assertion.
    assert len(provider.par_requests) == 2
    assert len({r["client_assertion"] for r in provider.par_requests}) == 2

    approved = await browser.session.get(start.headers["Location"], allow_redirects=False)
    done = await follow(browser, approved.headers["Location"])
    assert done.status == 302, await done.text()
    assert (await browser.json("GET", "/api/session"))["user"]["id"] == f"u{user_id}"
    assert await hpr_number_of(server, user_id) == HPR_NUMBER, "the HPR number comes from /userinfo"
    [token_request] = provider.token_requests
    assert "client_assertion" in token_request and "client_secret" not in token_request
    assert provider.userinfo_requests == 1
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("ok", None)]


async def test_a_nonce_of_the_userinfo_endpoints_own_is_answered(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    user_id = await add_user(server, oidc_subject=NATIONAL_ID)
    provider.userinfo_nonce = "nonce-2"
    assert (await follow(browser, await to_callback(server, browser))).status == 302
    assert provider.userinfo_requests == 2, "refused once for the nonce, then answered"
    assert await hpr_number_of(server, user_id) == HPR_NUMBER


async def test_a_login_can_be_linked_by_hpr_number(
    start_server: StartServer, provider: OidcProvider, tmp_path: Path
) -> None:
    server = await start_server(**helseid_settings(provider, tmp_path, oidc_link_by="hpr_number"))
    user_id = await add_user(server, hpr_number=HPR_NUMBER)
    browser = ApiClient(server.url)
    try:
        assert (await follow(browser, await to_callback(server, browser))).status == 302
        assert (await browser.json("GET", "/api/session"))["user"]["id"] == f"u{user_id}"
        # Without an HPR number, no account is found (the subject is not looked at).
        provider.userinfo_claims = {}
        other = ApiClient(server.url)
        try:
            done = await follow(other, await to_callback(server, other))
            assert await error_code(done) == "unknown_user"
        finally:
            await other.close()
    finally:
        await browser.close()


async def test_an_hpr_number_held_by_another_account_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    user_id = await add_user(server, oidc_subject=NATIONAL_ID)
    other = await server.add_user("nurse2", PASSWORD, {"east": StaffRole.NURSE})
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == other).values(hpr_number=HPR_NUMBER))
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "hpr_number_taken"
    assert await hpr_number_of(server, user_id) is None
    assert [(r.outcome, r.actor, r.resource) for r in await audit(server)] == [
        ("denied", f"u{user_id}", "oidc:hpr_number_taken")
    ]


@pytest.mark.parametrize(
    "level, reason", [("3", "security_level_too_low"), (None, "security_level_missing")], ids=["level 3", "no level"]
)
async def test_a_security_level_below_the_minimum_is_refused_and_audited(
    server: RunningServer, provider: OidcProvider, browser: ApiClient, level: str | None, reason: str
) -> None:
    await add_user(server, oidc_subject=NATIONAL_ID)
    provider.claims[SECURITY_LEVEL_CLAIM] = level
    if level is None:
        del provider.claims[SECURITY_LEVEL_CLAIM]
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "oidc_security_level"
    assert not any(cookie.key == "wc_session" for cookie in browser.session.cookie_jar)
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("denied", f"oidc:{reason}")]


async def test_a_bearer_token_where_dpop_was_asked_is_refused(
    server: RunningServer, provider: OidcProvider, browser: ApiClient
) -> None:
    await add_user(server, oidc_subject=NATIONAL_ID)
    provider.bearer_despite_dpop = True
    done = await follow(browser, await to_callback(server, browser))
    assert await error_code(done) == "oidc_invalid_token"
    assert provider.userinfo_requests == 0
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:token_not_bound")]


async def test_a_plain_authorization_request_is_refused_where_par_is_required(
    start_server: StartServer, provider: OidcProvider, tmp_path: Path
) -> None:
    server = await start_server(**helseid_settings(provider, tmp_path, oidc_par=False))
    browser = ApiClient(server.url)
    try:
        start = await browser.session.get(server.url + "/api/oidc/login", allow_redirects=False)
        assert "state=" in start.headers["Location"]
        refused = await browser.session.get(start.headers["Location"], allow_redirects=False)
        assert refused.status == 400
    finally:
        await browser.close()


async def test_a_refused_push_is_audited(start_server: StartServer, provider: OidcProvider, tmp_path: Path) -> None:
    provider.client_public_key = RSAKey.import_key(rsa_key("client-1").as_dict(private=False))  # not ours
    server = await start_server(**helseid_settings(provider, tmp_path))
    async with aiohttp.ClientSession() as http:
        response = await http.get(server.url + "/api/oidc/login", allow_redirects=False)
        assert await error_code(response) == "oidc_failed"
    assert [(r.outcome, r.resource) for r in await audit(server)] == [("failed", "oidc:par_refused")]


# -- a DPoP-bound access token is refused without a fresh proof of its key (RFC 9449 §7)


@pytest.fixture
async def bound_token(server: RunningServer, provider: OidcProvider, browser: ApiClient) -> str:
    """The access token of a completed login (as if it leaked from the server)."""
    await add_user(server, oidc_subject=NATIONAL_ID)
    assert (await follow(browser, await to_callback(server, browser))).status == 302
    [token] = provider.access_tokens
    return token


async def userinfo(provider: OidcProvider, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{provider.issuer}/userinfo", headers=headers)
        await response.read()
        return response.status


def client_key(server: RunningServer) -> DpopKey:
    """The server's own DPoP key: proofs signed with it are what a thief cannot make."""
    key = server.app[OIDC].dpop
    assert key is not None
    return key


async def test_the_bound_token_works_with_a_proof_of_its_key(
    server: RunningServer, provider: OidcProvider, bound_token: str
) -> None:
    """The control: the replays below fail for their one fault, not for another."""
    url = f"{provider.issuer}/userinfo"
    proof = client_key(server).proof("GET", url, nonce=provider.dpop_nonce, access_token=bound_token)
    assert await userinfo(provider, {"Authorization": f"DPoP {bound_token}", "DPoP": proof}) == 200


REPLAYS: dict[str, Callable[[DpopKey, str, str, str], dict[str, str]]] = {
    "as a bearer token": lambda key, url, nonce, token: {"Authorization": f"Bearer {token}"},
    "without a proof": lambda key, url, nonce, token: {"Authorization": f"DPoP {token}"},
    "proof for another method": lambda key, url, nonce, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("POST", url, nonce=nonce, access_token=token)},
    "proof for another url": lambda key, url, nonce, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url + "x", nonce=nonce, access_token=token)},
    "proof for another token": lambda key, url, nonce, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, nonce=nonce, access_token=token + "x")},
    "stale proof": lambda key, url, nonce, token: {
        "Authorization": f"DPoP {token}",
        "DPoP": key.proof("GET", url, nonce=nonce, access_token=token, now=time.time() - 600)},
    "proof by another key": lambda key, url, nonce, token: {
        "Authorization": f"DPoP {token}", "DPoP": DpopKey().proof("GET", url, nonce=nonce, access_token=token)},
}


@pytest.mark.parametrize("replay", REPLAYS.values(), ids=REPLAYS.keys())
async def test_a_replayed_token_is_refused(
    server: RunningServer, provider: OidcProvider, bound_token: str,
    replay: Callable[[DpopKey, str, str, str], dict[str, str]],
) -> None:
    url = f"{provider.issuer}/userinfo"
    assert await userinfo(provider, replay(client_key(server), url, "nonce-1", bound_token)) == 401


async def test_a_replayed_proof_is_refused(server: RunningServer, provider: OidcProvider, bound_token: str) -> None:
    url = f"{provider.issuer}/userinfo"
    headers = {
        "Authorization": f"DPoP {bound_token}",
        "DPoP": client_key(server).proof("GET", url, nonce=provider.dpop_nonce, access_token=bound_token),
    }
    assert await userinfo(provider, headers) == 200
    assert await userinfo(provider, headers) == 401, "a proof's jti is good once"


# -- woundcare's API as the resource server: a journal system's DPoP-bound token


API_AUDIENCE = "woundcare-api"


@pytest.fixture
async def api(start_server: StartServer, provider: OidcProvider, tmp_path: Path) -> RunningServer:
    server = await start_server(**helseid_settings(provider, tmp_path, oidc_api_audience=API_AUDIENCE))
    await add_user(server, hpr_number=HPR_NUMBER)
    return server


def program_token(provider: OidcProvider, key: DpopKey | None, **claims: Any) -> str:
    """What a journal system acting for the professional would get from the provider."""
    return provider.issue_access_token(
        "journal-system", key.thumbprint if key else None,
        **({"aud": API_AUDIENCE, HPR_CLAIM: HPR_NUMBER, SECURITY_LEVEL_CLAIM: "4"} | claims),
    )


async def whoami(server: RunningServer, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        response = await http.get(server.url + "/api/session", headers=headers)
        return response.status, await response.json()


async def dpop_audit(server: RunningServer) -> list[tuple[str, str | None]]:
    async with server.app[SERVICES].database.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "session.read.dpop"))).all()
    return [(row.outcome, row.resource) for row in rows]


async def test_a_program_acts_for_the_professional_with_a_proof(api: RunningServer, provider: OidcProvider) -> None:
    key = DpopKey()
    token = program_token(provider, key)
    url = api.url + "/api/session"
    status, me = await whoami(api, {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token)})
    assert status == 200, me
    assert me["user"]["name"] == "Test nurse1"
    assert me["regions"] == [{"code": "east", "name": "Region east", "roles": ["nurse"]}]
    # A second request signs a second proof; the token is good as long as the key is held.
    status, _ = await whoami(api, {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token)})
    assert status == 200
    assert await dpop_audit(api) == []


async def test_a_proof_naming_the_url_in_another_spelling_is_taken(api: RunningServer, provider: OidcProvider) -> None:
    key = DpopKey()
    token = program_token(provider, key)
    spelled = api.url.replace("http://", "HTTP://") + "/api/./session?view=full"
    status, _ = await whoami(api, {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", spelled, access_token=token)})
    assert status == 200
    assert await dpop_audit(api) == []


async def test_past_the_replay_memorys_bound_a_proof_is_answered_busy(api: RunningServer, provider: OidcProvider) -> None:
    api.app[BOUND_TOKENS].proofs.capacity = 1
    key = DpopKey()
    token = program_token(provider, key)
    url = api.url + "/api/session"
    assert (await whoami(api, {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token)}))[0] == 200
    async with aiohttp.ClientSession() as http:
        response = await http.get(url, headers={"Authorization": f"DPoP {token}",
                                                "DPoP": key.proof("GET", url, access_token=token)})
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "dpop_busy"
    assert await dpop_audit(api) == [], "no fault of the token's: not a refusal"


PROGRAM_REPLAYS: dict[str, tuple[Callable[[DpopKey, str, str], dict[str, str]], str]] = {
    "as a bearer token": (lambda key, url, token: {"Authorization": f"Bearer {token}"}, "dpop_required"),
    "without a proof": (lambda key, url, token: {"Authorization": f"DPoP {token}"}, "dpop_proof_missing"),
    "two proofs": (lambda key, url, token: {"Authorization": f"DPoP {token}", "DPoP": ", ".join(
        [key.proof("GET", url, access_token=token)] * 2)}, "dpop_proof_invalid"),
    "proof for another method": (lambda key, url, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("DELETE", url, access_token=token)}, "dpop_wrong_request"),
    "proof for another url": (lambda key, url, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url + "x", access_token=token)},
        "dpop_wrong_request"),
    "proof for another token": (lambda key, url, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token[:-2])}, "dpop_wrong_token"),
    "proof without the token's hash": (lambda key, url, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url)}, "dpop_wrong_token"),
    "stale proof": (lambda key, url, token: {
        "Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token, now=time.time() - 600)},
        "dpop_proof_stale"),
    "proof by another key": (lambda key, url, token: {
        "Authorization": f"DPoP {token}", "DPoP": DpopKey().proof("GET", url, access_token=token)}, "dpop_wrong_key"),
}


@pytest.mark.parametrize("replay, reason", PROGRAM_REPLAYS.values(), ids=PROGRAM_REPLAYS.keys())
async def test_a_programs_token_without_its_proof_is_refused_and_audited(
    api: RunningServer, provider: OidcProvider, replay: Callable[[DpopKey, str, str], dict[str, str]], reason: str
) -> None:
    key = DpopKey()
    token = program_token(provider, key)
    status, body = await whoami(api, replay(key, api.url + "/api/session", token))
    assert status == 401 and body["error"]["code"] in ("token_invalid", "dpop_invalid")
    assert await dpop_audit(api) == [("denied", f"dpop:{reason}")]


async def test_a_replayed_proof_is_refused_by_the_api(api: RunningServer, provider: OidcProvider) -> None:
    key = DpopKey()
    token = program_token(provider, key)
    headers = {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", api.url + "/api/session", access_token=token)}
    assert (await whoami(api, headers))[0] == 200
    status, body = await whoami(api, headers)
    assert status == 401 and body["error"]["code"] == "dpop_invalid"
    assert await dpop_audit(api) == [("denied", "dpop:dpop_proof_replayed")]


BAD_PROGRAM_TOKENS = {
    "not bound": (lambda provider, key: program_token(provider, None), "token_not_bound"),
    "for another api": (lambda provider, key: program_token(provider, key, aud="another-api"), "wrong_audience"),
    "expired": (lambda provider, key: program_token(provider, key, exp=int(time.time()) - 3600), "expired"),
    "a tampered signature": (lambda provider, key: program_token(provider, key)[:-8] + "AAAAAAAA", "bad_signature"),
    "no hpr number": (lambda provider, key: program_token(provider, key, **{HPR_CLAIM: None}), "unknown_user"),
    "an unknown hpr number": (lambda provider, key: program_token(provider, key, **{HPR_CLAIM: "1234567"}),
                              "unknown_user"),
    # The deployment's minimum (4) holds for a program's token as for a login through the page.
    "a weaker login": (lambda provider, key: program_token(provider, key, **{SECURITY_LEVEL_CLAIM: "3"}),
                       "security_level_too_low"),
    "no security level": (lambda provider, key: program_token(provider, key, **{SECURITY_LEVEL_CLAIM: None}),
                           "security_level_missing"),
}


@pytest.mark.parametrize("make, reason", BAD_PROGRAM_TOKENS.values(), ids=BAD_PROGRAM_TOKENS.keys())
async def test_a_bad_program_token_is_refused_even_with_a_proof(
    api: RunningServer, provider: OidcProvider, make: Callable[[OidcProvider, DpopKey], str], reason: str
) -> None:
    key = DpopKey()
    token = make(provider, key)
    proof = key.proof("GET", api.url + "/api/session", access_token=token)
    status, body = await whoami(api, {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert status == 401 and body["error"]["code"] == "token_invalid"
    assert await dpop_audit(api) == [("denied", f"dpop:{reason}")]


async def test_dpop_tokens_are_refused_where_the_api_does_not_take_them(
    server: RunningServer, provider: OidcProvider
) -> None:
    key = DpopKey()
    token = program_token(provider, key)
    proof = key.proof("GET", server.url + "/api/session", access_token=token)
    status, _ = await whoami(server, {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert status == 401
    assert await dpop_audit(server) == [("denied", "dpop:dpop_disabled")]
