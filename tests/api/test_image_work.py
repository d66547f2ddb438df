"""Photos are decoded in threads of their own under a pixel budget (issue 15, finding 5).

Small files can be huge pictures: a 4000x4000 all-zero PNG is a few kB and 48 MB decoded.
Six of them at once, under the per-photo cap, must not decode all at once (memory) nor in the
threads that hash passwords (another user's login waited seconds)."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from woundcare.appkeys import SERVICES
import woundcare.auth.login
import woundcare.records.images
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


class _Watch:
    """Pixels being re-encoded at once (the step after decoding, inside the budget), and the
    threads that decode photos and those that hash passwords."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pixels = 0
        self.peak = 0
        self.image_threads: set[str] = set()
        self.password_threads: set[str] = set()

    def around_encode(self, encode: Any) -> Any:
        def watched(image: Image.Image, *args: Any, **kwargs: Any) -> bytes:
            with self.lock:
                self.pixels += image.width * image.height
                self.peak = max(self.peak, self.pixels)
                self.image_threads.add(threading.current_thread().name)
            try:
                time.sleep(0.2)  # widen the window in which decodes could overlap
                return encode(image, *args, **kwargs)  # type: ignore[no-any-return]
            finally:
                with self.lock:
                    self.pixels -= image.width * image.height

        return watched

    def around_verify(self, verify: Any) -> Any:
        def watched(*args: Any) -> bool:
            self.password_threads.add(threading.current_thread().name)
            return verify(*args)  # type: ignore[no-any-return]

        return watched


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


async def test_concurrent_bombs_under_the_cap_stay_in_budget_and_apart_from_logins(
    start_server: Any, zero_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = _Watch()
    monkeypatch.setattr(woundcare.records.images, "_encode", watch.around_encode(woundcare.records.images._encode))
    monkeypatch.setattr(woundcare.auth.login, "verify_password",
                        watch.around_verify(woundcare.auth.login.verify_password))
    server = await start_server(image_pixel_budget=BUDGET, image_workers=3)
    ward = await open_ward(server)
    other = ApiClient(server.url)
    measured = _peak_rss_reset()
    baseline = _kib("VmRSS")

    async def login_meanwhile() -> int:
        await asyncio.sleep(0.3)
        return (await other.login("spes", PASSWORD)).status

    *uploads, login = await asyncio.gather(
        *(ward.upload(zero_png, filename="zero.png") for _ in range(UPLOADS)), login_meanwhile()
    )
    grown_mib = (_kib("VmHWM") - baseline) / 1024
    await ward.nurse.close()
    await ward.specialist.close()
    await other.close()

    assert [u.status for u in uploads] == [201] * UPLOADS
    assert login == 200
    assert 0 < watch.peak <= BUDGET, f"{watch.peak / 1e6:.0f} MP decoded at once"
    assert watch.password_threads and watch.image_threads
    assert watch.image_threads.isdisjoint(watch.password_threads), (watch.image_threads, watch.password_threads)
    if measured:
        # A coarse bound (the budget itself is checked exactly above): one 48 MB picture and its
        # copies at a time, but freed pixels may stay in each image thread's malloc arena.
        assert grown_mib < 600, f"peak memory grew by {grown_mib:.0f} MiB"


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


async def test_image_threads_yield_the_cpu_to_the_event_loop(start_server: Any) -> None:
    server = await start_server()
    work = server.app[SERVICES].image_work

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    in_image_thread = await asyncio.get_running_loop().run_in_executor(work.executor, niceness)
    assert in_image_thread == min(19, niceness() + woundcare.records.imagework.NICENESS)
