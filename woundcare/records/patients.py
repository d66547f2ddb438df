"""Patients: a pseudonym per region; name and national id number sealed with the region's key.

One patient per national id and region: the number's blind index (an HMAC under the region's
index key, :mod:`woundcare.crypto.blind_index`) is stored beside the sealed identity, unique
per region, so registering a known number answers with the patient already there, and the
database decides between two registrations of one number at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..crypto import Binding, Keyring, KeyShreddedError
from ..db.database import Database
from ..db.models import Patient, new_public_id
from ..errors import InvalidInput

IDENTITY_KIND = "patient_identity"

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _control(digits: list[int], weights: tuple[int, ...]) -> int:
    rest = 11 - sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
    return 0 if rest == 11 else rest


def valid_national_id(value: str) -> bool:
    """Norwegian fødselsnummer, D-number or synthetic test number: 11 digits, two mod-11 control digits."""
    if len(value) != 11 or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    k1 = _control(digits[:9], _K1)
    k2 = _control(digits[:10], _K2)
    return k1 < 10 and k2 < 10 and digits[9] == k1 and digits[10] == k2


def normalize_national_id(value: str) -> str:
    """The one form a national id is sealed and indexed in: its 11 digits, whatever spacing
    it was typed with. Raises :class:`BadNationalId` unless it is then a valid number."""
    digits = "".join(value.split())
    if not valid_national_id(digits):
        raise BadNationalId()
    return digits


class BadNationalId(InvalidInput):
    code = "bad_national_id"

    def __init__(self) -> None:
        super().__init__("'nationalId' is not a valid Norwegian identity number")


def with_control_digits(first_nine: str) -> str | None:
    """Complete nine digits into a valid number, or None if no control digit fits."""
    digits = [int(c) for c in first_nine]
    k1 = _control(digits, _K1)
    if k1 == 10:
        return None
    k2 = _control([*digits, k1], _K2)
    return None if k2 == 10 else f"{first_nine}{k1}{k2}"


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    national_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PatientView:
    pseudonym: str
    region_id: int
    identity: PatientIdentity | None
    existed: bool = False
    """From :meth:`Patients.register`: the number was registered in the region already, and
    this is that patient (with the identity stored then)."""


class Patients:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    async def register(
        self, region_id: int, identity: PatientIdentity, municipality: str | None = None
    ) -> PatientView:
        """A new patient, or the region's patient of that national id if there is one.

        Raises :class:`BadNationalId` for an invalid number, :class:`KeyShreddedError` in a
        shredded region.
        """
        number = normalize_national_id(identity.national_id)
        index = (await self._keyring.index_key(region_id)).index(number)
        known = await self._indexed(region_id, index)
        if known is not None:
            return await self._known(known)
        patient = Patient(
            region_id=region_id, pseudonym=new_public_id(), municipality=municipality, national_id_index=index
        )
        plaintext = orjson.dumps({"nationalId": number, "name": identity.name})
        patient.identity_sealed = await self._keyring.seal(self._binding(patient), plaintext)
        try:
            async with self._db.sessions() as session, session.begin():
                session.add(patient)
        except IntegrityError:
            # A registration of the same number committed between our lookup and insert.
            known = await self._indexed(region_id, index)
            if known is None:
                raise
            return await self._known(known)
        return PatientView(patient.pseudonym, region_id, PatientIdentity(number, identity.name))

    async def by_national_id(self, region_id: int, national_id: str) -> Patient | None:
        """The region's patient of ``national_id`` (any spacing); None if there is none, or
        the region is shredded (its index can no longer be computed).

        Raises :class:`BadNationalId` for an invalid number.
        """
        number = normalize_national_id(national_id)
        try:
            key = await self._keyring.existing_index_key(region_id)
        except KeyShreddedError:
            return None
        if key is None:
            return None
        return await self._indexed(region_id, key.index(number))

    async def _indexed(self, region_id: int, index: bytes) -> Patient | None:
        async with self._db.sessions() as session:
            return await session.scalar(
                select(Patient).where(Patient.region_id == region_id, Patient.national_id_index == index)
            )

    async def _known(self, patient: Patient) -> PatientView:
        return PatientView(patient.pseudonym, patient.region_id, await self.identity(patient), existed=True)

    async def find(self, pseudonym: str) -> Patient | None:
        async with self._db.sessions() as session:
            return await session.scalar(select(Patient).where(Patient.pseudonym == pseudonym))

    async def in_regions(self, region_ids: list[int], limit: int = 200) -> list[Patient]:
        async with self._db.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Patient)
                        .where(Patient.region_id.in_(region_ids))
                        .order_by(Patient.created_at.desc())
                        .limit(limit)
                    )
                ).all()
            )

    async def identity(self, patient: Patient) -> PatientIdentity | None:
        if patient.identity_sealed is None:
            return None
        data = orjson.loads(await self._keyring.open(self._binding(patient), patient.identity_sealed))
        return PatientIdentity(data["nationalId"], data["name"])

    @staticmethod
    def _binding(patient: Patient) -> Binding:
        return Binding(patient.region_id, IDENTITY_KIND, patient.pseudonym)
