"""The real application on a real loopback socket, for tests and benchmarks."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select

from signaling.protocol import Role
from woundcare.app import create_app
from woundcare.appkeys import SERVICES
from woundcare.config import Settings
from woundcare.auth.passwords import hash_password
from woundcare.db.models import Consultation, Membership, Patient, Region, User
from woundcare.db.models import StaffRole
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
        # Listening before the app starts, which takes a while (the database, the services):
        # meanwhile a port picked free (``free_port``) could become another test's server's,
        # or the local port of some connection, and the bind fail with "address in use".
        listening = socket.create_server(("127.0.0.1", settings.port))
        try:
            app = create_app(settings)
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            await web.SockSite(runner, listening).start()
        except BaseException:
            listening.close()
            raise
        return cls(settings, app, runner)

    async def stop(self) -> None:
        await self.runner.cleanup()

    def invite(self, consultation: str, role: Role, *, name: str | None = None, ttl: int | None = None,
               region: str = DEMO_REGION, subject: str | None = None) -> str:
        return self.app[SERVICES].invitations.issue(
            consultation, role, subject or f"test-{role.value}", name or f"Test {role.value}", region, ttl
        )

    async def new_consultation(self, region: str = DEMO_REGION) -> str:
        """A waiting consultation for a new fictional patient in ``region``."""
        async with self.app[SERVICES].database.sessions() as session, session.begin():
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

    async def region(self, code: str) -> int:
        async with self.app[SERVICES].database.sessions() as session, session.begin():
            region_id = await session.scalar(select(Region.id).where(Region.code == code))
            if region_id is None:
                region = Region(code=code, name=f"Region {code}")
                session.add(region)
                await session.flush()
                region_id = region.id
            return region_id

    async def add_user(self, username: str, password: str, roles: dict[str, StaffRole]) -> int:
        """A user with a role in each named region (regions made as needed)."""
        region_ids = {code: await self.region(code) for code in roles}
        async with self.app[SERVICES].database.sessions() as session, session.begin():
            user = User(username=username, display_name=f"Test {username}", password_hash=hash_password(password))
            session.add(user)
            await session.flush()
            for code, role in roles.items():
                session.add(Membership(user_id=user.id, region_id=region_ids[code], role=role))
            return user.id
