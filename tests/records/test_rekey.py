"""Key rotation with a resumable re-encryption pass, and crypto-shredding a region,
on SQLite and PostgreSQL, through the real CLI and the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.test_snapshots import wound_jpeg
from tests.records.national_ids import national_ids
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.cli import main
from woundcare.services import master_keys
from woundcare.crypto import Binding, Keyring, KeyShreddedError, key_id_of
from woundcare.db.models import AuditEvent, Outcome, Patient, Snapshot
from woundcare.records.assessments import AssessmentContent
from woundcare.records.measurement import Annotations
from woundcare.records.patients import IDENTITY_KIND
from woundcare.records.snapshots import IMAGE_KIND
from woundcare.records.patients import PatientIdentity
from woundcare.records.region_keys import RegionKeys
from woundcare.records.rekey import Reencryption
from woundcare.storage.blobs import BlobStore

ANNOTATIONS = Annotations.from_json({"items": [{"kind": "text", "at": [5, 5], "text": "kant"}]})


@dataclass
class Region:
    id: int
    patients: list[str]
    consultations: list[str]
    snapshots: list[str]


async def fill(server: RunningServer, code: str, count: int) -> Region:
    """``count`` patients, each with a consultation, an assessment and an annotated snapshot."""
    app = server.app
    region_id = await server.region(code)
    region = Region(region_id, [], [], [])
    image = wound_jpeg(320, 240)
    for i, number in enumerate(national_ids(count)):
        patient = await app[SERVICES].patients.register(region_id, PatientIdentity(number, f"Pasient {i}"))
        found = await app[SERVICES].patients.find(patient.pseudonym)
        assert found is not None
        consultation = await app[SERVICES].consultations.start(found, None)
        await app[SERVICES].assessments.save(consultation.id, region_id, AssessmentContent(outcome=Outcome.REFERRED), "u1")
        snapshot = await app[SERVICES].snapshots.store(consultation.id, region_id, found.id, image, "u1")
        row = await app[SERVICES].snapshots.get(snapshot.id)
        assert row is not None
        await app[SERVICES].snapshots.annotate(row, ANNOTATIONS)
        region.patients.append(patient.pseudonym)
        region.consultations.append(consultation.id)
        region.snapshots.append(snapshot.id)
    return region


async def read_all(server: RunningServer, region: Region) -> None:
    """Open every sealed value of the region; raises if any does not decrypt."""
    app = server.app
    for pseudonym in region.patients:
        patient = await app[SERVICES].patients.find(pseudonym)
        assert patient is not None
        assert (await app[SERVICES].patients.identity(patient)) is not None
    for consultation in region.consultations:
        assert (await app[SERVICES].assessments.get(consultation)) is not None
    for snapshot_id in region.snapshots:
        row = await app[SERVICES].snapshots.get(snapshot_id)
        assert row is not None
        assert (await app[SERVICES].snapshots.image(row))[:3] == b"\xff\xd8\xff"
        assert (await app[SERVICES].snapshots.image(row, thumbnail=True))[:3] == b"\xff\xd8\xff"
    views = [v for c in region.consultations for v in await app[SERVICES].snapshots.of_consultation(c)]
    assert all(v.annotations == ANNOTATIONS for v in views)


class Interrupted(Exception):
    pass


@pytest.fixture
async def server(start_server: Any, migrated_db_url: str) -> AsyncIterator[RunningServer]:
    yield await start_server(database_url=migrated_db_url)


async def test_rotation_stopped_half_way_resumes_and_finishes(server: RunningServer) -> None:
    east = await fill(server, "east", 4)
    app = server.app
    old_key = await app[SERVICES].keyring.ensure_region_key(east.id)
    new_key = await app[SERVICES].keyring.rotate(east.id)
    rekey = Reencryption(app[SERVICES].database, app[SERVICES].keyring, app[SERVICES].snapshots)
    total = await rekey.pending(east.id)
    assert total == 4 * 4  # identity, assessment, annotations, snapshot blobs per patient

    def stop_after_seven(done: int, _total: int) -> None:
        if done == 7:
            raise Interrupted

    with pytest.raises(Interrupted):
        await rekey.run(east.id, stop_after_seven)
    assert await rekey.pending(east.id) == total - 7
    await read_all(server, east)  # half old key, half new: all readable

    assert await rekey.run(east.id) == total - 7
    assert await rekey.pending(east.id) == 0
    await read_all(server, east)
    async with app[SERVICES].database.sessions() as session:
        identities = (await session.scalars(select(Patient.identity_sealed))).all()
        snapshot_keys = set((await session.scalars(select(Snapshot.key_id))).all())
        referenced = set((await session.scalars(select(Snapshot.blob_key))).all())
    assert {key_id_of(e) for e in identities if e} == {new_key} != {old_key}
    assert snapshot_keys == {new_key}
    assert set(BlobStore(server.settings.blob_dir).keys()) == referenced  # old blobs are gone


async def test_keys_rotate_cli_then_shred_one_region_leaves_the_other(server: RunningServer) -> None:
    east = await fill(server, "east", 2)
    west = await fill(server, "west", 2)
    common = ["--data-dir", str(server.settings.data_dir)]
    if server.settings.database_url:
        common += ["--database-url", server.settings.database_url]
    assert await asyncio.to_thread(main, ["keys", "rotate", "--region", "east", *common]) == 0
    await read_all(server, east)

    assert await asyncio.to_thread(main, ["region", "shred", "east", *common]) == 2  # not confirmed
    assert await asyncio.to_thread(main, ["region", "shred", "east", "--confirm", "east", *common]) == 0
    app = server.app
    patient = await app[SERVICES].patients.find(east.patients[0])
    assert patient is not None
    # The server's own keyring has the east keys cached; a fresh one, like any restart, has not.
    fresh = Keyring(RegionKeys(app[SERVICES].database.sessions), master_keys(server.settings))
    with pytest.raises(KeyShreddedError):
        await fresh.open(*_identity_binding(patient))
    row = await app[SERVICES].snapshots.get(east.snapshots[0])
    assert row is not None
    with pytest.raises(KeyShreddedError):
        await fresh.open(*_image_binding(row, server))
    await read_all(server, west)
    async with app[SERVICES].database.sessions() as session:
        actions = set((await session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "cli"))).all())
    assert {"admin.keys.rotate", "admin.keys.reencrypt", "admin.region.shred"} <= actions


def _identity_binding(patient: Patient) -> tuple[Binding, bytes]:
    assert patient.identity_sealed is not None
    return Binding(patient.region_id, IDENTITY_KIND, patient.pseudonym), patient.identity_sealed


def _image_binding(row: Snapshot, server: RunningServer) -> tuple[Binding, bytes]:
    return Binding(row.region_id, IMAGE_KIND, row.id), BlobStore(server.settings.blob_dir).get(row.blob_key)
