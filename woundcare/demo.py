"""The demo a new user gets on first start: one region, one user per role, and a
fictional patient with a waiting consultation. Nothing here is real patient data."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from .auth.passwords import hash_password
from .db.database import Database
from .db.models import Consultation, Membership, Region, Role, User
from .records.patients import PatientIdentity, Patients, with_control_digits

DEMO_REGION = "demo"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    username: str
    password: str
    role: Role


DEMO_LOGINS = (
    DemoLogin("sykepleier", "demo-sykepleier", Role.NURSE),
    DemoLogin("spesialist", "demo-spesialist", Role.SPECIALIST),
    DemoLogin("pilotleder", "demo-pilotleder", Role.PILOT_LEAD),
    DemoLogin("admin", "demo-admin", Role.ADMIN),
)

_NAMES = {
    Role.NURSE: "Demo Sykepleier",
    Role.SPECIALIST: "Demo Sårspesialist",
    Role.PILOT_LEAD: "Demo Pilotleder",
    Role.ADMIN: "Demo Administrator",
}


# A synthetic test number (month + 80), never issued to a person.
DEMO_PATIENT = PatientIdentity(with_control_digits("010180123") or "", "Kari Demo Nordmann")


async def seed_demo(db: Database, patients: Patients) -> bool:
    """Fill an empty database with the demo; returns False if it was not empty."""
    async with db.sessions() as session, session.begin():
        if await session.scalar(select(func.count()).select_from(Region)):
            return False
        region = Region(code=DEMO_REGION, name="Demo pilot region")
        session.add(region)
        await session.flush()
        for login in DEMO_LOGINS:
            user = User(
                username=login.username,
                display_name=_NAMES[login.role],
                password_hash=hash_password(login.password),
            )
            session.add(user)
            await session.flush()
            session.add(Membership(user_id=user.id, region_id=region.id, role=login.role))
    patient = await patients.register(region.id, DEMO_PATIENT)
    found = await patients.find(patient.pseudonym)
    assert found is not None
    async with db.sessions() as session, session.begin():
        session.add(Consultation(region_id=region.id, patient_id=found.id))
    return True


async def demo_consultation(db: Database) -> str | None:
    """The demo region's newest open consultation, if any."""
    async with db.sessions() as session:
        return await session.scalar(
            select(Consultation.id)
            .join(Region, Region.id == Consultation.region_id)
            .where(Region.code == DEMO_REGION, Consultation.ended_at.is_(None))
            .order_by(Consultation.created_at.desc())
            .limit(1)
        )
