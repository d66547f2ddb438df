"""The real application on a real loopback socket, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select

from signaling.protocol import Role
from woundcare.app import create_app
from woundcare.appkeys import DATABASE, INVITATIONS
from woundcare.config import Settings
from woundcare.db.models import Consultation, Patient, Region
from woundcare.demo import DEMO_REGION


@dataclass
class RunningServer:
    settings: Settings
    app: web.Application
    runner: web.AppRunner

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @classmethod
    async def start(cls, settings: Settings) -> RunningServer:
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        return cls(settings, app, runner)

    async def stop(self) -> None:
        await self.runner.cleanup()

    def invite(self, consultation: str, role: Role, *, name: str | None = None, ttl: int | None = None,
               region: str = DEMO_REGION, subject: str | None = None) -> str:
        return self.app[INVITATIONS].issue(
            consultation, role, subject or f"test-{role.value}", name or f"Test {role.value}", region, ttl
        )

    async def new_consultation(self, region: str = DEMO_REGION) -> str:
        """A waiting consultation for a new fictional patient in ``region``."""
        async with self.app[DATABASE].sessions() as session, session.begin():
            region_row = await session.scalar(select(Region).where(Region.code == region))
            if region_row is None:
                region_row = Region(code=region, name=f"Region {region}")
                session.add(region_row)
                await session.flush()
            patient = Patient(region_id=region_row.id)
            session.add(patient)
            await session.flush()
            consultation = Consultation(region_id=region_row.id, patient_id=patient.id)
            session.add(consultation)
            await session.flush()
            return consultation.id
