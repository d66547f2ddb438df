"""Every role x region x route, against the matrix in docs/security.md."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from signaling.protocol import Role as WireRole
from tests.api.client import ApiClient
from tests.recording.media import stored_recording
from tests.server import RunningServer
from woundcare.api.guard import rule_of
from woundcare.appkeys import SERVICES
from woundcare.auth.policy import RULES, Action
from woundcare.db.models import ConsentKind, Outcome, Role
from woundcare.records.assessments import AssessmentContent

DOC = Path(__file__).parents[2] / "docs" / "security.md"
ROLES = [Role.NURSE, Role.SPECIALIST, Role.PILOT_LEAD, Role.ADMIN]
PASSWORD = "matrix password 1"
REGION_FREE = {
    "POST /api/session", "GET /api/session", "DELETE /api/session", "GET /api/regions", "GET /api/ice-servers",
    "GET /api/consultations/live",
}
"""Routes that name no region's resource: allowed or not by role alone (the live list holds
only the caller's own consultations of her regions)."""


def documented() -> dict[str, tuple[str, dict[Role, bool]]]:
    rows: dict[str, tuple[str, dict[Role, bool]]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.match(r"^(GET|POST|PUT|PATCH|DELETE|WS) /", cells[0]):
            rows[cells[0]] = (cells[1], {role: cells[2 + i] == "yes" for i, role in enumerate(ROLES)})
    return rows


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
class World:
    server: RunningServer
    user_ids: dict[tuple[str, Role], int]
    patients: dict[str, str]

    async def consultation(self, region: str) -> str:
        return await self.server.new_consultation(region)

    async def login(self, region: str, role: Role) -> ApiClient:
        client = ApiClient(self.server.url)
        response = await client.login(f"{role.value}_{region}", PASSWORD)
        assert response.status == 200
        return client


@pytest.fixture
async def world(server: RunningServer) -> World:
    user_ids = {}
    for region in ("a", "b"):
        for role in ROLES:
            user_ids[(region, role)] = await server.add_user(f"{role.value}_{region}", PASSWORD, {region: role})
    patients = {}
    for region in ("a", "b"):
        consultation = await server.new_consultation(region)
        patients[region] = await patient_of(server, consultation)
    return World(server, user_ids, patients)


async def patient_of(server: RunningServer, consultation: str) -> str:
    from sqlalchemy import select

    from woundcare.db.models import Consultation, Patient

    async with server.app[SERVICES].database.sessions() as session:
        pseudonym = await session.scalar(
            select(Patient.pseudonym).join(Consultation, Consultation.patient_id == Patient.id)
            .where(Consultation.id == consultation)
        )
    assert pseudonym is not None
    return pseudonym


async def attempt(world: World, route: str, client: ApiClient, region: str, role: Role) -> bool:
    """Try ``route`` on a resource of ``region``; True if it was allowed."""
    method, path = route.split(" ", 1)
    body: dict[str, Any] | None = None
    if route == "WS /ws join":
        return await ws_join(world, region, role)
    if "{id}" in path:
        if path.startswith("/api/snapshots"):
            path = path.replace("{id}", await snapshot_in(world, region))
        elif path.startswith("/api/patients"):
            path = path.replace("{id}", world.patients[region])
        elif path.startswith("/api/recordings"):
            path = path.replace("{id}", await recording_in(world, region, live=route.endswith("/stop")))
        elif path.startswith("/api/devices"):
            device_id, _ = await world.server.app[SERVICES].devices.issue(
                world.user_ids[(region, Role.NURSE)], await world.server.region(region), "cam")
            path = path.replace("{id}", str(device_id))
        else:
            consultation = await world.consultation(region)
            path = path.replace("{id}", consultation)
            if route in ("POST /api/consultations/{id}/snapshots", "POST /api/consultations/{id}/recordings"):
                view = await world.server.app[SERVICES].consultations.get(consultation)
                assert view is not None
                await world.server.app[SERVICES].consents.record(
                    consultation, view.patient_id, view.region_id,
                    {ConsentKind.SNAPSHOTS: True, ConsentKind.RECORDING: True}, "u0")
            if "/assessment" in path:
                await world.server.app[SERVICES].assessments.save(
                    consultation, await world.server.region(region),
                    AssessmentContent(outcome=Outcome.TREATED_AT_HOME), "u0")
    if route == "POST /api/session":
        response = await client.login(f"{role.value}_{region}", PASSWORD)
        return response.status == 200
    if route == "POST /api/patients":
        body = {"region": region, "nationalId": "01018012371", "name": "Matrix Test"}
    elif route == "POST /api/consultations":
        body = {"patient": world.patients[region]}
    elif route == "POST /api/devices":
        body = {"region": region, "user": f"nurse_{region}", "name": "cam"}
    elif route.endswith("/invitations"):
        body = {"name": "Tolk"}
    elif route.endswith("/quality"):
        body = {"direction": "receive", "bitrateKbps": 850.5, "lossPct": 1.2, "rttMs": 140, "fps": 29.7}
    elif route.endswith("/consents"):
        body = {"video": True, "snapshots": True}
    elif route == "PUT /api/consultations/{id}/assessment":
        body = {"woundType": "venous_leg_ulcer", "outcome": "treated_at_home"}
    elif route == "POST /api/retention/purge":
        body = {"region": region}
    elif route == "PUT /api/pilot/travel":
        body = {"region": region, "municipality": "3403 Hamar", "km": 86, "hours": 1.4}
    elif route == "GET /api/patients" or (method == "GET" and path.startswith(("/api/pilot/", "/api/retention"))):
        path += f"?region={region}"
    form = None
    if route == "POST /api/consultations/{id}/snapshots":
        form = aiohttp.FormData()
        form.add_field("image", small_jpeg(), filename="wound.jpg", content_type="image/jpeg")
    elif route == "PUT /api/snapshots/{id}/annotations":
        body = {"items": [{"kind": "text", "at": [10, 10], "text": "sår"}]}
    response = await client.request(method, path, json=body, data=form)
    if response.status in (401, 403, 404):
        return False
    assert response.status in (200, 201, 204), (route, response.status, await response.text())
    if route == "GET /api/consultations/queue":
        listed = {c["region"] for c in (await response.json())["consultations"]}
        return region in listed
    if route == "GET /api/patients":
        return bool((await response.json())["patients"])
    return True


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (180, 90, 80)).save(out, "JPEG")
    return out.getvalue()


async def snapshot_in(world: World, region: str) -> str:
    view = await world.server.app[SERVICES].consultations.get(await world.consultation(region))
    assert view is not None
    stored = await world.server.app[SERVICES].snapshots.store(view.id, view.region_id, view.patient_id, small_jpeg(), "u0")
    return stored.id


async def recording_in(world: World, region: str, *, live: bool) -> str:
    """A recording in ``region``: being made (a recorder alone in the room), or stored."""
    consultation = await world.consultation(region)
    if not live:
        return (await stored_recording(world.server, consultation)).id
    view = await world.server.app[SERVICES].consultations.get(consultation)
    assert view is not None
    return (await world.server.app[SERVICES].recorders.start(view, "u0")).id


async def ws_join(world: World, region: str, role: Role) -> bool:
    """A join token carrying this user's identity, checked again by the policy at join time."""
    consultation = await world.consultation(region)
    wire = WireRole.NURSE if role is Role.NURSE else WireRole.SPECIALIST
    token = world.server.invite(consultation, wire, region=region, subject=f"u{world.user_ids[('a', role)]}")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{world.server.url}/ws")
        await ws.send_json({"type": "join", "v": 1, "consultation": consultation, "role": wire.value, "token": token})
        frame = await ws.receive_json(timeout=5)
        await ws.close()
    return bool(frame["type"] == "joined")


@pytest.mark.parametrize("role", ROLES, ids=[r.value for r in ROLES])
async def test_role_by_region_by_route_matches_the_matrix(world: World, role: Role) -> None:
    rows = documented()
    mismatches = []
    for route, (_, allowed) in rows.items():
        for region in ("a", "b"):
            client = await world.login("a", role)
            try:
                expected = allowed[role] and (route in REGION_FREE or region == "a")
                got = await attempt(world, route, client, region, role)
            finally:
                await client.close()
            if got != expected:
                mismatches.append(f"{route} as {role.value} on region {region}: expected {expected}, got {got}")
    assert not mismatches, "\n".join(mismatches)
