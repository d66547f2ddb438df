"""Login, sessions, CSRF, throttling, devices and region isolation through the real API."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pyotp
import pytest
from sqlalchemy import select, update

from signaling.protocol import CloseCode, Role
from tests.api.client import ApiClient
from tests.server import RunningServer
from tests.services import REDIS_URL
from woundcare.appkeys import SERVICES
from woundcare.cli import main
from woundcare.db.models import AuditEvent, LoginSession, User
from woundcare.db.models import StaffRole

PASSWORD = "correct horse battery staple"
NATIONAL_ID = "01018012371"


@pytest.fixture
async def api(server: RunningServer) -> Any:
    clients: list[ApiClient] = []

    def make() -> ApiClient:
        client = ApiClient(server.url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def audit_rows(server: RunningServer, action: str) -> list[AuditEvent]:
    async with server.app[SERVICES].database.sessions() as session:
        return list((await session.scalars(select(AuditEvent).where(AuditEvent.action == action))).all())


async def test_login_session_and_logout(server: RunningServer, api: Any) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = api()
    response = await client.login("nurse1", PASSWORD)
    assert response.status == 200
    cookie = response.cookies["wc_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    me = await client.json("GET", "/api/session")
    assert me["regions"] == [{"code": "east", "name": "Region east", "roles": ["nurse"]}]
    await client.json("DELETE", "/api/session", expect=204)
    await client.json("GET", "/api/session", expect=401)


async def test_state_change_without_csrf_token_is_refused(server: RunningServer, api: Any) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = api()
    await client.login("nurse1", PASSWORD)
    body = {"region": "east", "nationalId": NATIONAL_ID, "name": "Ola Test"}
    response = await client.request("POST", "/api/patients", json=body, csrf=False)
    assert response.status == 403 and (await response.json())["error"]["code"] == "csrf_failed"
    response = await client.request("POST", "/api/patients", json=body, headers={"Origin": "https://evil.example"})
    assert response.status == 403
    denied = await audit_rows(server, "patient.create.csrf")
    assert len(denied) == 2 and all(r.outcome == "denied" for r in denied)
    await client.json("POST", "/api/patients", expect=201, json=body)


async def test_expired_and_revoked_sessions_are_refused(server: RunningServer, api: Any) -> None:
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    expired, revoked = api(), api()
    await expired.login("spes", PASSWORD)
    await revoked.login("spes", PASSWORD)
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        rows = (await session.scalars(select(LoginSession).order_by(LoginSession.created_at))).all()
        await session.execute(update(LoginSession).where(LoginSession.id == rows[0].id).values(
            expires_at=rows[0].created_at))
    await expired.json("GET", "/api/session", expect=401)
    await revoked.json("GET", "/api/session")
    async with server.app[SERVICES].database.sessions() as session, session.begin():
        await session.execute(update(LoginSession).where(LoginSession.id == rows[1].id).values(
            revoked_at=rows[1].created_at))
    await revoked.json("GET", "/api/session", expect=401)


async def test_wrong_passwords_are_throttled_then_locked_and_audited(start_server: Any) -> None:
    server = await start_server(login_throttle_after=2, login_throttle_base_seconds=0.2, login_lock_after=4)
    await server.add_user("lead", PASSWORD, {"east": StaffRole.PILOT_LEAD})
    client = ApiClient(server.url)
    try:
        codes = []
        for _ in range(2):
            response = await client.login("lead", "wrong")
            codes.append((response.status, (await response.json())["error"]["code"]))
        assert codes == [(401, "invalid_credentials")] * 2
        # After two failures in a row each try must wait, even with the right password.
        response = await client.login("lead", PASSWORD)
        assert response.status == 429 and (await response.json())["error"]["code"] == "throttled"
        assert int(response.headers["Retry-After"]) >= 1
        await asyncio.sleep(0.25)
        # Every attempt counts, the refused one too: the fourth locks.
        assert (await client.login("lead", "wrong")).status == 401
        response = await client.login("lead", PASSWORD)
        assert response.status == 403 and (await response.json())["error"]["code"] == "account_locked"
        outcomes = [r.outcome for r in await audit_rows(server, "login")]
        assert outcomes.count("failed") == 3 and "throttled" in outcomes and outcomes.count("locked") >= 2
    finally:
        await client.close()


async def test_two_instances_share_the_login_waits_and_address_counts_through_redis(
    start_server: Any, migrated_database_url: str, redis_prefix: str
) -> None:
    shared = {
        "database_url": migrated_database_url, "redis_url": REDIS_URL, "redis_prefix": redis_prefix,
        "login_throttle_after": 1, "login_throttle_base_seconds": 30.0, "address_failure_limit": 4,
    }
    a = await start_server(**shared)
    b = await start_server(**shared, auto_migrate=False)
    for name in ("u1", "u2", "u3", "u4", "u5"):
        await a.add_user(name, PASSWORD, {"east": StaffRole.NURSE})
    at_a, at_b = ApiClient(a.url), ApiClient(b.url)
    try:
        assert (await at_a.login("u1", "wrong")).status == 401
        # The wait after a failure on A holds on B (each instance's memory would not know).
        response = await at_b.login("u1", PASSWORD)
        assert response.status == 429 and (await response.json())["error"]["code"] == "throttled"
        assert int(response.headers["Retry-After"]) > 20

        assert (await at_b.login("u2", "wrong")).status == 401
        assert (await at_a.login("u3", "wrong")).status == 401
        assert (await at_b.login("u4", "wrong")).status == 401
        # Four failures from this address, two on each instance: the limit is theirs together.
        response = await at_a.login("u5", PASSWORD)
        body = await response.json()
        assert response.status == 429 and body["error"]["code"] == "throttled", body
        assert "address" in body["error"]["message"]
    finally:
        await at_a.close()
        await at_b.close()


async def test_patient_of_another_region_looks_like_no_patient(server: RunningServer, api: Any) -> None:
    await server.add_user("nurse_a", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("nurse_b", PASSWORD, {"west": StaffRole.NURSE})
    a, b = api(), api()
    await a.login("nurse_a", PASSWORD)
    await b.login("nurse_b", PASSWORD)
    patient = await b.json("POST", "/api/patients", expect=201,
                           json={"region": "west", "nationalId": NATIONAL_ID, "name": "Kari Vest"})
    assert (await b.json("GET", f"/api/patients/{patient['id']}"))["name"] == "Kari Vest"
    foreign = await a.request("GET", f"/api/patients/{patient['id']}")
    missing = await a.request("GET", "/api/patients/doesNotExist123")
    assert foreign.status == missing.status == 404
    assert await foreign.json() == await missing.json()
    assert (await a.json("GET", "/api/patients"))["patients"] == []
    response = await a.request("POST", "/api/consultations", json={"patient": patient["id"]})
    assert response.status == 404


@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    [
        ("POST", "/api/patients", StaffRole.NURSE, {"region": "west", "nationalId": ""}),
        ("POST", "/api/devices", StaffRole.ADMIN, {"region": "west", "user": ""}),
        ("PUT", "/api/pilot/travel", StaffRole.PILOT_LEAD, {"region": "west", "municipality": "Bø", "km": -1}),
    ],
)
async def test_a_foreign_region_is_refused_before_the_rest_of_the_body(
    server: RunningServer, api: Any, method: str, path: str, role: StaffRole, body: dict[str, Any]
) -> None:
    # The right in the region comes first: a broken form for a foreign region is a denied
    # attempt there (403, audited with the region), not a 400 that tells about the form.
    await server.add_user("east_only", PASSWORD, {"east": role})
    west = await server.region("west")
    client = api()
    await client.login("east_only", PASSWORD)
    refused = await client.json(method, path, expect=403, json=body)
    assert refused["error"]["code"] == "forbidden"
    async with server.app[SERVICES].database.sessions() as session:
        last = await session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert last is not None and (last.outcome, last.region_id) == ("denied", west)
    broken = await client.json(method, path, expect=400, json={**body, "region": "east"})
    assert broken["error"]["code"] == "bad_request"


async def test_a_patient_form_is_told_its_first_broken_field_in_form_order(server: RunningServer, api: Any) -> None:
    # Region (403 above), then the identity number with its control digits, then the name.
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    client = api()
    await client.login("nurse1", PASSWORD)
    bad_digits = NATIONAL_ID[:-1] + "2"
    refused = await client.json("POST", "/api/patients", expect=400, json={"region": "east", "nationalId": bad_digits})
    assert refused["error"]["code"] == "bad_national_id"
    refused = await client.json("POST", "/api/patients", expect=400, json={"region": "east", "nationalId": NATIONAL_ID})
    assert (refused["error"]["code"], refused["error"]["message"]) == ("bad_request", "'name' is required")
    assert (await client.json("GET", "/api/patients"))["patients"] == []


async def test_revoked_device_is_disconnected_from_signaling(server: RunningServer, api: Any) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("admin", PASSWORD, {"east": StaffRole.ADMIN})
    admin = api()
    await admin.login("admin", PASSWORD)
    device = await admin.json("POST", "/api/devices", expect=201, json={"region": "east", "user": "nurse1", "name": "hodekamera 1"})
    camera = api()
    camera.bearer = device["token"]
    patient = await camera.json("POST", "/api/patients", expect=403,
                                json={"region": "east", "nationalId": NATIONAL_ID, "name": "X"})
    assert patient["error"]["code"] == "forbidden"  # a device cannot register patients
    nurse = api()
    await nurse.login("nurse1", PASSWORD)
    created = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": NATIONAL_ID, "name": "Per Øst"})
    consultation = await camera.json("POST", "/api/consultations", expect=201, json={"patient": created["id"]})
    token = (await camera.json("POST", f"/api/consultations/{consultation['id']}/join-token"))["token"]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{server.url}/ws")
        await ws.send_json({"type": "join", "v": 1, "consultation": consultation["id"], "role": "nurse", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "joined"
        await admin.json("DELETE", f"/api/devices/{device['id']}", expect=204)
        loop = asyncio.get_running_loop()
        revoked_at = loop.time()
        frame = await ws.receive_json(timeout=5)
        assert (frame["type"], frame["code"]) == ("error", "revoked")
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == CloseCode.UNAUTHORIZED
        assert loop.time() - revoked_at < 5
        # Its join token is still signed and unexpired, but admission reads the device again.
        again = await session.ws_connect(f"{server.url}/ws")
        await again.send_json({"type": "join", "v": 1, "consultation": consultation["id"], "role": "nurse",
                               "token": token})
        frame = await again.receive_json(timeout=5)
        assert (frame["type"], frame["code"]) == ("error", "token_invalid")
        assert (await again.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert again.close_code == CloseCode.UNAUTHORIZED
    await camera.json("GET", "/api/session", expect=401)


async def test_join_token_matches_the_role_the_policy_grants(server: RunningServer, api: Any) -> None:
    await server.add_user("nurse1", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    nurse, spes = api(), api()
    await nurse.login("nurse1", PASSWORD)
    await spes.login("spes", PASSWORD)
    patient = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": NATIONAL_ID, "name": "Per Øst"})
    consultation = await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]})
    queue = await spes.json("GET", "/api/consultations/queue")
    assert [c["id"] for c in queue["consultations"]] == [consultation["id"]]
    grant = await spes.json("POST", f"/api/consultations/{consultation['id']}/join-token")
    assert grant["role"] == Role.SPECIALIST.value
    grant = await nurse.json("POST", f"/api/consultations/{consultation['id']}/join-token")
    assert grant["role"] == Role.NURSE.value


async def test_totp_second_factor_enrolled_by_cli(server: RunningServer, api: Any, capsys: pytest.CaptureFixture[str]) -> None:
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    before = api()
    await before.login("spes", PASSWORD)
    code = await asyncio.to_thread(main, ["user", "totp", "spes", "--data-dir", str(server.settings.data_dir)])
    assert code == 0
    out = capsys.readouterr().out
    secret = re.search(r"secret \(shown once\): ([A-Z2-7]+)", out)
    assert secret is not None and "otpauth://totp/" in out
    await before.json("GET", "/api/session", expect=401)  # enrolment ends existing sessions
    client = api()
    response = await client.login("spes", PASSWORD)
    assert (response.status, (await response.json())["error"]["code"]) == (401, "totp_required")
    wrong = f"{(int(pyotp.TOTP(secret.group(1)).now()) + 1) % 1_000_000:06d}"
    response = await client.login("spes", PASSWORD, totp=wrong)
    assert (response.status, (await response.json())["error"]["code"]) == (401, "invalid_totp")
    response = await client.login("spes", PASSWORD, totp=pyotp.TOTP(secret.group(1)).now())
    assert response.status == 200
    assert (await client.json("GET", "/api/session"))["user"]["name"] == "Test spes"
    assert [r.outcome for r in await audit_rows(server, "admin.user.totp")] == ["ok"]


async def test_disabled_user_and_their_devices_are_disconnected_from_signaling(server: RunningServer, api: Any) -> None:
    await server.add_user("nurse2", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("admin", PASSWORD, {"east": StaffRole.ADMIN})
    admin = api()
    await admin.login("admin", PASSWORD)
    device = await admin.json("POST", "/api/devices", expect=201, json={"region": "east", "user": "nurse2", "name": "hodekamera 2"})
    nurse, camera = api(), api()
    await nurse.login("nurse2", PASSWORD)
    camera.bearer = device["token"]
    tokens = []
    # Two patients: one national id is one patient (issue 18).
    for client, number in ((nurse, NATIONAL_ID), (camera, "01018010018")):
        patient = await nurse.json("POST", "/api/patients", expect=201,
                                   json={"region": "east", "nationalId": number, "name": "Per Øst"})
        consultation = await client.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]})
        token = (await client.json("POST", f"/api/consultations/{consultation['id']}/join-token"))["token"]
        tokens.append((consultation["id"], token))
    async with aiohttp.ClientSession() as session:
        sockets = []
        for consultation, token in tokens:
            ws = await session.ws_connect(f"{server.url}/ws")
            await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": "nurse", "token": token})
            assert (await ws.receive_json(timeout=5))["type"] == "joined"
            sockets.append(ws)
        async with server.app[SERVICES].database.sessions() as db, db.begin():
            await db.execute(update(User).where(User.username == "nurse2").values(active=False))
        for ws in sockets:  # the user's own socket, and their device's
            frame = await ws.receive_json(timeout=10)
            assert (frame["type"], frame["code"]) == ("error", "revoked")
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == CloseCode.UNAUTHORIZED
