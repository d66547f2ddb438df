"""Photos are decoded in worker processes of their own under a pixel budget (issue 15,
finding 5; processes since issue 20).

Small files can be huge pictures: a 4000x4000 all-zero PNG is a few kB and 48 MB decoded.
Six of them at once, under the per-photo cap, must not decode all at once (memory) nor where
passwords are hashed (another user's login waited seconds), and a worker that dies must fail
its upload cleanly."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from woundcare.appkeys import SERVICES
import woundcare.records.imagework
from tests.api.client import ApiClient
from tests.api.test_snapshots import PASSWORD, open_ward

SIDE = 4000
BUDGET = 20_000_000
"""Room for one of the pictures at a time."""
UPLOADS = 6


@pytest.fixture(scope="module")
def zero_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE)).save(out, "PNG")
    assert len(out.getvalue()) < 200_000
    return out.getvalue()


def _peak_rss_reset() -> bool:
    """Reset this process's peak resident size (VmHWM), where Linux allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _image_workers() -> list[int]:
    """This process's spawned children (the tests' server runs in it): its image workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if ppid == os.getpid() and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


async def test_concurrent_bombs_stay_in_budget_and_out_of_the_servers_process(
    start_server: Any, zero_png: bytes
) -> None:
    server = await start_server(image_pixel_budget=BUDGET, image_workers=3)
    ward = await open_ward(server)
    other = ApiClient(server.url)
    work = server.app[SERVICES].image_work
    measured = _peak_rss_reset()
    baseline = _kib("VmRSS")
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, work.budget.in_use)
            await asyncio.sleep(0.002)

    async def login_meanwhile() -> int:
        await asyncio.sleep(0.3)
        return (await other.login("spes", PASSWORD)).status

    sampler = asyncio.create_task(sample())
    *uploads, login = await asyncio.gather(
        *(ward.upload(zero_png, filename="zero.png") for _ in range(UPLOADS)), login_meanwhile()
    )
    sampling = False
    await sampler
    grown_mib = (_kib("VmHWM") - baseline) / 1024
    workers = _image_workers()
    await ward.nurse.close()
    await ward.specialist.close()
    await other.close()

    assert [u.status for u in uploads] == [201] * UPLOADS
    assert login == 200
    # The budget is shared with the workers: they took pixels from it, one picture at a time.
    assert peak == SIDE * SIDE, f"{peak / 1e6:.0f} MP held at once"
    assert 1 <= len(workers) <= 3
    if measured:
        # The 48 MB pictures are decoded in the workers, not in the server's process.
        assert grown_mib < 150, f"the server's peak memory grew by {grown_mib:.0f} MiB"


async def test_the_workers_wait_for_pixels_the_server_holds(start_server: Any, zero_png: bytes) -> None:
    """One budget across processes: held here, no worker decodes until it is given back."""
    server = await start_server(image_pixel_budget=BUDGET)
    ward = await open_ward(server)
    budget = server.app[SERVICES].image_work.budget
    with budget.hold(BUDGET):
        upload = asyncio.create_task(ward.upload(zero_png, filename="zero.png"))
        await asyncio.sleep(1.0)
        waited = not upload.done()
    response = await upload
    await ward.nurse.close()
    await ward.specialist.close()
    assert waited
    assert response.status == 201


async def test_a_worker_that_dies_fails_its_upload_cleanly_and_the_next_one_works(
    start_server: Any, zero_png: bytes
) -> None:
    server = await start_server(image_pixel_budget=BUDGET)
    ward = await open_ward(server)
    work = server.app[SERVICES].image_work
    with work.budget.hold(BUDGET):  # the upload's worker waits for pixels: it is mid-check
        upload = asyncio.create_task(ward.upload(zero_png, filename="zero.png"))
        while not (workers := _image_workers()) and not upload.done():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        refused = await upload
        body = await refused.json()
    assert refused.status == 503 and body["error"]["code"] == "image_worker_failed"
    assert await ward.stored() == (0, 0, 0)  # no row, no intent, no blob
    accepted = await ward.upload(zero_png, filename="zero.png")
    await ward.nurse.close()
    await ward.specialist.close()
    assert accepted.status == 201
    assert await ward.stored() == (1, 0, 1)


async def test_an_upload_that_cannot_get_pixels_in_time_is_busy(start_server: Any, zero_png: bytes) -> None:
    """The budget's other side: with no room within ``image_wait_seconds``, ``503 busy``."""
    server = await start_server(image_pixel_budget=BUDGET, image_wait_seconds=0.5)
    ward = await open_ward(server)
    budget = server.app[SERVICES].image_work.budget
    with budget.hold(BUDGET):  # another upload holds the whole budget
        refused = await ward.upload(zero_png, filename="zero.png")
        body = await refused.json()
    accepted = await ward.upload(zero_png, filename="zero.png")
    await ward.nurse.close()
    await ward.specialist.close()
    assert refused.status == 503 and body["error"]["code"] == "busy"
    assert accepted.status == 201


async def test_image_workers_yield_the_cpu_to_the_server(start_server: Any) -> None:
    server = await start_server()
    work = server.app[SERVICES].image_work
    worker = await work.run(os.getpid)
    in_worker = await work.run(os.getpriority, os.PRIO_PROCESS, 0)
    assert worker != os.getpid()
    assert in_worker == min(19, os.getpriority(os.PRIO_PROCESS, 0) + woundcare.records.imagework.NICENESS)


def test_a_worker_never_touches_the_file_that_took_an_abandoned_photos_number() -> None:
    """A request cancelled while its check waits for a worker closes its photo file; the number
    the worker was given may then name another upload's file, which it must leave alone."""
    abandoned = woundcare.records.imagework.PhotoFile.of(b"abandoned")
    path, inode = abandoned.path, abandoned.inode
    abandoned.close()
    with woundcare.records.imagework.PhotoFile.of(b"another upload") as other:
        assert other.path == path  # the lowest free number, as the kernel hands them out
        with pytest.raises(woundcare.records.imagework.PhotoGone):
            woundcare.records.imagework._check(path, inode, 0.0, {})
        with other.mapped(other.size) as view:
            assert bytes(view) == b"another upload"
