"""Staff of two regions logged in over the real API, for the plan-back and e-consult tests.

Region ``east`` has a nurse, a specialist and a pilot lead; ``west`` a nurse of its own, who
must see nothing of east's.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import select

from tests.api.client import ApiClient
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.db.models import AuditEvent
from woundcare.db.models import StaffRole

PASSWORD = "clinic test password"
PLAN = {
    "woundType": "venous_leg_ulcer",
    "treatmentPlan": "Compression bandage, change every third day.",
    "nextReview": "2026-12-20",
    "responsible": "home_care",
    "outcome": "treated_at_home",
}


@dataclass
class Clinic:
    server: RunningServer
    nurse: ApiClient
    specialist: ApiClient
    lead: ApiClient
    west_nurse: ApiClient
    patient: str
    """A patient of region east, registered by the nurse."""

    async def sign(self, consultation: str, content: dict[str, Any] = PLAN) -> dict[str, Any]:
        path = f"/api/consultations/{consultation}/assessment"
        await self.specialist.json("PUT", path, json=content)
        signed: dict[str, Any] = await self.specialist.json("POST", f"{path}/sign")
        return signed

    async def audit(self, action: str) -> list[AuditEvent]:
        async with self.server.app[SERVICES].database.sessions() as session:
            return list((await session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))).all())


@asynccontextmanager
async def clinic(server: RunningServer) -> AsyncIterator[Clinic]:
    clients = []
    for name, region, role in [("nurse", "east", StaffRole.NURSE), ("spes", "east", StaffRole.SPECIALIST),
                               ("lead", "east", StaffRole.PILOT_LEAD), ("nurse_w", "west", StaffRole.NURSE)]:
        await server.add_user(name, PASSWORD, {region: role})
        client = ApiClient(server.url)
        assert (await client.login(name, PASSWORD)).status == 200
        clients.append(client)
    try:
        patient = await clients[0].json("POST", "/api/patients", expect=201,
                                        json={"region": "east", "nationalId": "01018012371", "name": "Kari Øst"})
        yield Clinic(server, *clients, patient=patient["id"])
    finally:
        for client in clients:
            await client.close()


def jpeg_with_exif() -> bytes:
    """A small wound photo that carries a camera's metadata (which the upload must drop)."""
    image = Image.new("RGB", (320, 240), (170, 80, 70))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()
