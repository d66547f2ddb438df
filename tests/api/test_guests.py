"""Guests of a call (issue 19, protocol §3.4): a specialist of the consultation's region invites
an interpreter by a one-time link; the link opens the call once, for one browser; the guest may
join as an observer and fetch ICE servers, nothing else, and its refusals are audited; a
withdrawn guest is put out and kept out. Through the real API and /ws, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from signaling.protocol import CloseCode
from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent, ConsultationEvent, StaffRole

PASSWORD = "guests test password"
NATIONAL_ID = "01018012371"


@dataclass
class Call:
    server: RunningServer
    nurse: ApiClient
    specialist: ApiClient
    west_specialist: ApiClient
    patient: str
    consultation: str
    clients: list[ApiClient]

    def client(self) -> ApiClient:
        client = ApiClient(self.server.url)
        self.clients.append(client)
        return client


@pytest.fixture
async def call(start_server: Any, migrated_db_url: str) -> AsyncIterator[Call]:
    server = await start_server(database_url=migrated_db_url)
    await server.add_user("nurse", PASSWORD, {"east": StaffRole.NURSE})
    await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
    await server.add_user("west", PASSWORD, {"west": StaffRole.SPECIALIST})
    clients = [ApiClient(server.url) for _ in range(3)]
    for client, name in zip(clients, ("nurse", "spes", "west"), strict=True):
        await client.login(name, PASSWORD)
    nurse = clients[0]
    patient = await nurse.json("POST", "/api/patients", expect=201,
                               json={"region": "east", "nationalId": NATIONAL_ID, "name": "Per Øst"})
    consultation = (await nurse.json("POST", "/api/consultations", expect=201, json={"patient": patient["id"]}))["id"]
    found = Call(server, *clients, patient=patient["id"], consultation=consultation, clients=clients)
    yield found
    for client in found.clients:
        await client.close()


async def audit_rows(server: RunningServer, action: str) -> list[AuditEvent]:
    async with server.app[SERVICES].database.sessions() as session:
        return list((await session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))).all())


def code_of(link: str) -> str:
    page, _, code = link.partition("#")
    assert page == "/guest" and code.startswith("wcg_")
    return code


async def test_only_a_specialist_of_the_region_invites(call: Call) -> None:
    path = f"/api/consultations/{call.consultation}/invitations"
    # Nurses do not invite (least privilege: the specialist leads the call), nor do the region's
    # pilot lead and admin, who may not join a call and so must not watch one as a guest.
    await call.server.add_user("lead", PASSWORD, {"east": StaffRole.PILOT_LEAD})
    await call.server.add_user("admin", PASSWORD, {"east": StaffRole.ADMIN})
    for name, client in (("nurse", call.nurse), ("lead", call.client()), ("admin", call.client())):
        if name != "nurse":
            await client.login(name, PASSWORD)
        refused = await client.json("POST", path, expect=403, json={"kind": "interpreter"})
        assert refused["error"]["code"] == "forbidden"
    # Another region's specialist does not see the consultation at all.
    await call.west_specialist.json("POST", path, expect=404, json={"kind": "interpreter"})
    await call.west_specialist.json("GET", path, expect=404)
    await call.specialist.json("POST", path, expect=400, json={"kind": "cousin"})
    made = await call.specialist.json("POST", path, expect=201, json={"kind": "gp"})
    assert (made["kind"], made["redeemed"], made["revoked"]) == ("gp", False, False)
    code_of(made["link"])
    listed = (await call.specialist.json("GET", path))["guests"]
    assert [g["id"] for g in listed] == [made["id"]] and "link" not in listed[0]
    outcomes = [(r.actor is not None, r.outcome) for r in await audit_rows(call.server, "consultation.invite")]
    assert ("denied" in [o for _, o in outcomes]) and outcomes.count((True, "ok")) == 2


async def test_the_link_opens_the_call_once_for_one_browser(call: Call) -> None:
    made = await call.specialist.json("POST", f"/api/consultations/{call.consultation}/invitations", expect=201,
                                      json={"kind": "interpreter"})
    code = code_of(made["link"])
    guest, stranger = call.client(), call.client()
    first = await guest.json("POST", "/api/guest/join", json={"code": code})
    assert (first["consultation"], first["role"], first["kind"]) == (call.consultation, "observer", "interpreter")
    second = await stranger.json("POST", "/api/guest/join", expect=409, json={"code": code})
    assert second["error"]["code"] == "invitation_used"
    # The browser that redeemed it comes back with its cookie (a reload), the other cannot.
    again = await guest.json("POST", "/api/guest/join", json={})
    assert (again["consultation"], again["role"]) == (call.consultation, "observer")
    await stranger.json("POST", "/api/guest/join", expect=401, json={})
    await stranger.json("POST", "/api/guest/join", expect=404, json={"code": "wcg_" + "x" * 43})
    rows = await audit_rows(call.server, "guest.join")
    assert [(r.outcome, r.resource) for r in rows] == [
        ("ok", f"consultation:{call.consultation}"),
        ("denied", f"consultation:{call.consultation}"),
        ("ok", f"consultation:{call.consultation}"),
        ("denied", None),
        ("denied", None),
    ]
    assert rows[0].actor == rows[2].actor == made["subject"] and rows[1].actor is None


async def test_a_guest_joins_as_observer_and_is_refused_the_record_and_photos(call: Call) -> None:
    made = await call.specialist.json("POST", f"/api/consultations/{call.consultation}/invitations", expect=201,
                                      json={"kind": "relative"})
    guest = call.client()
    token = (await guest.json("POST", "/api/guest/join", json={"code": code_of(made["link"])}))["token"]
    # The guest cookie is the guest on the API: ICE servers, nothing of the record.
    assert "iceServers" in await guest.json("GET", "/api/ice-servers")
    for path in (f"/api/patients/{call.patient}", f"/api/consultations/{call.consultation}/snapshots",
                 f"/api/consultations/{call.consultation}", f"/api/consultations/{call.consultation}/assessment"):
        assert (await guest.json("GET", path, expect=403))["error"]["code"] == "forbidden"
    refused = await audit_rows(call.server, "patient.read")
    assert [(r.actor, r.outcome) for r in refused] == [(made["subject"], "denied")]
    nurse_token = (await call.nurse.json("POST", f"/api/consultations/{call.consultation}/join-token"))["token"]
    async with aiohttp.ClientSession() as session:
        camera = await session.ws_connect(f"{call.server.url}/ws")
        await camera.send_json({"type": "join", "v": 1, "consultation": call.consultation, "role": "nurse",
                                "token": nurse_token})
        assert (await camera.receive_json(timeout=5))["type"] == "joined"
        observer = await session.ws_connect(f"{call.server.url}/ws")
        await observer.send_json({"type": "join", "v": 1, "consultation": call.consultation, "role": "observer",
                                  "token": token})
        joined = await observer.receive_json(timeout=5)
        assert joined["type"] == "joined" and joined["you"]["name"] == "relative"
        presence = await camera.receive_json(timeout=5)
        assert (presence["participant"]["role"], presence["participant"]["name"]) == ("observer", "relative")
        for frame in ({"type": "snapshot_request", "id": "r1"}, {"type": "chat", "text": "hei"}):
            await observer.send_json(frame)
            error = await observer.receive_json(timeout=5)
            assert (error["type"], error["code"], error["ref"]) == ("error", "forbidden", frame["type"])
        await observer.send_json({"type": "answer", "to": joined["peers"][0]["id"], "sdp": "v=0"})
        relayed = await camera.receive_json(timeout=5)
        assert relayed["type"] == "answer"  # what it may send still goes; the refused never did
        # Written beside the relay, not in its way: wait for both.
        for _ in range(200):
            audited = await audit_rows(call.server, "signaling.snapshot_request")
            chats = await audit_rows(call.server, "signaling.chat")
            if audited and chats:
                break
            await asyncio.sleep(0.05)
        for row in (*audited, *chats):
            assert (row.actor, row.role, row.outcome, row.resource) == (
                made["subject"], "observer", "denied", f"consultation:{call.consultation}")
        assert (len(audited), len(chats)) == (1, 1)
        await call.server.app[SERVICES].session_log.flush()
        async with call.server.app[SERVICES].database.sessions() as db:
            logged = (await db.scalars(select(ConsultationEvent.detail).where(
                ConsultationEvent.consultation_id == call.consultation, ConsultationEvent.kind == "refused"))).all()
        assert sorted(logged) == ["chat", "snapshot_request"]
        await camera.close()
        await observer.close()


async def test_a_withdrawn_guest_is_put_out_and_kept_out(call: Call) -> None:
    path = f"/api/consultations/{call.consultation}/invitations"
    made = await call.specialist.json("POST", path, expect=201, json={"kind": "interpreter"})
    guest = call.client()
    token = (await guest.json("POST", "/api/guest/join", json={"code": code_of(made["link"])}))["token"]
    join = {"type": "join", "v": 1, "consultation": call.consultation, "role": "observer", "token": token}
    async with aiohttp.ClientSession() as session:
        observer = await session.ws_connect(f"{call.server.url}/ws")
        await observer.send_json(join)
        assert (await observer.receive_json(timeout=5))["type"] == "joined"
        await call.west_specialist.json("DELETE", f"{path}/{made['id']}", expect=404)
        await call.specialist.json("DELETE", f"{path}/nope", expect=404)
        await call.specialist.request("DELETE", f"{path}/{made['id']}")
        closing = await observer.receive_json(timeout=5)
        assert (closing["type"], closing["code"]) == ("error", "revoked")
        closed = await observer.receive(timeout=5)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, CloseCode.UNAUTHORIZED)
        # Its join token still verifies, but the join asks whether the guest still stands.
        again = await session.ws_connect(f"{call.server.url}/ws")
        await again.send_json(join)
        refused = await again.receive_json(timeout=5)
        assert (refused["code"], refused["message"]) == ("forbidden", "this guest link has been withdrawn")
        await again.close()
    assert (await guest.json("POST", "/api/guest/join", expect=410, json={}))["error"]["code"] == "invitation_revoked"
    await guest.json("GET", "/api/ice-servers", expect=401)
    listed = (await call.specialist.json("GET", path))["guests"]
    assert [(g["redeemed"], g["revoked"]) for g in listed] == [(True, True)]


async def test_an_ended_call_takes_no_guests(call: Call) -> None:
    path = f"/api/consultations/{call.consultation}/invitations"
    made = await call.specialist.json("POST", path, expect=201, json={"kind": "gp"})
    await call.specialist.request("POST", f"/api/consultations/{call.consultation}/end")
    assert (await call.client().json("POST", "/api/guest/join", expect=409,
                                     json={"code": code_of(made["link"])}))["error"]["code"] == "ended"
    assert (await call.specialist.json("POST", path, expect=409, json={"kind": "gp"}))["error"]["code"] == "ended"


async def test_two_browsers_redeeming_at_once_get_one_call(call: Call) -> None:
    made = await call.specialist.json("POST", f"/api/consultations/{call.consultation}/invitations", expect=201,
                                      json={"kind": "interpreter"})
    code = code_of(made["link"])
    answers = await asyncio.gather(*(c.request("POST", "/api/guest/join", json={"code": code})
                                     for c in (call.client(), call.client(), call.client())))
    assert sorted(a.status for a in answers) == [200, 409, 409]


async def test_wrong_codes_from_one_address_are_throttled_before_the_audit_log(
    start_server: Any, migrated_db_url: str
) -> None:
    """The redemption is public: a flood of guessed codes is counted per address like failed
    logins (apart from them) and stopped with 429 before it can fill the audit chain."""
    server = await start_server(database_url=migrated_db_url, address_failure_limit=3)
    client = ApiClient(server.url)
    try:
        for _ in range(3):
            await client.json("POST", "/api/guest/join", expect=404, json={"code": "wcg_" + "x" * 43})
        refused = await client.json("POST", "/api/guest/join", expect=429, json={"code": "wcg_" + "y" * 43})
        assert refused["error"]["code"] == "throttled"
        assert [r.outcome for r in await audit_rows(server, "guest.join")] == ["denied"] * 3
        # Counted apart from passwords: the address may still log in.
        await server.add_user("spes", PASSWORD, {"east": StaffRole.SPECIALIST})
        assert (await client.login("spes", PASSWORD)).status == 200
    finally:
        await client.close()
