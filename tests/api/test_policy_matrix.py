"""The matrix over HTTP: every route has a rule and a documented row, and asks authorize.

Which role may take which action in which region is table-tested without a server in
``tests/auth/test_policy.py``. Here each route is tried once on another region's resource
by a role it allows (refused as today: 404 where a resource is hidden, 403 where a region
is named, filtered where a list is asked for) and once by a role it does not allow (403),
and each refusal must be the policy's: audited as denied, for that region.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select

from signaling import protocol
from tests.api.client import ApiClient
from tests.auth.matrix import ROLES, documented
from tests.recording.media import stored_recording
from tests.server import RunningServer
from woundcare.api.guard import rule_of
from woundcare.appkeys import SERVICES
from woundcare.auth.policy import RULES, Action
from woundcare.auth.subject import Subject
from woundcare.db.models import AuditEvent, Consultation, Patient, StaffRole

PASSWORD = "matrix password 1"
REGION_FREE = {
    "GET /api/session", "DELETE /api/session", "GET /api/regions", "GET /api/ice-servers",
    "GET /api/consultations/live",
}
"""Routes that name no region's resource: allowed or not by role alone (the live list holds
only the caller's own consultations of her regions)."""
FILTERED = {
    "GET /api/patients": "patients", "GET /api/consultations/queue": "consultations",
    "GET /api/consultations/econsults": "consultations", "GET /api/plans/unacknowledged": "plans",
}
"""Lists, by the key they are under: another region's entries are left out, the request itself is allowed."""


def test_every_api_route_has_a_rule_and_a_documented_row(tmp_path: Path) -> None:
    from woundcare.app import create_app
    from woundcare.config import Settings

    app = create_app(Settings(data_dir=tmp_path, demo=False))
    rows = documented()
    routes = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/") and route.method != "HEAD":
            routes[f"{route.method} {path}"] = rule_of(route.handler)
    assert routes, "no API routes found"
    for name, rule in routes.items():
        assert rule is not None, f"{name} has no authorization rule"
        assert name in rows, f"{name} is missing from the matrix in docs/security.md"
        action = rule.value if isinstance(rule, Action) else rule
        assert rows[name][0] == action, f"{name}: docs say {rows[name][0]}, code says {action}"
        if isinstance(rule, Action):
            allowed = {role for role, yes in rows[name][1].items() if yes}
            assert allowed == set(RULES[rule]), f"{name}: docs and RULES disagree"
    assert set(rows) - set(routes) == {"WS /ws join"}, "documented routes that do not exist"


@dataclass
class Foreign:
    """One of each resource, all in region ``b``; the callers serve region ``a``."""

    region_id: int
    consultation: str
    patient: str
    snapshot: str
    recording: str
    device: int


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (180, 90, 80)).save(out, "JPEG")
    return out.getvalue()


async def foreign(server: RunningServer, nurse_b: int) -> Foreign:
    consultation = await server.new_consultation("b")
    view = await server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    async with server.app[SERVICES].database.sessions() as session:
        patient = await session.scalar(
            select(Patient.pseudonym).join(Consultation, Consultation.patient_id == Patient.id)
            .where(Consultation.id == consultation)
        )
    assert patient is not None
    snapshot = await server.app[SERVICES].snapshots.store(view.id, view.region_id, view.patient_id, small_jpeg(), "u0")
    recording = await stored_recording(server, consultation)
    device, _ = await server.app[SERVICES].devices.issue(nurse_b, view.region_id, "cam")
    return Foreign(view.region_id, consultation, patient, snapshot.id, recording.id, device)


def request_for(route: str, there: Foreign) -> tuple[str, str, dict[str, Any] | None]:
    """Method, path and body of ``route`` aimed at region ``b``'s resource."""
    method, path = route.split(" ", 1)
    ids = {
        "/api/snapshots/": there.snapshot, "/api/patients/": there.patient,
        "/api/recordings/": there.recording, "/api/devices/": str(there.device),
    }
    path = path.replace("{id}", next((v for k, v in ids.items() if path.startswith(k)), there.consultation))
    path = path.replace("{invitation}", "none")  # the consultation's region decides first
    body: dict[str, Any] | None = None
    if route in ("POST /api/patients", "POST /api/patients/lookup", "POST /api/retention/purge"):
        body = {"region": "b", "nationalId": "01018012371", "name": "Matrix Test"}
    elif route == "POST /api/consultations":
        body = {"patient": there.patient}
    elif route == "POST /api/devices":
        body = {"region": "b", "user": "nurse_b", "name": "cam"}
    elif route == "PUT /api/pilot/travel":
        body = {"region": "b", "municipality": "3403 Hamar", "km": 86, "hours": 1.4}
    elif method == "GET" and path.startswith(("/api/patients", "/api/pilot/", "/api/retention")) and "{" not in route:
        path += "?region=b"
    return method, path, body


async def last_audit(server: RunningServer) -> AuditEvent:
    async with server.app[SERVICES].database.sessions() as session:
        row = await session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    assert row is not None
    return row


async def test_every_route_asks_authorize_for_the_region_it_touches(server: RunningServer) -> None:
    for role in ROLES:
        await server.add_user(f"{role.value}_a", PASSWORD, {"a": role})
    there = await foreign(server, await server.add_user("nurse_b", PASSWORD, {"b": StaffRole.NURSE}))
    clients: dict[StaffRole, ApiClient] = {}
    for role in ROLES:
        clients[role] = ApiClient(server.url)
        assert (await clients[role].login(f"{role.value}_a", PASSWORD)).status == 200
    wrong = []
    try:
        # Logging out ends the client's session: that route goes last.
        for route, (action, allowed) in sorted(documented().items(), key=lambda r: r[0] == "DELETE /api/session"):
            if action == "public" or route.startswith("WS "):
                continue
            method, path, body = request_for(route, there)
            refused = next(role for role in ROLES if not allowed[role]) if not all(allowed.values()) else None
            if refused is not None:
                response = await clients[refused].request(method, path, json=body)
                audit = await last_audit(server)
                got = (response.status, audit.action, audit.outcome)
                if got != (403, action, "denied"):
                    wrong.append(f"{route} as {refused.value}: got {got}, expected 403 denied")
            role = next(role for role in ROLES if allowed[role])
            response = await clients[role].request(method, path, json=body)
            if route in REGION_FREE:
                if response.status not in (200, 204):
                    wrong.append(f"{route} as {role.value}: {response.status}, expected it allowed")
                continue
            if route in FILTERED:
                listed = (await response.json())[FILTERED[route]]
                if response.status != 200 or listed:
                    wrong.append(f"{route} as {role.value}: {response.status}, listed {len(listed)} of region b")
                continue
            expected = 404 if "{id}" in route or route == "POST /api/consultations" else 403
            audit = await last_audit(server)
            got = (response.status, audit.action, audit.outcome, audit.region_id)
            if got != (expected, action, "denied", there.region_id):
                wrong.append(f"{route} as {role.value} on region b: got {got}, expected {expected} denied there")
    finally:
        for client in clients.values():
            await client.close()
    assert not wrong, "\n".join(wrong)


async def ws_join(server: RunningServer, consultation: str, region: str, user_id: int) -> dict[str, Any]:
    token = server.invite(consultation, protocol.Role.NURSE, region=region, subject=Subject.user_ref(user_id))
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}/ws") as ws:
        await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": "nurse", "token": token})
        frame: dict[str, Any] = await ws.receive_json(timeout=5)
    return frame


@pytest.mark.parametrize("role", [StaffRole.NURSE, StaffRole.PILOT_LEAD], ids=["allowed", "refused"])
async def test_a_ws_join_asks_authorize_for_the_room(server: RunningServer, role: StaffRole) -> None:
    """A join token carrying a user's identity is checked by the policy again at join time."""
    user_id = await server.add_user("joiner", PASSWORD, {"a": role})
    own = await ws_join(server, await server.new_consultation("a"), "a", user_id)
    assert own["type"] == ("joined" if role is StaffRole.NURSE else "error"), own
    other = await ws_join(server, await server.new_consultation("b"), "b", user_id)
    assert (other["type"], other.get("code")) == ("error", "forbidden"), other
