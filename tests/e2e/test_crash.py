"""A server killed with SIGKILL in the middle of concurrent uploads, then started again.

What must hold after the restart: every snapshot listed decrypts to a whole image; every
upload that was answered 201 is listed; no write intents are left (``<data_dir>/intents``);
every row's blob exists; and the blob folder holds exactly the blobs the snapshot rows name,
with no leftovers (orphans, ``.tmp-`` files) of the uploads the kill cut off.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from tests.api.client import ApiClient
from tests.e2e.process import ServerProcess
from tests.e2e.ward import consented_consultation, logged_in, ward_process
from woundcare.db.engine import make_engine
from woundcare.db.models import Snapshot
from woundcare.storage.blobs import TEMP_PREFIX, BlobStore

UPLOADS = 20
ATTEMPTS = 3
UPLOAD_SECONDS = 60.0
"""Bound on one upload; a cut-off upload ends at once with a connection error."""
KILL_AFTER = (3, 8)
"""The kill comes after this many (at random, inclusive) uploads were answered 201."""

StartServer = Callable[[], Awaitable[ServerProcess]]


def unique_jpeg(seed: int, width: int, height: int) -> bytes:
    """Noise compresses badly: at 1600x1200 this is about 1.5 MB, and every seed differs."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 220, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


@dataclass(frozen=True)
class Upload:
    request: str
    """Sent as the snapshot's ``request`` id, so a listed snapshot names its upload."""
    data: bytes
    size: tuple[int, int]


@dataclass
class Outcome:
    stored: dict[str, str] = field(default_factory=dict)
    """Request id -> snapshot id, for each upload answered 201."""
    cut_off: dict[str, str] = field(default_factory=dict)
    """Request id -> the connection error, for each upload the kill cut off."""
    refused: dict[str, str] = field(default_factory=dict)
    """Request id -> status and body of any other answer: the kill explains none of them."""


@pytest.fixture
async def start_server(tmp_path: Path, migrated_db_url: str) -> AsyncIterator[StartServer]:
    """One server (data folder, database, instance name, port), started again by each call;
    killed at teardown whatever happened."""
    server = await ward_process(tmp_path, migrated_db_url, "crash-test")

    async def start() -> ServerProcess:
        await server.start()
        return server

    try:
        yield start
    finally:
        await server.kill()


async def upload_and_kill(server: ServerProcess, nurse: ApiClient, consultation: str,
                          uploads: list[Upload], kill_after: int) -> Outcome:
    """Start every upload at once; SIGKILL the server when ``kill_after`` were answered 201."""
    outcome = Outcome()
    enough = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=UPLOAD_SECONDS)

    async def one(upload: Upload) -> None:
        form = aiohttp.FormData()
        form.add_field("image", upload.data, filename=f"{upload.request}.jpg", content_type="image/jpeg")
        form.add_field("request", upload.request)
        try:
            response = await nurse.request("POST", f"/api/consultations/{consultation}/snapshots",
                                           data=form, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.cut_off[upload.request] = type(exc).__name__
            return
        if response.status != 201:
            outcome.refused[upload.request] = f"HTTP {response.status}: {await response.text()}"
            return
        outcome.stored[upload.request] = (await response.json())["id"]
        if len(outcome.stored) >= kill_after:
            enough.set()

    tasks = [asyncio.create_task(one(upload)) for upload in uploads]
    try:
        await asyncio.wait_for(enough.wait(), UPLOAD_SECONDS)
    except TimeoutError:
        pass  # fewer than kill_after succeeded in time: kill anyway; the caller sees it
    await server.kill()
    done, pending = await asyncio.wait(tasks, timeout=UPLOAD_SECONDS + 5)
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} uploads outlived the killed server"
    for task in done:
        task.result()
    return outcome


async def assert_listed_snapshots_are_whole(server: ServerProcess, consultation: str, answered: set[str],
                                            uploads: dict[str, Upload]) -> None:
    """Every snapshot answered 201 is listed, and every one listed decrypts to its whole image."""
    specialist = await logged_in(server, "spes")
    try:
        listed = (await specialist.json("GET", f"/api/consultations/{consultation}/snapshots"))["snapshots"]
        ids = {s["id"] for s in listed}
        assert ids >= answered, f"answered 201 but not listed after the restart: {sorted(answered - ids)}"
        for snapshot in listed:
            expected = uploads[snapshot["request"]].size
            assert (snapshot["width"], snapshot["height"]) == expected
            response = await specialist.request("GET", f"/api/snapshots/{snapshot['id']}")
            assert response.status == 200, (response.status, await response.text())
            image = Image.open(io.BytesIO(await response.read()))
            image.load()  # decodes every pixel: a truncated blob fails here
            assert (image.format, image.size) == ("JPEG", expected)
            response = await specialist.request("GET", f"/api/snapshots/{snapshot['id']}/thumbnail")
            assert response.status == 200, (response.status, await response.text())
            thumb = Image.open(io.BytesIO(await response.read()))
            thumb.load()
            assert max(thumb.size) == 320
    finally:
        await specialist.close()


async def blob_keys(db_url: str) -> dict[str, str]:
    """Snapshot id -> the key of its image blob (the thumbnail is sealed in the row)."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(Snapshot.id, Snapshot.blob_key))).all()
    finally:
        await engine.dispose()
    return {row.id: row.blob_key for row in rows}


def files_under(root: Path) -> dict[str, str]:
    """Every file below ``root``, by its path relative to ``root``, whatever its name."""
    found: dict[str, str] = {}
    for directory, _subdirs, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = name
    return found


def assert_storage_is_exact(rows: dict[str, str], data_dir: Path) -> None:
    """No intents, no temporary files, no row missing its blob, no blob without a row;
    every kind of leftover is reported at once. Where a key lives is ``BlobStore``'s affair:
    each row's blob must be found by ``exists``, and every other file is a leftover."""
    store = BlobStore(data_dir / "blobs")
    files = files_under(data_dir / "blobs")
    referenced = set(rows.values())
    problems = {
        "write intents": sorted(files_under(data_dir / "intents")),
        "temporary files": sorted(path for path, name in files.items() if name.startswith(TEMP_PREFIX)),
        "snapshot rows without their blob": sorted(sid for sid, key in rows.items() if not store.exists(key)),
        "files no snapshot row names": sorted(
            path for path, name in files.items() if name not in referenced and not name.startswith(TEMP_PREFIX)
        ),
        "blob files beyond one per row": sum(not n.startswith(TEMP_PREFIX) for n in files.values())
        - len(referenced),
    }
    left = {kind: found for kind, found in problems.items() if found}
    assert not left, f"after the restart, {len(rows)} snapshot rows and: {left}"


async def test_sigkill_during_concurrent_uploads_leaves_only_complete_snapshots(
    start_server: StartServer, migrated_db_url: str
) -> None:
    server = await start_server()
    nurse = await logged_in(server, "nurse")
    consultation = await consented_consultation(nurse)
    await nurse.close()

    rng = random.Random()
    sent: dict[str, Upload] = {}  # every upload of every attempt: listed snapshots name theirs
    sizes = [(1600 + 8 * i, 1200) for i in range(UPLOADS)]  # 1.4-1.6 MB each
    outcomes: list[Outcome] = []
    for attempt in range(ATTEMPTS):
        batch = [
            Upload(f"crash-a{attempt}-{i:02d}", unique_jpeg(rng.randrange(2**32), *size), size)
            for i, size in enumerate(sizes)
        ]
        sent.update((u.request, u) for u in batch)
        kill_after = rng.randint(*KILL_AFTER)
        nurse = await logged_in(server, "nurse")
        try:
            outcome = await upload_and_kill(server, nurse, consultation, batch, kill_after)
        finally:
            await nurse.close()
        outcomes.append(outcome)
        assert not outcome.refused, f"uploads answered other than 201 before the kill: {outcome.refused}"
        print(f"attempt {attempt + 1}: kill after {kill_after} -> {len(outcome.stored)} answered 201, "
              f"{len(outcome.cut_off)} cut off ({sorted(set(outcome.cut_off.values()))})")

        server = await start_server()
        answered = {sid for o in outcomes for sid in o.stored.values()}
        await assert_listed_snapshots_are_whole(server, consultation, answered, sent)
        assert_storage_is_exact(await blob_keys(migrated_db_url), server.data_dir)
        if outcome.stored and outcome.cut_off:
            break
    else:
        pytest.fail(f"the kill never fell mid-way in {ATTEMPTS} attempts: "
                    f"{[(len(o.stored), len(o.cut_off)) for o in outcomes]}")
    assert await server.terminate() == 0, server.output()
