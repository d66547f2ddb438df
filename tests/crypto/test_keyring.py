from __future__ import annotations

import asyncio
import base64
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from woundcare.crypto import (
    Binding,
    Keyring,
    KeyShreddedError,
    MasterKey,
    MasterKeyError,
    RecordIntegrityError,
    key_id_of,
    seal,
)
from woundcare.db.database import Database
from woundcare.db.models import Region, RegionKey, utcnow
from woundcare.records.region_keys import RegionKeys

IDENTITY = b"01019012345 Kari Nordmann"


@dataclass
class Db:
    sessions: async_sessionmaker[AsyncSession]
    north: int
    south: int

    def binding(self, record_id: str = "rec-1", *, region_id: int | None = None) -> Binding:
        return Binding(
            region_id=region_id or self.north, kind="patient_identity", record_id=record_id
        )

    async def keys(self, region_id: int) -> list[RegionKey]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(RegionKey)
                .where(RegionKey.region_id == region_id)
                .order_by(RegionKey.version)
            )
            return list(rows)

    async def region(self, region_id: int) -> Region:
        async with self.sessions() as session:
            found = await session.get(Region, region_id)
            assert found is not None
            return found


@pytest.fixture
async def db(migrated_db_url: str) -> AsyncIterator[Db]:
    database = Database(migrated_db_url)
    await database.start()
    try:
        sessions = database.sessions
        async with sessions.begin() as session:
            north = Region(code="north", name="Nord")
            south = Region(code="south", name="Sør")
            session.add_all([north, south])
        yield Db(sessions, north.id, south.id)
    finally:
        await database.stop()


@pytest.fixture
def master() -> MasterKey:
    return MasterKey(os.urandom(32))


async def test_round_trip(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    envelope = await ring.seal(db.binding(), IDENTITY)

    assert IDENTITY not in envelope
    assert await ring.open(db.binding(), envelope) == IDENTITY
    [row] = await db.keys(db.north)
    assert (row.id, row.version, row.master_key_id) == (key_id_of(envelope), 1, master.id)
    assert row.wrapped is not None and len(row.wrapped) > 32
    # A fresh keyring (empty cache) reads the same key from the database.
    assert await Keyring(RegionKeys(db.sessions), [master]).open(db.binding(), envelope) == IDENTITY


async def test_sealer_seals_with_the_current_key_for_its_region_only(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    sealer = await ring.sealer(db.north)
    buffer = memoryview(bytearray(sealer.sealed_size(len(IDENTITY))))
    size = sealer.seal_into(db.binding(), IDENTITY, buffer)

    for envelope in (sealer.seal(db.binding(), IDENTITY), buffer[:size].tobytes()):
        assert key_id_of(envelope) == sealer.key_id == await ring.ensure_region_key(db.north)
        assert await ring.open(db.binding(), envelope) == IDENTITY
    with pytest.raises(ValueError, match="region"):
        sealer.seal(db.binding(region_id=db.south), IDENTITY)
    assert repr(sealer) == f"Sealer(key_id={sealer.key_id!r}, region_id={db.north})"  # never the key


async def test_ensure_region_key_once_under_concurrency(db: Db, master: MasterKey) -> None:
    rings = [Keyring(RegionKeys(db.sessions), [master]) for _ in range(5)]
    key_ids = await asyncio.gather(*(ring.ensure_region_key(db.north) for ring in rings))

    assert len(set(key_ids)) == 1
    assert [row.id for row in await db.keys(db.north)] == key_ids[:1]
    assert await rings[0].ensure_region_key(db.north) == key_ids[0]


async def test_unknown_region(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    with pytest.raises(LookupError):
        await ring.ensure_region_key(9999)
    with pytest.raises(LookupError):
        await ring.shred(9999)


async def test_flipped_bit_anywhere_fails(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    envelope = await ring.seal(db.binding(), IDENTITY)
    for position in range(len(envelope)):
        for bit in range(8):
            damaged = bytearray(envelope)
            damaged[position] ^= 1 << bit
            with pytest.raises(RecordIntegrityError):
                await ring.open(db.binding(), bytes(damaged))


async def test_swapped_records_fail(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    first = await ring.seal(db.binding("rec-1"), b"first patient")
    second = await ring.seal(db.binding("rec-2"), b"second patient")

    with pytest.raises(RecordIntegrityError):
        await ring.open(db.binding("rec-1"), second)
    with pytest.raises(RecordIntegrityError):
        await ring.open(db.binding("rec-2"), first)


async def test_moved_to_other_region_fails(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    envelope = await ring.seal(db.binding(), IDENTITY)
    await ring.ensure_region_key(db.south)

    with pytest.raises(RecordIntegrityError) as caught:
        await ring.open(db.binding(region_id=db.south), envelope)
    assert caught.value.reason == "key belongs to another region"
    assert caught.value.region_id == db.south


async def test_other_kind_fails(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    envelope = await ring.seal(db.binding(), IDENTITY)
    with pytest.raises(RecordIntegrityError):
        await ring.open(replace(db.binding(), kind="snapshot"), envelope)


async def test_unknown_key_id_fails(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    await ring.ensure_region_key(db.north)
    forged = seal(os.urandom(32), "no-such-key", db.binding(), IDENTITY)

    with pytest.raises(RecordIntegrityError) as caught:
        await ring.open(db.binding(), forged)
    assert (caught.value.reason, caught.value.key_id) == ("unknown key id", "no-such-key")


async def test_rotation(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    old = await ring.seal(db.binding(), IDENTITY)

    new_key_id = await ring.rotate(db.north)

    assert new_key_id != key_id_of(old)
    assert [row.version for row in await db.keys(db.north)] == [1, 2]
    assert await ring.open(db.binding(), old) == IDENTITY
    fresh = await ring.seal(db.binding("rec-2"), b"after rotation")
    assert key_id_of(fresh) == new_key_id
    resealed = await ring.reseal(db.binding(), old)
    assert key_id_of(resealed) == new_key_id
    assert await ring.open(db.binding(), resealed) == IDENTITY
    assert await ring.reseal(db.binding(), resealed) is resealed


async def test_rotation_seen_by_another_process(db: Db, master: MasterKey) -> None:
    here = Keyring(RegionKeys(db.sessions), [master])
    elsewhere = Keyring(RegionKeys(db.sessions), [master], cache_ttl=0)
    before = await elsewhere.seal(db.binding(), IDENTITY)

    new_key_id = await here.rotate(db.north)

    assert key_id_of(before) != new_key_id
    assert key_id_of(await elsewhere.seal(db.binding(), IDENTITY)) == new_key_id


async def test_retired_key_opens_but_no_longer_seals(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master], cache_ttl=0)
    old = await ring.seal(db.binding(), IDENTITY)
    async with db.sessions.begin() as session:
        await session.execute(
            update(RegionKey).where(RegionKey.id == key_id_of(old)).values(retired_at=utcnow())
        )

    fresh = await ring.seal(db.binding(), IDENTITY)

    assert key_id_of(fresh) != key_id_of(old)
    assert [row.version for row in await db.keys(db.north)] == [1, 2]
    assert await ring.open(db.binding(), old) == IDENTITY


async def test_master_key_rotation(db: Db, master: MasterKey) -> None:
    envelopes = {}
    old_ring = Keyring(RegionKeys(db.sessions), [master])
    for region_id in (db.north, db.south):
        envelopes[region_id] = await old_ring.seal(db.binding(region_id=region_id), IDENTITY)
    await old_ring.rotate(db.north)
    new_master = MasterKey(os.urandom(32))
    with pytest.raises(MasterKeyError):
        await Keyring(RegionKeys(db.sessions), [new_master]).open(db.binding(), envelopes[db.north])

    assert await Keyring(RegionKeys(db.sessions), [new_master, master]).rewrap_all() == 3
    assert await Keyring(RegionKeys(db.sessions), [new_master, master]).rewrap_all() == 0

    only_new = Keyring(RegionKeys(db.sessions), [new_master])
    for region_id, envelope in envelopes.items():
        assert await only_new.open(db.binding(region_id=region_id), envelope) == IDENTITY
    rows = await db.keys(db.north) + await db.keys(db.south)
    assert {row.master_key_id for row in rows} == {new_master.id}
    with pytest.raises(MasterKeyError):
        await Keyring(RegionKeys(db.sessions), [master]).open(db.binding(), envelopes[db.north])


async def test_shred(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    elsewhere = Keyring(RegionKeys(db.sessions), [master], cache_ttl=0)
    north = await ring.seal(db.binding(), IDENTITY)
    await ring.rotate(db.north)
    south = await ring.seal(db.binding(region_id=db.south), IDENTITY)
    assert await elsewhere.open(db.binding(), north) == IDENTITY

    await ring.shred(db.north)

    for reader in (ring, elsewhere, Keyring(RegionKeys(db.sessions), [master])):
        with pytest.raises(KeyShreddedError) as caught:
            await reader.open(db.binding(), north)
        assert caught.value.region_id == db.north
        assert await reader.open(db.binding(region_id=db.south), south) == IDENTITY
    with pytest.raises(KeyShreddedError):
        await ring.seal(db.binding(), IDENTITY)
    with pytest.raises(KeyShreddedError):
        await ring.rotate(db.north)
    assert [row.wrapped for row in await db.keys(db.north)] == [None, None]
    assert all(row.wrapped is not None for row in await db.keys(db.south))
    assert (await db.region(db.north)).shredded_at is not None
    assert (await db.region(db.south)).shredded_at is None


async def test_key_left_beside_a_shred_is_refused(db: Db, master: MasterKey) -> None:
    # What a key made in the same instant as a shred looks like: still wrapped, region shredded.
    envelope = await Keyring(RegionKeys(db.sessions), [master]).seal(db.binding(), IDENTITY)
    async with db.sessions.begin() as session:
        await session.execute(
            update(Region).where(Region.id == db.north).values(shredded_at=utcnow())
        )

    ring = Keyring(RegionKeys(db.sessions), [master])
    with pytest.raises(KeyShreddedError):
        await ring.open(db.binding(), envelope)
    with pytest.raises(KeyShreddedError):
        await ring.seal(db.binding(), IDENTITY)


async def test_wrong_master_key(db: Db, master: MasterKey) -> None:
    envelope = await Keyring(RegionKeys(db.sessions), [master]).seal(db.binding(), IDENTITY)
    stranger = MasterKey(os.urandom(32))

    with pytest.raises(MasterKeyError) as caught:
        await Keyring(RegionKeys(db.sessions), [stranger]).open(db.binding(), envelope)
    assert caught.value.master_key_id == master.id

    # A row claiming the stranger wrapped it: the stranger is loaded but does not unwrap it.
    async with db.sessions.begin() as session:
        await session.execute(update(RegionKey).values(master_key_id=stranger.id))
    with pytest.raises(MasterKeyError) as caught:
        await Keyring(RegionKeys(db.sessions), [stranger, master]).open(db.binding(), envelope)
    assert caught.value.master_key_id == stranger.id


async def test_wrapped_key_moved_to_another_row_does_not_unwrap(db: Db, master: MasterKey) -> None:
    ring = Keyring(RegionKeys(db.sessions), [master])
    envelope = await ring.seal(db.binding(), IDENTITY)
    await ring.ensure_region_key(db.south)
    [north_row], [south_row] = await db.keys(db.north), await db.keys(db.south)
    async with db.sessions.begin() as session:
        await session.execute(
            update(RegionKey).where(RegionKey.id == north_row.id).values(wrapped=south_row.wrapped)
        )

    with pytest.raises(MasterKeyError):
        await Keyring(RegionKeys(db.sessions), [master]).open(db.binding(), envelope)


def test_keyring_needs_a_master_key() -> None:
    with pytest.raises(MasterKeyError):
        Keyring(RegionKeys(async_sessionmaker()), [])


def test_master_key_file_created_private(tmp_path: Path) -> None:
    path = tmp_path / "master.key"

    created = MasterKey.from_file(path, create=True)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
    assert MasterKey.from_file(path).id == created.id
    assert MasterKey.from_file(path, create=True).id == created.id
    assert MasterKey.from_env_value(path.read_text()).id == created.id
    assert len(base64.b64decode(path.read_text())) == 32


def test_master_key_file_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    existing = MasterKey(os.urandom(32))
    path.write_text(base64.b64encode(existing.secret).decode())

    assert MasterKey.from_file(path, create=True).id == existing.id


def test_master_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError):
        MasterKey.from_file(tmp_path / "absent.key")
    assert not (tmp_path / "absent.key").exists()


def test_master_key_repr_hides_key() -> None:
    key = MasterKey(os.urandom(32))
    shown = repr(key) + str(key)
    assert key.id in shown
    for form in (key.secret.hex(), base64.b64encode(key.secret).decode(), repr(key.secret)):
        assert form not in shown


def test_master_key_id_depends_on_key() -> None:
    secret = os.urandom(32)
    assert MasterKey(secret).id == MasterKey(bytes(secret)).id
    assert MasterKey(secret).id != MasterKey(os.urandom(32)).id
    assert len(MasterKey(secret).id) == 16


@pytest.mark.parametrize(
    "value",
    ["not base64!", base64.b64encode(bytes(16)).decode(), "", "nøkkel"],
    ids=["garbage", "short", "empty", "non-ascii"],
)
def test_master_key_malformed(value: str) -> None:
    with pytest.raises(MasterKeyError):
        MasterKey.from_env_value(value)
