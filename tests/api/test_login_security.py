"""The login and identity side of issue 15, through the real API: parallel tries cannot slip
past the throttle, client addresses behind a trusted proxy, login CSRF, the throttle not
telling names apart, foreign devices looking like none."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import aiohttp
import pytest
from argon2 import PasswordHasher
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from sqlalchemy import select

from tests.api.client import ApiClient
from tests.server import RunningServer
from tests.services import REDIS_URL
from woundcare.api.forwarded import ProxyTrust
from woundcare.appkeys import SERVICES
from woundcare.auth import passwords
from woundcare.db.models import AuditEvent, User
from woundcare.db.models import StaffRole

PASSWORD = "correct horse battery staple"
Start = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its floor: these tests count attempts, and dozens of full-cost checks in
    parallel would take a loaded machine minutes. Each hash carries its own parameters, so
    the server's dummy hash and the users' are checked at the same (low) cost."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(params=["memory", "redis"])
def ledger(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for where the login counts between tries live: this process, or Redis."""
    if request.param == "memory":
        return {}
    return {"redis_url": REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[str], ApiClient]]:
    made: list[ApiClient] = []

    def make(url: str) -> ApiClient:
        made.append(ApiClient(url))
        return made[-1]

    yield make
    for client in made:
        await client.close()


async def user_row(server: RunningServer, username: str) -> User:
    async with server.app[SERVICES].database.sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


async def audit_rows(server: RunningServer, action: str) -> list[AuditEvent]:
    async with server.app[SERVICES].database.sessions() as session:
        return list((await session.scalars(select(AuditEvent).where(AuditEvent.action == action))).all())


async def answer(response: aiohttp.ClientResponse) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]


# Finding 1: the throttle races.


async def test_fifty_parallel_wrong_passwords_all_count_and_lock_the_account(
    start_server: Start, migrated_db_url: str, ledger: dict[str, Any], clients: Callable[[str], ApiClient]
) -> None:
    server = await start_server(database_url=migrated_db_url, **ledger)
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = clients(server.url)
    responses = await asyncio.gather(*(client.login("nurse1", f"wrong {i}") for i in range(50)))
    codes = Counter([await answer(r) for r in responses])
    assert set(codes) <= {(401, "invalid_credentials"), (429, "throttled"), (403, "account_locked")}, codes
    # The wait lets one try through at a time: no more passwords are checked than the wait allows.
    assert codes[(401, "invalid_credentials")] <= 3, codes
    user = await user_row(server, "nurse1")
    assert user.failed_logins == 50
    assert user.locked_until is not None
    assert await answer(await client.login("nurse1", PASSWORD)) == (403, "account_locked")


async def test_sixty_parallel_tries_from_one_address_hit_the_address_cap(
    start_server: Start, ledger: dict[str, Any], clients: Callable[[str], ApiClient]
) -> None:
    server = await start_server(**ledger)  # the default cap: 50 failures per 10 minutes
    client = clients(server.url)
    responses = await asyncio.gather(*(client.login(f"nobody{i}", "wrong") for i in range(60)))
    codes = Counter([await answer(r) for r in responses])
    assert codes == {(401, "invalid_credentials"): 50, (429, "throttled"): 10}, codes
    body = await (await client.login("nobody0", "wrong")).json()
    assert body["error"]["code"] == "throttled" and "address" in body["error"]["message"]


# Finding 2: client addresses behind a proxy.


def mocked(peer: str, headers: list[tuple[str, str]]) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    return make_mocked_request("POST", "/api/session", headers=CIMultiDict(headers), transport=transport)


@pytest.mark.parametrize(
    ("proxies", "header", "peer", "headers", "client"),
    [
        # No proxy trusted: the headers are anyone's to forge.
        ([], "X-Forwarded-For", "127.0.0.1", [("X-Forwarded-For", "203.0.113.9")], "127.0.0.1"),
        # A peer that is not a trusted proxy is the client, whatever it says.
        (["10.0.0.1"], "X-Forwarded-For", "198.51.100.7", [("X-Forwarded-For", "203.0.113.9")], "198.51.100.7"),
        # The rightmost hop that is not a trusted proxy; what the client wrote left of it is ignored.
        (["127.0.0.1", "10.0.0.0/8"], "X-Forwarded-For", "127.0.0.1",
         [("X-Forwarded-For", "6.6.6.6, 203.0.113.9"), ("X-Forwarded-For", "10.1.2.3")], "203.0.113.9"),
        (["::1"], "X-Forwarded-For", "::1", [("X-Forwarded-For", "[2001:db8::5]:4711")], "2001:db8::5"),
        # Garbage ends the walk at the last address a trusted proxy wrote.
        (["127.0.0.1"], "X-Forwarded-For", "127.0.0.1", [("X-Forwarded-For", "203.0.113.9, bogus")], "127.0.0.1"),
        (["127.0.0.1"], "Forwarded", "127.0.0.1",
         [("Forwarded", 'for="[2001:db8::1]:4711";proto=https, for=203.0.113.9')], "203.0.113.9"),
        # Only the configured header is read: the other may be the client's own.
        (["127.0.0.1"], "Forwarded", "127.0.0.1", [("X-Forwarded-For", "203.0.113.9")], "127.0.0.1"),
        (["127.0.0.1"], "X-Forwarded-For", "127.0.0.1", [("Forwarded", "for=203.0.113.9")], "127.0.0.1"),
    ],
)
def test_client_address_rules(proxies: list[str], header: Any, peer: str, headers: list[tuple[str, str]], client: str) -> None:
    assert ProxyTrust(proxies, header).client(mocked(peer, headers)) == client


async def test_behind_a_trusted_proxy_one_clients_failures_do_not_throttle_another(
    start_server: Start, clients: Callable[[str], ApiClient]
) -> None:
    server = await start_server(trusted_proxies=["127.0.0.1"], address_failure_limit=3)
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = clients(server.url)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    for i in range(3):
        response = await client.request("POST", "/api/session", json={"username": f"nobody{i}", "password": "x"}, headers=attacker)
        assert await answer(response) == (401, "invalid_credentials")
    response = await client.request("POST", "/api/session", json={"username": "nurse1", "password": PASSWORD}, headers=attacker)
    assert await answer(response) == (429, "throttled")
    nurse = {"X-Forwarded-For": "198.51.100.20"}
    response = await client.request("POST", "/api/session", json={"username": "nurse1", "password": PASSWORD}, headers=nurse)
    assert response.status == 200
    addresses = Counter((row.outcome, row.address) for row in await audit_rows(server, "login"))
    assert addresses == {("failed", "203.0.113.66"): 3, ("ok", "198.51.100.20"): 1}


async def test_without_trusted_proxies_forged_forwarded_headers_are_ignored(
    start_server: Start, clients: Callable[[str], ApiClient]
) -> None:
    server = await start_server(address_failure_limit=3)
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = clients(server.url)
    for i in range(3):
        forged = {"X-Forwarded-For": f"203.0.113.{i}", "Forwarded": f"for=198.51.100.{i}"}
        response = await client.request("POST", "/api/session", json={"username": f"nobody{i}", "password": "x"}, headers=forged)
        assert await answer(response) == (401, "invalid_credentials")
    response = await client.request(
        "POST", "/api/session", json={"username": "nurse1", "password": PASSWORD}, headers={"X-Forwarded-For": "192.0.2.1"}
    )
    assert await answer(response) == (429, "throttled")
    assert {row.address for row in await audit_rows(server, "login")} == {"127.0.0.1"}


# Finding 6: login CSRF.


async def test_cross_site_login_is_refused_and_audited(server: RunningServer, clients: Callable[[str], ApiClient]) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = clients(server.url)
    body = '{"username": "nurse1", "password": "%s"}' % PASSWORD
    # What another site's form can send: text/plain needs no preflight.
    response = await client.request(
        "POST", "/api/session", data=body, headers={"Content-Type": "text/plain", "Origin": "https://evil.example"}
    )
    assert await answer(response) == (403, "cross_site")
    assert "wc_session" not in response.cookies
    response = await client.request(
        "POST", "/api/session", data=body, headers={"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}
    )
    assert await answer(response) == (403, "cross_site")
    response = await client.request("POST", "/api/session", data=body, headers={"Content-Type": "text/plain"})
    assert await answer(response) == (415, "json_required")
    denied = await audit_rows(server, "login.cross_site")
    assert [(row.outcome, row.address) for row in denied] == [("denied", "127.0.0.1")] * 2
    await client.json("GET", "/api/session", expect=401)
    # The site's own page: same Origin, same-origin fetch.
    response = await client.request(
        "POST", "/api/session", json={"username": "nurse1", "password": PASSWORD},
        headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert response.status == 200 and "wc_session" in response.cookies


# Finding 7: enumeration through the throttle.


async def test_the_throttle_answers_alike_for_unknown_and_existing_names(
    start_server: Start, migrated_db_url: str, ledger: dict[str, Any], clients: Callable[[str], ApiClient]
) -> None:
    # A long wait, so that no try of the run comes after it ends, however loaded the machine.
    server = await start_server(database_url=migrated_db_url, login_throttle_base_seconds=60.0, **ledger)
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = clients(server.url)

    async def run(username: str) -> list[tuple[int, str, bool]]:
        answers = []
        for _ in range(12):
            response = await client.login(username, "wrong")
            answers.append((*await answer(response), "Retry-After" in response.headers))
        return answers

    existing, unknown = await run("nurse1"), await run("nobody")
    assert existing == unknown
    assert [status for status, _, _ in existing] == [401] * 3 + [429] * 7 + [403] * 2


# Finding 10: device ids.


async def test_another_regions_device_looks_like_no_device(
    start_server: Start, migrated_db_url: str, clients: Callable[[str], ApiClient]
) -> None:
    server = await start_server(database_url=migrated_db_url)
    await server.add_user("nurse_w", PASSWORD, {"west": StaffRole.NURSE})
    await server.add_user("admin_e", PASSWORD, {"east": StaffRole.ADMIN})
    await server.add_user("admin_w", PASSWORD, {"west": StaffRole.ADMIN})
    east, west = clients(server.url), clients(server.url)
    await east.login("admin_e", PASSWORD)
    await west.login("admin_w", PASSWORD)
    device = await west.json("POST", "/api/devices", expect=201, json={"region": "west", "user": "nurse_w", "name": "kamera"})
    foreign = await east.request("DELETE", f"/api/devices/{device['id']}")
    unknown = await east.request("DELETE", f"/api/devices/{device['id'] + 1000}")
    assert foreign.status == unknown.status == 404
    assert await foreign.json() == await unknown.json()
    denied = [row for row in await audit_rows(server, "device.revoke") if row.resource == f"device:{device['id']}"]
    assert [row.outcome for row in denied] == ["denied"]
    await west.json("DELETE", f"/api/devices/{device['id']}", expect=204)  # it was not revoked
