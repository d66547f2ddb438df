"""The blind index of national ids on SQLite and PostgreSQL: what it reveals without its key,
the unique index deciding a race, its key through data-key rotation, master-key rotation
and shredding, and ``woundcare patients index`` resuming after a SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import re
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.e2e.process import REPO_ROOT, child_environ
from tests.records.national_ids import national_ids
from tests.server import RunningServer
from woundcare.appkeys import SERVICES
from woundcare.cli import main
from woundcare.crypto import Binding, Keyring, KeyShreddedError, MasterKey, MasterKeyError
from woundcare.db.models import Patient, RegionIndexKey, new_public_id
from woundcare.records.patients import IDENTITY_KIND, PatientIdentity, Patients
from woundcare.records.region_keys import RegionKeys
from woundcare.services import master_keys

NUMBER = "01018012371"


@pytest.fixture
async def server(start_server: Any, db_url: str) -> AsyncIterator[RunningServer]:
    yield await start_server(database_url=db_url)


def cli_options(server: RunningServer) -> list[str]:
    options = ["--data-dir", str(server.settings.data_dir)]
    if server.settings.database_url:
        options += ["--database-url", server.settings.database_url]
    return options


def fresh_keyring(server: RunningServer, masters: list[MasterKey] | None = None) -> Keyring:
    """A keyring with nothing cached, as after a restart."""
    sessions = server.app[SERVICES].database.sessions
    return Keyring(RegionKeys(sessions), masters or master_keys(server.settings))


async def indexes(server: RunningServer, region_id: int | None = None) -> dict[str, bytes | None]:
    """Every patient's index by pseudonym (of one region if given)."""
    query = select(Patient.pseudonym, Patient.national_id_index)
    if region_id is not None:
        query = query.where(Patient.region_id == region_id)
    async with server.app[SERVICES].database.sessions() as session:
        return {pseudonym: index for pseudonym, index in (await session.execute(query)).all()}


async def index_key_row(server: RunningServer, region_id: int) -> RegionIndexKey:
    async with server.app[SERVICES].database.sessions() as session:
        row = await session.get(RegionIndexKey, region_id)
    assert row is not None
    return row


async def legacy_patient(server: RunningServer, region_id: int, number: str, name: str = "Eldre Pasient") -> str:
    """A patient as registered before the blind index: sealed identity, no index."""
    services = server.app[SERVICES]
    patient = Patient(region_id=region_id, pseudonym=new_public_id())
    patient.identity_sealed = await services.keyring.seal(
        Binding(region_id, IDENTITY_KIND, patient.pseudonym), orjson.dumps({"nationalId": number, "name": name})
    )
    async with services.database.sessions() as session, session.begin():
        session.add(patient)
    return patient.pseudonym


async def test_the_index_reveals_nothing_without_the_key(server: RunningServer) -> None:
    patients = server.app[SERVICES].patients
    east, west = await server.region("east"), await server.region("west")
    in_east = await patients.register(east, PatientIdentity(NUMBER, "Kari Øst"))
    in_west = await patients.register(west, PatientIdentity(NUMBER, "Kari Vest"))
    stored = await indexes(server)
    east_index, west_index = stored[in_east.pseudonym], stored[in_west.pseudonym]
    assert east_index is not None and west_index is not None
    # The same number in two regions: unrelated values, so no one links them across regions.
    assert east_index != west_index
    plain = NUMBER.encode()
    guesses = {
        plain, hashlib.sha256(plain).digest(), hashlib.sha256(plain).hexdigest().encode(),
        hashlib.sha512(plain).digest()[:32], hashlib.blake2b(plain, digest_size=32).digest(),
        hmac.new(b"", plain, hashlib.sha256).digest(),
    }
    for value in (east_index, west_index):
        assert len(value) == 32 and value not in guesses and plain not in value
    # What it is: the HMAC under the region's own key, which only the master key unwraps.
    key = await fresh_keyring(server).existing_index_key(east)
    assert key is not None and key.index(NUMBER) == east_index
    row = await index_key_row(server, east)
    assert row.wrapped is not None and len(row.wrapped) > 32 and plain not in row.wrapped
    with pytest.raises(MasterKeyError):
        await fresh_keyring(server, [MasterKey(b"\x07" * 32)]).existing_index_key(east)
    assert "secret=**********" in repr(key)


async def test_the_unique_index_decides_between_two_registrations(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = server.app[SERVICES]
    east = await server.region("east")
    first = await services.patients.register(east, PatientIdentity(NUMBER, "Kari Øst"))
    # A second registration that looked before the first committed (its lookup finds
    # nothing): the insert fails on the unique index, and it answers with the first patient.
    late = Patients(services.database, services.keyring)
    lookups: list[bytes] = []
    original = Patients._indexed

    async def missed_once(self: Patients, region_id: int, index: bytes) -> Patient | None:
        lookups.append(index)
        return None if len(lookups) == 1 else await original(self, region_id, index)

    monkeypatch.setattr(Patients, "_indexed", missed_once)
    second = await late.register(east, PatientIdentity("010180 12371", "Kari Sen"))
    assert len(lookups) == 2  # the missed lookup, then the one after the refused insert
    assert (second.pseudonym, second.existed, second.identity) == (
        first.pseudonym, True, PatientIdentity(NUMBER, "Kari Øst")
    )
    assert list(await indexes(server)) == [first.pseudonym]
    # The database itself refuses a second row of one index in a region.
    with pytest.raises(IntegrityError):
        async with services.database.sessions() as session, session.begin():
            session.add(Patient(region_id=east, national_id_index=lookups[0]))


async def test_the_index_key_outlives_key_rotation_and_is_rewrapped_by_the_master_key(
    server: RunningServer,
) -> None:
    services = server.app[SERVICES]
    east = await server.region("east")
    registered = await services.patients.register(east, PatientIdentity(NUMBER, "Kari Øst"))
    before = await index_key_row(server, east)
    assert await asyncio.to_thread(main, ["keys", "rotate", "--region", "east", *cli_options(server)]) == 0
    after = await index_key_row(server, east)
    # A data-key rotation neither changes nor re-wraps the index key: every index still matches.
    assert (after.id, after.wrapped, after.master_key_id) == (before.id, before.wrapped, before.master_key_id)
    found = await Patients(services.database, fresh_keyring(server)).by_national_id(east, " 010180 12371")
    assert found is not None and found.pseudonym == registered.pseudonym

    old = master_keys(server.settings)[0]
    new = MasterKey(b"\x42" * 32)
    assert await fresh_keyring(server, [new, old]).rewrap_all() == 3  # two data key versions, the index key
    rewrapped = await index_key_row(server, east)
    assert (rewrapped.id, rewrapped.master_key_id) == (before.id, new.id) and rewrapped.wrapped != before.wrapped
    found = await Patients(services.database, fresh_keyring(server, [new])).by_national_id(east, NUMBER)
    assert found is not None and found.pseudonym == registered.pseudonym
    with pytest.raises(MasterKeyError):
        await fresh_keyring(server, [old]).existing_index_key(east)


async def test_shredding_a_region_makes_its_index_unusable(server: RunningServer) -> None:
    services = server.app[SERVICES]
    east, west = await server.region("east"), await server.region("west")
    await services.patients.register(east, PatientIdentity(NUMBER, "Kari Øst"))
    in_west = await services.patients.register(west, PatientIdentity(NUMBER, "Kari Vest"))
    assert await services.patients.by_national_id(east, NUMBER) is not None
    assert await asyncio.to_thread(
        main, ["region", "shred", "east", "--confirm", "east", *cli_options(server)]
    ) == 0
    # No key left: nothing can compute east's index again, after any restart.
    assert (await index_key_row(server, east)).wrapped is None
    fresh = fresh_keyring(server)
    with pytest.raises(KeyShreddedError):
        await fresh.existing_index_key(east)
    with pytest.raises(KeyShreddedError):
        await fresh.index_key(east)
    # Nothing to match either, even for the server whose keyring still has the key cached.
    assert set((await indexes(server, east)).values()) == {None}
    assert await services.patients.by_national_id(east, NUMBER) is None
    assert await Patients(services.database, fresh).by_national_id(east, NUMBER) is None
    # The other region keeps its index.
    found = await Patients(services.database, fresh).by_national_id(west, NUMBER)
    assert found is not None and found.pseudonym == in_west.pseudonym


PROGRESS = re.compile(rb"indexing patients: (\d+)/(\d+)")


async def test_index_cli_resumes_after_a_kill_and_indexes_each_row_once(server: RunningServer) -> None:
    services = server.app[SERVICES]
    east, gone = await server.region("east"), await server.region("gone")
    numbers = national_ids(25)
    registered = await services.patients.register(east, PatientIdentity(numbers[0], "Ny Pasient"))
    legacy = {await legacy_patient(server, east, number): number for number in numbers[1:]}
    # Registered twice before the index: the first is indexed, the second reported.
    legacy_twin = await legacy_patient(server, east, numbers[1], "Samme Nummer")
    registered_twin = await legacy_patient(server, east, numbers[0], "Samme Som Ny")
    await legacy_patient(server, gone, numbers[2])
    await services.keyring.shred(gone)  # its rows cannot be read: skipped
    assert len(legacy) == 24

    argv = [sys.executable, "-m", "woundcare", "patients", "index", "--batch-size", "2", "--pause", "0.5",
            *cli_options(server)]
    child = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO_ROOT, env=child_environ({}), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert child.stderr is not None
    lines: list[bytes] = []
    try:
        while True:
            line = await asyncio.wait_for(child.stderr.readline(), 60)
            assert line, f"the index run ended before it was killed: {b''.join(lines)!r}"
            lines.append(line)
            progress = PROGRESS.search(line)
            if progress and int(progress[1]) >= 6:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    # Not a TTY: plain lines, one per batch of 2, out of the 26 unindexed rows of live regions.
    steps = [PROGRESS.fullmatch(line.strip()) for line in lines]
    assert [(int(m[1]), int(m[2])) if m else line for m, line in zip(steps, lines, strict=True)] == [
        (2 * batch, 26) for batch in range(1, len(lines) + 1)
    ]
    half = await indexes(server, east)
    done_before_kill = sum(1 for p in legacy if half[p] is not None)
    assert 6 <= done_before_kill < 24

    options = ["patients", "index", "--batch-size", "5", *cli_options(server)]
    resumed = await asyncio.to_thread(run_capturing, options)
    # Each row once: the second run indexed exactly what the first had not.
    assert resumed.splitlines()[0] == f"{24 - done_before_kill} patients indexed"
    key = await fresh_keyring(server).existing_index_key(east)
    assert key is not None
    final = await indexes(server, east)
    assert {p: final[p] for p in legacy} == {p: key.index(number) for p, number in legacy.items()}
    assert final[registered.pseudonym] == key.index(numbers[0])
    assert final[legacy_twin] is None and final[registered_twin] is None
    assert f"patient {legacy_twin} has the national id of patient " in resumed
    assert f"patient {registered_twin} has the national id of patient {registered.pseudonym}" in resumed
    assert not any(number in resumed for number in numbers)
    again = await asyncio.to_thread(run_capturing, options)
    assert again.splitlines()[0] == "0 patients indexed"
    assert set((await indexes(server, gone)).values()) == {None}


def run_capturing(argv: list[str]) -> str:
    """``woundcare argv`` in this process (call it in a thread); its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    return out.getvalue()
